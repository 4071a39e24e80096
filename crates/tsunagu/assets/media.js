// ステップ配信のメディア: send the chosen file as the request body (streamed by the server to
// disk; upload.js) with its progress, show the answer, and refresh the list while files are 処理中 — the list only, so a
// file the instructor has chosen meanwhile stays chosen.
(function () {
  "use strict";
  var form = document.getElementById("media-upload");
  var status = document.getElementById("media-upload-status");
  var list = document.getElementById("media-list");
  var busy = false;
  var timer = null;
  var seq = 0; // the newest refresh; older answers arriving late are ignored

  // Say, where a screen reader hears it, which files finished since the last look.
  function announce(before, after) {
    var news = document.getElementById("media-list-status");
    if (!news) { return; }
    var was = {};
    before.querySelectorAll("tr[data-id]").forEach(function (tr) { was[tr.dataset.id] = tr.dataset.status; });
    var said = [];
    after.querySelectorAll("tr[data-id]").forEach(function (tr) {
      // Finished since the last look: was 処理中, or new (uploaded in another tab) and done.
      var then = was[tr.dataset.id];
      if ((then !== undefined && then !== "processing") || tr.dataset.status === "processing") { return; }
      said.push("「" + tr.dataset.name + "」" + (tr.dataset.status === "ready"
        ? "の変換が完了しました。" : "は変換できませんでした。理由は一覧をご覧ください。"));
    });
    if (said.length) {
      // Emptied first, so the same words said twice are read twice.
      news.textContent = "";
      setTimeout(function () { news.textContent = said.join(" "); }, 50);
    }
  }

  // Replace only the rows that changed when the rows are the same files in the same order
  // (focus elsewhere in the table stays); false when the whole list must be redrawn.
  function patchRows(fresh) {
    var now = list.querySelectorAll("tr[data-id]");
    var next = fresh.querySelectorAll("tr[data-id]");
    if (!now.length || now.length !== next.length) { return false; }
    for (var i = 0; i < now.length; i++) {
      if (now[i].dataset.id !== next[i].dataset.id) { return false; }
    }
    for (var j = 0; j < now.length; j++) {
      if (now[j].outerHTML !== next[j].outerHTML) {
        now[j].parentNode.replaceChild(document.importNode(next[j], true), now[j]);
      }
    }
    return true;
  }

  function refreshList() {
    if (!list) { return; }
    var mine = ++seq;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      // Signed out meanwhile: show the log-in page rather than polling it.
      if (r.redirected) { window.location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (!html || mine !== seq) { return; }
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("media-list");
      if (!fresh) { return; }
      // Only when something changed: keep focus on a link and a phone's sideways scroll.
      if (fresh.innerHTML !== list.innerHTML) {
        announce(list, fresh);
        if (!patchRows(fresh)) {
          var wrap = list.querySelector(".table-wrap");
          var left = wrap ? wrap.scrollLeft : 0;
          list.innerHTML = fresh.innerHTML;
          wrap = list.querySelector(".table-wrap");
          if (wrap) { wrap.scrollLeft = left; }
        }
      }
      if (fresh.dataset.processing) {
        list.dataset.processing = "1";
        watch();
      } else {
        delete list.dataset.processing;
      }
    }).catch(function () { /* the next tick tries again */ });
  }

  function watch() {
    if (timer) { return; }
    timer = setInterval(function () {
      if (!list.dataset.processing) {
        clearInterval(timer);
        timer = null;
        return;
      }
      if (!busy) { refreshList(); }
    }, 5000);
  }
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = document.getElementById("media-file");
      var file = input.files && input.files[0];
      if (!file) {
        status.textContent = "ファイルを選んでください。";
        return;
      }
      var tooLarge = window.tsunaguTooLarge(file);
      if (tooLarge) {
        status.className = "flash flash-error";
        status.textContent = tooLarge;
        return;
      }
      busy = true;
      var button = document.getElementById("media-upload-submit");
      var bar = document.getElementById("media-upload-progress");
      button.disabled = true;
      status.className = "";
      status.textContent = "「" + file.name + "」をアップロードしています…";
      bar.value = 0;
      bar.hidden = false;
      window.tsunaguUpload(file, form.dataset.csrf, function (loaded, total) {
        bar.max = total;
        bar.value = loaded;
        status.textContent = "「" + file.name + "」をアップロードしています… " + window.tsunaguProgressText(loaded, total);
      }).then(function (a) {
        status.className = a.ok ? "flash flash-success" : "flash flash-error";
        status.textContent = a.message;
        bar.hidden = true;
        busy = false;
        button.disabled = false;
        if (a.ok) {
          // Unless the instructor has chosen the next file meanwhile.
          if (input.files && input.files[0] === file) { form.reset(); }
          refreshList();
        }
      });
    });
  }
  // ［削除］ asks first (the rows are redrawn by refreshList, so the list listens).
  if (list) {
    list.addEventListener("submit", function (ev) {
      var f = ev.target;
      if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) { ev.preventDefault(); }
    });
  }
  if (list && list.dataset.processing) { watch(); }
})();
