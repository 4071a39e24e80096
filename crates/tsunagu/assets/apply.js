// The application form: show as many companion blocks as the chosen number, and keep a second
// tap on ［申し込む］ from sending the form again while the first is on its way (the server
// makes one application per form anyway). Without this script every block stays visible.
(function () {
  var form = document.querySelector('.apply-form');
  if (!form) return;
  var count = form.querySelector('.companion-count');
  function update() {
    var n = count ? parseInt(count.value, 10) || 0 : 0;
    form.querySelectorAll('.companion').forEach(function (el) {
      el.hidden = parseInt(el.dataset.index, 10) > n;
    });
  }
  if (count) count.addEventListener('change', update);
  update();
  var sent = false;
  form.addEventListener('submit', function (ev) {
    if (sent) { ev.preventDefault(); return; }
    sent = true;
    var b = form.querySelector('#apply-submit');
    if (b) { b.textContent = '送信しています…'; }
  });
})();
