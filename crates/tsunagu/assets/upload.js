// One upload to ステップ配信のメディア (PUT /courses/media/upload, the file as the body), with
// its progress: tsunaguUpload(file, csrf, onProgress) resolves to the server's answer
// ({ok, message, id}) or to {ok: false, message} when the connection broke.
(function () {
  "use strict";
  var MB = 1024 * 1024;

  // The manual's limits, checked before sending: a browser reports a refusal mid-upload as a
  // broken connection, not with the server's message. The server decides from the content.
  window.tsunaguTooLarge = function (file) {
    var image = /\.(jpe?g|png|gif)$/i.test(file.name);
    var max = image ? 10 * MB : 200 * MB;
    if (file.size <= max) { return null; }
    return "「" + file.name + "」は受け付けられませんでした。" + (image ? "画像" : "動画・音声") +
      "は " + (max / MB) + "MB までです（このファイルは " + (file.size / MB).toFixed(1) +
      "MB）。小さくしてからアップロードしてください。";
  };

  window.tsunaguUpload = function (file, csrf, onProgress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", "/courses/media/upload");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (ev) {
        if (ev.lengthComputable && onProgress) { onProgress(ev.loaded, ev.total); }
      };
      xhr.onload = function () {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch (e) {
          resolve({ ok: false, message: "アップロードできませんでした（HTTP " + xhr.status + "）。" });
        }
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () {
        resolve({ ok: false, message: "通信が途切れました。もう一度お試しください。" });
      };
      xhr.send(file);
    });
  };

  // "12.3MB / 45.6MB（27%）"
  window.tsunaguProgressText = function (loaded, total) {
    var percent = total > 0 ? Math.floor(100 * loaded / total) : 100;
    return (loaded / MB).toFixed(1) + "MB / " + (total / MB).toFixed(1) + "MB（" + percent + "%）";
  };
})();
