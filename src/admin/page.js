// pgshadow admin page: the buttons. Calls the JSON API on this server and
// updates the page with textContent only (never innerHTML), so no data can
// become markup here either. When the server requires a token, the page
// asks for it once and keeps it in sessionStorage for this tab.
(function () {
  "use strict";
  var KEY = "pgshadow-admin-token";
  var tokenRequired = document.body.dataset.tokenRequired === "true";

  function askToken(again) {
    var t = sessionStorage.getItem(KEY);
    if (t && !again) return t;
    t = window.prompt(again ? "That token was refused. Admin token (admin.token):"
                            : "This change needs the admin token (admin.token):");
    if (t === null) return null;
    t = t.trim();
    sessionStorage.setItem(KEY, t);
    return t;
  }

  function call(method, path, payload) {
    var token = tokenRequired ? askToken(false) : sessionStorage.getItem(KEY);
    if (tokenRequired && token === null) return Promise.reject(new Error("no token given"));
    function attempt(token, retried) {
      var headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      return fetch(path, {
        method: method, headers: headers, credentials: "same-origin",
        body: JSON.stringify(payload || {})
      }).then(function (r) {
        if (r.status === 401 && !retried) {
          sessionStorage.removeItem(KEY);
          var again = askToken(true);
          if (again === null) throw new Error("no token given");
          return attempt(again, true);
        }
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
          return data;
        });
      });
    }
    return attempt(token, false);
  }

  function say(id, text, failed) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.className = failed ? "message error" : "message";
  }

  function showIncident(incident) {
    var status = document.getElementById("status");
    if (status) {
      status.textContent = incident.status;
      status.className = "status status-" + incident.status;
    }
    var detail = document.getElementById("status-detail");
    if (detail) {
      var text = incident.status;
      if (incident.status === "muted") {
        text += incident.muted_until ? " until " + incident.muted_until : " until reopened";
        if (incident.mute_reason) text += " because " + JSON.stringify(incident.mute_reason);
      }
      if (incident.status !== "open" && incident.status_by) text += " by " + incident.status_by;
      detail.textContent = text;
    }
  }

  var actions = document.getElementById("actions");
  if (actions) {
    var id = actions.dataset.incident;
    var base = "/api/incidents/" + encodeURIComponent(id);
    actions.addEventListener("click", function (ev) {
      var button = ev.target.closest("button[data-action]");
      if (!button) return;
      var action = button.dataset.action;
      button.disabled = true;
      call("POST", base + "/" + action, {}).then(function (incident) {
        showIncident(incident);
        say("action-message", action === "ack" ? "Acknowledged." : "Reopened.");
      }).catch(function (e) {
        say("action-message", e.message, true);
      }).then(function () { button.disabled = false; });
    });
    var muteForm = document.getElementById("mute-form");
    muteForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = new FormData(muteForm);
      call("POST", base + "/mute", { "for": form.get("for"), reason: form.get("reason") })
        .then(function (incident) {
          showIncident(incident);
          say("action-message", "Muted until " + incident.muted_until + ".");
        }).catch(function (e) { say("action-message", e.message, true); });
    });
  }

  var samplingForm = document.getElementById("sampling-form");
  if (samplingForm) {
    samplingForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var rate = Number(samplingForm.elements.sample_rate.value);
      var enabled = samplingForm.elements.enabled.checked;
      call("PUT", "/api/sampling", { sample_rate: rate, enabled: enabled }).then(function (s) {
        say("sampling-message", "Applied: sampling " + (s.enabled ? "on" : "off") +
            ", rate " + s.sample_rate + ".");
        var header = document.getElementById("sampling");
        if (header) header.textContent = s.enabled ? "sampling on, rate " + s.sample_rate
                                                   : "sampling switched off";
      }).catch(function (e) { say("sampling-message", e.message, true); });
    });
  }
})();
