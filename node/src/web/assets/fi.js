// Duo FI UI: the live expression check, picking an attribute, reading a model file, and the live request list
// and scoring progress. No inline script anywhere (the CSP forbids it); every form works without this file.
'use strict';
(function () {
  var expr = document.getElementById('expr');
  var owner = document.getElementById('owner');
  var check = document.getElementById('check');
  var timer = null;
  function runCheck() {
    if (!expr || !check || !owner) { return; }
    var text = expr.value.trim();
    if (text === '') { check.textContent = ''; check.className = 'check'; return; }
    var q = '/check?owner=' + encodeURIComponent(owner.value) + '&expr=' + encodeURIComponent(text);
    fetch(q, { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j || expr.value.trim() !== text) { return; }
        check.textContent = j.ok ? 'Reads as: ' + j.lineage : j.error;
        check.className = j.ok ? 'check ok' : 'check bad';
      });
  }
  if (expr) {
    expr.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(runCheck, 300);
    });
    if (owner) {
      owner.addEventListener('change', function () {
        // Another owner has another catalogue: load the form for it, keeping what was typed.
        if (document.getElementById('attribute')) {
          var reason = document.getElementById('reason');
          location.href = '/new?owner=' + encodeURIComponent(owner.value) + '&expr=' +
            encodeURIComponent(expr.value) + '&reason=' + encodeURIComponent(reason ? reason.value : '');
        } else {
          runCheck();
        }
      });
    }
    runCheck();
  }

  document.querySelectorAll('select[data-into]').forEach(function (s) {
    s.addEventListener('change', function () {
      var into = document.getElementById(s.dataset.into);
      if (into && s.value) { into.value = s.value; into.dispatchEvent(new Event('input')); }
    });
  });

  document.querySelectorAll('input[type=file][data-into]').forEach(function (f) {
    f.hidden = false;
    f.addEventListener('change', function () {
      var into = document.getElementById(f.dataset.into);
      var file = f.files && f.files[0];
      if (!into || !file) { return; }
      if (file.size > 60000) { into.value = ''; alert('That file is too large for a model file.'); return; }
      file.text().then(function (t) { into.value = t; });
    });
  });

  // Swap in a fresh copy of the element `id` from `url` every `ms` while `more(el)` holds.
  function poll(id, url, ms, more) {
    var el = document.getElementById(id);
    if (!el || !more(el)) { return; }
    setTimeout(function () {
      fetch(url(el), { credentials: 'same-origin' })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          var old = document.getElementById(id);
          if (html !== null && old) {
            var t = document.createElement('template');
            t.innerHTML = html;
            var next = t.content.getElementById(id);
            if (next && next.innerHTML !== old.innerHTML) { old.replaceWith(next); }
          }
          poll(id, url, ms, more);
        }, function () { poll(id, url, ms * 2, more); });
    }, ms);
  }
  poll('list', function () { return '/requests/list'; }, 2000,
    function (el) { return el.dataset.pending !== '0'; });
  poll('job', function (el) { return '/score/job/part?id=' + el.dataset.job; }, 300,
    function (el) { return el.dataset.done !== 'true'; });
})();
