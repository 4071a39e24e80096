// ステップ配信のメディア: send the chosen file as the request body (streamed by the server to
// disk), show the answer, and refresh the list while files are 処理中.
(function () {
  "use strict";
  var form = document.getElementById("media-upload");
  var status = document.getElementById("media-upload-status");
  var busy = false;
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = document.getElementById("media-file");
      var file = input.files && input.files[0];
      if (!file) {
        status.textContent = "ファイルを選んでください。";
        return;
      }
      // The server decides from the content; this only spares sending a file that the
      // manual's limits refuse anyway (a browser reports a refusal mid-upload as a broken
      // connection, not with the server's message).
      var MB = 1024 * 1024;
      var image = /\.(jpe?g|png|gif)$/i.test(file.name);
      var max = image ? 10 * MB : 200 * MB;
      if (file.size > max) {
        status.className = "flash flash-error";
        status.textContent = "「" + file.name + "」は受け付けられませんでした。" + (image ? "画像" : "動画・音声") +
          "は " + (max / MB) + "MB までです（このファイルは " + (file.size / MB).toFixed(1) +
          "MB）。小さくしてからアップロードしてください。";
        return;
      }
      busy = true;
      var button = document.getElementById("media-upload-submit");
      button.disabled = true;
      status.className = "";
      status.textContent = "「" + file.name + "」をアップロードしています…";
      fetch("/courses/media/upload", {
        method: "PUT",
        headers: {
          "X-CSRF-Token": form.dataset.csrf,
          "X-File-Name": encodeURIComponent(file.name),
          "Content-Type": "application/octet-stream"
        },
        body: file,
        credentials: "same-origin"
      }).then(function (r) {
        return r.json().catch(function () {
          return { ok: false, message: "アップロードできませんでした（HTTP " + r.status + "）。" };
        });
      }).then(function (a) {
        status.className = a.ok ? "flash flash-success" : "flash flash-error";
        status.textContent = a.message;
        busy = false;
        button.disabled = false;
        if (a.ok) { setTimeout(function () { window.location.reload(); }, 1200); }
      }).catch(function () {
        status.className = "flash flash-error";
        status.textContent = "通信が途切れました。もう一度お試しください。";
        busy = false;
        button.disabled = false;
      });
    });
  }
  var list = document.getElementById("media-list");
  if (list && list.dataset.processing) {
    // Not while a file is chosen or sending: reloading would drop the instructor's choice.
    setInterval(function () {
      var input = document.getElementById("media-file");
      var chosen = input && input.files && input.files.length > 0;
      if (!busy && !chosen) { window.location.reload(); }
    }, 5000);
  }
})();
