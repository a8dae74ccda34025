// agenthook console: the little JavaScript the pages use, no dependencies.
// - [data-live="MS"]: re-fetch this page every MS ms and swap in the element with the
//   same id (skipped while focus is inside it, or while its toggle checkbox is off).
// - [data-focus]: focus a refusal shown beside its form.
// - select-all checkbox for the dead-letter table.
(function () {
  'use strict';

  function refresh(el) {
    var toggle = el.getAttribute('data-live-toggle');
    if (toggle) {
      var box = document.getElementById(toggle);
      if (!box || !box.checked) return;
    }
    if (el.contains(document.activeElement) || document.hidden) return;
    fetch(window.location.href, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null) return;
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var fresh = doc.getElementById(el.id);
        if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the next tick tries again */ });
  }

  document.querySelectorAll('[data-live]').forEach(function (el) {
    var ms = parseInt(el.getAttribute('data-live'), 10) || 2000;
    window.setInterval(function () { refresh(el); }, ms);
    var toggle = el.getAttribute('data-live-toggle');
    var box = toggle && document.getElementById(toggle);
    if (box) box.addEventListener('change', function () { refresh(el); });
  });

  // A refused form's reason is announced and focused where it is shown.
  var refused = document.querySelector('[data-focus]');
  if (refused) { refused.setAttribute('tabindex', '-1'); refused.focus(); }

  document.querySelectorAll('input[data-select-all]').forEach(function (all) {
    all.addEventListener('change', function () {
      var name = all.getAttribute('data-select-all');
      document.querySelectorAll('input[name="' + name + '"]').forEach(function (b) {
        b.checked = all.checked;
      });
    });
  });
})();
