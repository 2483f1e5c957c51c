// Duo owner UI: the copy button and the live request queue. No inline script anywhere (the CSP forbids it);
// everything works without this file except the live updates and copying.
'use strict';
(function () {
  document.querySelectorAll('button[data-copy]').forEach(function (b) {
    b.hidden = false;
    b.addEventListener('click', function () {
      var text = document.getElementById(b.dataset.copy).textContent.trim();
      var done = function () { b.textContent = 'Copied'; };
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(done, function () { b.textContent = 'Select the code and copy it'; });
      }
    });
  });

  var badge = document.getElementById('pending-count');
  if (!window.EventSource) { return; }
  var events = new EventSource('/events');
  events.addEventListener('change', function (e) {
    if (badge) { badge.textContent = e.data === '0' ? '' : e.data; }
    if (document.getElementById('queue')) { refreshQueue(); }
  });

  // Fetch the queue again and swap it in if it changed, keeping any reason being typed.
  function refreshQueue() {
    fetch('/requests/queue', { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var old = document.getElementById('queue');
        if (html === null || !old) { return; }
        var t = document.createElement('template');
        t.innerHTML = html;
        var next = t.content.getElementById('queue');
        if (!next || next.dataset.sig === old.dataset.sig) { return; }
        var focused = document.activeElement && document.activeElement.id;
        old.querySelectorAll('input[name=reason]').forEach(function (i) {
          var same = next.querySelector('#' + i.id);
          if (same) { same.value = i.value; }
        });
        old.replaceWith(next);
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
      });
  }
})();
