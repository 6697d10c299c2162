// certplane dashboard: progressive enhancements only. Every action works
// without this file (plain forms and links); it adds live status updates
// and copy buttons. Loaded from 'self': the CSP forbids inline script.
"use strict";

(function () {
  // Copy buttons for full fingerprints (hidden until this script runs).
  function wireCopy(root) {
    root.querySelectorAll("button.copy[data-copy]").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () {
        var el = document.getElementById(b.dataset.copy);
        if (!el) return;
        var text = el.textContent.trim();
        var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(el); });
        } else {
          selectText(el);
        }
      });
    });
  }
  function selectText(el) {
    var r = document.createRange();
    r.selectNodeContents(el);
    var s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }

  // Choosing a custom number of days selects the Custom radio.
  function wireGenerate() {
    var days = document.getElementById("days");
    var custom = document.getElementById("validity-custom");
    if (days && custom) {
      days.addEventListener("input", function () { if (days.value !== "") custom.checked = true; });
    }
  }

  // Live updates: wait on the dashboard's JSON feed for the account's
  // revision to move, then fetch this page again and swap the table in,
  // so a Pending certificate turns Available without a reload.
  function live() {
    var table = document.getElementById("certs");
    if (!table) return;
    var announce = document.getElementById("live");
    var rev = table.dataset.revision;
    var delay = 0;
    // Leaving the page (a form submission, a link) stops the feed, so a
    // refetch never races the page the browser is loading.
    var stopped = false;
    var ctl = new AbortController();
    function stop() { stopped = true; ctl.abort(); }
    document.addEventListener("submit", stop);
    window.addEventListener("pagehide", stop);
    function statuses(t) {
      var m = {};
      t.querySelectorAll("tbody tr[data-id]").forEach(function (tr) { m[tr.dataset.id] = tr.dataset.status; });
      return m;
    }
    function swap() {
      return fetch(window.location.pathname + "?live=1", { credentials: "same-origin", cache: "no-store", signal: ctl.signal }).then(function (r) {
        if (r.status === 401 || r.redirected) { window.location.assign("/dashboard/login"); throw new Error("session ended"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      }).then(function (html) {
        if (stopped) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("certs");
        var cur = document.getElementById("certs");
        if (!fresh || !cur) return;
        var before = statuses(cur);
        var focused = document.activeElement && document.activeElement.closest("tr[data-id]") ? document.activeElement : null;
        var focusKey = focused ? [focused.closest("tr").id, focused.className, focused.textContent] : null;
        cur.replaceWith(document.adoptNode(fresh));
        wireCopy(fresh);
        rev = fresh.dataset.revision;
        var changes = [];
        var after = statuses(fresh);
        Object.keys(after).forEach(function (id) {
          if (before[id] && before[id] !== after[id]) {
            var name = fresh.querySelector("#cert-" + CSS.escape(id) + " .name");
            changes.push((name ? name.textContent : id) + " is now " + after[id]);
          }
        });
        if (announce && changes.length) announce.textContent = changes.join(". ") + ".";
        if (focusKey) {
          var row = document.getElementById(focusKey[0]);
          if (row) {
            var again = Array.prototype.find.call(row.querySelectorAll("button, a, summary"), function (el) {
              return el.className === focusKey[1] && el.textContent === focusKey[2];
            });
            if (again) again.focus();
          }
        }
      });
    }
    // The feed holds the request until the revision moves (or 25 s).
    function poll() {
      if (stopped) return;
      fetch("/dashboard/certificates.json?since=" + encodeURIComponent(rev), { credentials: "same-origin", cache: "no-store", signal: ctl.signal })
        .then(function (r) {
          if (r.status === 401) { window.location.assign("/dashboard/login?ended=expired"); throw new Error("session ended"); }
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (j) {
          delay = 0;
          if (String(j.revision) !== String(rev)) return swap();
        })
        .catch(function () { delay = Math.min(delay ? delay * 2 : 1000, 30000); })
        .then(function () { if (!stopped) setTimeout(poll, delay); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireCopy(document);
    wireGenerate();
    live();
  });
})();
