// The console's live panels: every element with class "console-live" and a data-poll-url is refreshed
// from that URL, about once a second (data-poll-interval, in ms). A JSON endpoint answers
// {"html": ...}, which replaces the element's content. A changelist (data-poll-statuses) instead asks
// for the status of the tasks it shows ({"statuses": {id: status}}) and rewrites only their status
// cells, so the rows, their checkboxes and the admin's action handlers stay as they are. It also sends
// the newest id shown and the list's own query string; the answer's "new" (tasks above that id
// matching the filters) shows a "N new tasks: show" bar that reloads the list. No inline script, no
// library: the CSP allows scripts from our own origin only. Polling pauses
// while the tab is hidden or a row is selected for an action, backs off after errors, and stops on a
// 403 or 404.
(function () {
  "use strict";
  var MAX_BACKOFF = 30000;

  function poll(element) {
    var url = element.getAttribute("data-poll-url");
    var statuses = element.hasAttribute("data-poll-statuses");
    var interval = parseInt(element.getAttribute("data-poll-interval"), 10) || 1000;
    var delay = interval, last = null;
    function schedule() { window.setTimeout(tick, delay); }
    function rowId(row) {
      var link = row.querySelector("a[href*='/change/']");
      var match = link && /\/(\d+)\/change\//.exec(link.getAttribute("href"));
      return match ? match[1] : null;
    }
    function ids() {
      var rows = element.querySelectorAll("#result_list tbody tr"), out = [];
      for (var i = 0; i < rows.length; i++) { if (rowId(rows[i])) { out.push(rowId(rows[i])); } }
      return out;
    }
    function newest() {
      var all = ids(), top = 0;
      for (var i = 0; i < all.length; i++) { top = Math.max(top, parseInt(all[i], 10)); }
      return top;
    }
    function announce(count) {
      var bar = document.getElementById("console-new-tasks");
      if (!count) { if (bar) { bar.hidden = true; } return; }
      if (!bar) {
        bar = document.createElement("p");
        bar.id = "console-new-tasks";
        bar.className = "console-new-bar";
        var link = document.createElement("a");
        link.href = window.location.pathname + window.location.search;
        bar.appendChild(link);
        element.insertBefore(bar, element.firstChild);
      }
      bar.hidden = false;
      bar.firstChild.textContent = (count >= 100 ? "100+" : count) + " new task" + (count === 1 ? "" : "s") + ": show";
    }
    function paint(body) {
      if ("new" in body) { announce(body["new"]); }
      var rows = element.querySelectorAll("#result_list tbody tr");
      for (var i = 0; i < rows.length; i++) {
        var cell = rows[i].querySelector("td.field-status");
        var status = body.statuses[rowId(rows[i])];
        if (cell && status && cell.textContent !== status) {
          cell.textContent = status;
          cell.setAttribute("data-updated", new Date().toISOString());
        }
      }
    }
    function tick() {
      if (document.hidden) { schedule(); return; }
      var target = url;
      if (statuses) {
        target = url + "?ids=" + ids().join(",") + "&after=" + newest() +
          "&filters=" + encodeURIComponent(window.location.search.replace(/^\?/, ""));
      }
      fetch(target, { credentials: "same-origin", headers: { "Accept": "application/json" }, redirect: "error" })
        .then(function (response) {
          if (response.status === 403 || response.status === 404) { throw new Error("stop"); }
          if (!response.ok) { throw new Error("retry"); }
          return response.json();
        })
        .then(function (body) {
          delay = interval;
          if (statuses) {
            paint(body);
          } else if (typeof body.html === "string" && body.html !== last) {
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
