// A form with data-confirm asks before it is sent, and a button with data-print prints the page
// (the page's CSP allows no inline handlers).
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var b = ev.target;
    if (b && b.dataset && b.dataset.print !== undefined) { ev.preventDefault(); window.print(); }
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f && f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) { ev.preventDefault(); }
  });
})();
