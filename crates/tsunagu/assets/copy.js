// A button with data-copy puts its text on the clipboard and says so.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var b = ev.target;
    if (!b || !b.dataset || !b.dataset.copy) { return; }
    var done = function () { b.textContent = "コピーしました"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(b.dataset.copy).then(done, function () { b.textContent = "選択してコピーしてください"; });
    } else {
      var t = document.createElement("textarea");
      t.value = b.dataset.copy;
      document.body.appendChild(t);
      t.select();
      try { document.execCommand("copy"); done(); } catch (e) { b.textContent = "選択してコピーしてください"; }
      document.body.removeChild(t);
    }
  });
})();
