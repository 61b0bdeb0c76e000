// pgshadow admin page: the buttons. Calls the JSON API on this server and
// updates the page with textContent only (never innerHTML), so no data can
// become markup here either. When the server requires a token, the browser
// holds an HttpOnly session cookie from the login form (the script never
// sees the token again); a refused call reloads the page, which then shows
// the form.
(function () {
  "use strict";

  function call(method, path, payload) {
    return fetch(path, {
      method: method, headers: { "Content-Type": "application/json" },
      credentials: "same-origin", body: JSON.stringify(payload || {})
    }).then(function (r) {
      if (r.status === 401) {
        location.reload();
        throw new Error("logged out: log in again");
      }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
        return data;
      });
    });
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

  var loginForm = document.getElementById("login-form");
  if (loginForm) {
    loginForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var token = loginForm.elements.token.value.trim();
      fetch("/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        credentials: "same-origin", body: JSON.stringify({ token: token })
      }).then(function (r) {
        if (!r.ok) {
          say("login-message", "That token was refused.", true);
          return;
        }
        if (location.pathname === "/login") location.assign("/");
        else location.reload();
      }).catch(function (e) { say("login-message", e.message, true); });
    });
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
