// ［Zoom設定］: show the meeting or the webinar options for the chosen kind, hide everything
// but the choice itself while 利用しない is chosen, and explain the combinations Zoom treats
// specially before the organizer saves. Without this script every option stays visible.
(function () {
  var form = document.querySelector('.zoom-form');
  if (!form) return;
  function val(name) {
    var el = form.querySelector('input[name="' + name + '"]:checked');
    return el ? el.value : '';
  }
  function show(sel, on) {
    var el = form.querySelector(sel);
    if (el) el.hidden = !on;
  }
  function update() {
    var kind = val('kind') || 'meeting';
    form.querySelector('.zoom-when-on').hidden = val('use') === 'off';
    form.querySelectorAll('.zoom-kind').forEach(function (el) { el.hidden = el.dataset.kind !== kind; });
    show('[data-note="wr-jbh"]', val('waiting_room') === 'on' && val('join_before_host') === 'on');
    show('[data-note="m-sender"]', val('m_registration') === 'off' && val('m_url_sender') === 'zoom');
    show('[data-note="w-sender"]', val('w_registration') === 'off' && val('w_url_sender') === 'zoom');
    show('[data-note="w-devices"]', val('w_registration') === 'off' && val('multiple_devices') === 'on');
  }
  form.addEventListener('change', update);
  update();
})();
