// The message form (「+メッセージ追加」 and its edit): upload a file in place, with progress. The
// new file joins the ファイル choices, is chosen, and its 種類 is set; its state is then asked
// for every 2 seconds until the conversion ends, so the instructor sees when ［保存する］ can
// take it (the server refuses a file still 処理中 with its own message).
(function () {
  "use strict";
  var box = document.getElementById("message-media-upload");
  var select = document.getElementById("message-media");
  if (!box || !select || !window.tsunaguUpload) { return; }
  box.hidden = false;
  var input = document.getElementById("message-media-file");
  var button = document.getElementById("message-media-upload-submit");
  var bar = document.getElementById("message-media-progress");
  var status = document.getElementById("message-media-status");

  function say(kind, text) {
    status.className = kind ? "flash flash-" + kind : "";
    status.textContent = text;
  }

  function option(id) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === String(id)) { return select.options[i]; }
    }
    var o = document.createElement("option");
    o.value = String(id);
    select.appendChild(o);
    return o;
  }

  function follow(id, name) {
    fetch("/courses/media/" + id + "/status", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      // Signed out meanwhile (the log-in page) or the file is gone: stop asking.
      if (r.redirected || r.status === 404) { return "gone"; }
      return r.ok ? r.json() : null;
    }).then(function (m) {
      if (m === "gone") {
        option(id).remove();
        say("error", "「" + name + "」の状態を確認できませんでした。画面を再読み込みしてください。");
        return;
      }
      if (!m) { setTimeout(function () { follow(id, name); }, 2000); return; }
      var o = option(id);
      o.textContent = m.label;
      var kind = document.querySelector("input[name=kind][value=" + m.category + "]");
      if (kind && select.value === String(id)) { kind.checked = true; }
      if (m.status === "processing") {
        setTimeout(function () { follow(id, name); }, 2000);
      } else if (m.status === "ready") {
        say("success", "「" + name + "」の変換が完了しました。［保存する］で保存できます。");
      } else {
        o.remove();
        say("error", "「" + name + "」は変換できませんでした。" + m.reason);
      }
    }).catch(function () { setTimeout(function () { follow(id, name); }, 2000); });
  }

  button.addEventListener("click", function () {
    var file = input.files && input.files[0];
    if (!file) { say("error", "アップロードするファイルを選んでください。"); return; }
    var tooLarge = window.tsunaguTooLarge(file);
    if (tooLarge) { say("error", tooLarge); return; }
    button.disabled = true;
    bar.value = 0;
    bar.hidden = false;
    say("", "「" + file.name + "」をアップロードしています…");
    window.tsunaguUpload(file, box.dataset.csrf, function (loaded, total) {
      bar.max = total;
      bar.value = loaded;
      say("", "「" + file.name + "」をアップロードしています… " + window.tsunaguProgressText(loaded, total));
    }).then(function (a) {
      bar.hidden = true;
      button.disabled = false;
      if (!a.ok) { say("error", a.message); return; }
      input.value = "";
      var o = option(a.id);
      o.textContent = file.name + "（処理中）";
      select.value = String(a.id);
      say("", a.message + " 変換が終わるまでお待ちください。");
      follow(a.id, file.name);
    });
  });
})();
