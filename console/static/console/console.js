// The console's live panels: every element with class "console-live" and a data-poll-url is refreshed
// from that JSON endpoint about once a second ({"html": ...} replaces its content). No inline script,
// no library: the CSP allows scripts from our own origin only. Polling pauses while the tab is hidden
// and backs off after errors; a 403 or a login redirect stops it.
(function () {
  "use strict";
  var INTERVAL = 1000, MAX_BACKOFF = 30000;

  function poll(element) {
    var url = element.getAttribute("data-poll-url"), delay = INTERVAL, last = null;
    function schedule() { window.setTimeout(tick, delay); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, redirect: "error" })
        .then(function (response) {
          if (response.status === 403 || response.status === 404) { throw new Error("stop"); }
          if (!response.ok) { throw new Error("retry"); }
          return response.json();
        })
        .then(function (body) {
          delay = INTERVAL;
          if (typeof body.html === "string" && body.html !== last) {
            last = body.html;
            element.innerHTML = body.html;
            element.setAttribute("data-updated", new Date().toISOString());
          }
          schedule();
        })
        .catch(function (error) {
          if (error && error.message === "stop") { return; }
          delay = Math.min(delay * 2, MAX_BACKOFF);
          schedule();
        });
    }
    schedule();
  }

  function start() {
    var live = document.querySelectorAll(".console-live[data-poll-url]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
