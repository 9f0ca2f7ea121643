// The operator console's script: progressive enhancement only. Every page
// and action works without it.
"use strict";

// Forms with data-confirm ask first; the answer is sent as confirmed=yes
// (without the script, the server shows a confirmation page instead).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (!question) return;
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  var field = form.querySelector("input[name=confirmed]");
  if (field) field.value = "yes";
});

// The flag list filters as one types.
function filterFlags() {
  var input = document.getElementById("flag-filter");
  var show = document.getElementById("flag-show");
  var table = document.getElementById("flags");
  if (!input || !table) return;
  var text = input.value.trim().toLowerCase();
  var state = show ? show.value : "all";
  var rows = table.querySelectorAll("tbody tr[data-search]");
  for (var i = 0; i < rows.length; i++) {
    var row = rows[i];
    var match = row.getAttribute("data-search").indexOf(text) !== -1 &&
      (state === "all" ||
        (state === "changed" && row.getAttribute("data-changed") === "true") ||
        (state === "killed" && row.getAttribute("data-state") === "killed"));
    row.hidden = !match;
  }
}

// A fleet panel (data-fleet) follows the SDK fleet converging onto the
// latest version, once a second for ten minutes.
function followFleet(panel) {
  var url = panel.getAttribute("data-fleet");
  var line = panel.querySelector(".fleet-line");
  var meter = panel.querySelector("meter");
  var rows = panel.querySelector(".fleet-rows");
  var started = Date.now();
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }
  function show(status) {
    if (line) line.textContent = status.line;
    panel.setAttribute("data-converged", String(status.converged));
    panel.setAttribute("data-instances", String(status.instances));
    panel.setAttribute("data-latest", String(status.version));
    var done = status.instances > 0 && status.converged === status.instances;
    panel.classList.toggle("converged", done);
    if (meter) {
      meter.max = Math.max(status.instances, 1);
      meter.value = status.converged;
    }
    if (rows) {
      while (rows.firstChild) rows.removeChild(rows.firstChild);
      (status.items || []).forEach(function (item) {
        var tr = document.createElement("tr");
        tr.appendChild(cell(item.instance));
        tr.appendChild(cell(String(item.version)));
        tr.appendChild(cell(item.on_latest ? "yes" : "behind"));
        tr.appendChild(cell(item.last_seen + " (" + Math.round(item.seconds_ago) + " s ago)"));
        tr.appendChild(cell(String(item.node)));
        rows.appendChild(tr);
      });
    }
  }
  function poll() {
    if (Date.now() - started > 600000) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (status) { if (status) show(status); })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 1000); });
  }
  poll();
}

document.addEventListener("DOMContentLoaded", function () {
  var input = document.getElementById("flag-filter");
  var show = document.getElementById("flag-show");
  if (input) input.addEventListener("input", filterFlags);
  if (show) show.addEventListener("change", filterFlags);
  var panels = document.querySelectorAll("[data-fleet]");
  for (var i = 0; i < panels.length; i++) followFleet(panels[i]);
  // A refused JSON edit puts the caret on the first line in error.
  var area = document.querySelector("textarea[data-error-line]");
  if (area) {
    var target = parseInt(area.getAttribute("data-error-line"), 10);
    var lines = area.value.split("\n");
    var offset = 0;
    for (var n = 0; n < target && n < lines.length; n++) offset += lines[n].length + 1;
    area.focus();
    area.setSelectionRange(offset, offset + (lines[target] || "").length);
  }
});
