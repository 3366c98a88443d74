// Redeploy pages, progressively enhanced (both work without JavaScript):
// - the request form offers the namespaces, Deployments and clusters of the application typed;
// - the operation page asks for news every few seconds while the redeploy runs and updates the
//   table in place. Text always goes in through textContent, never as HTML.
(function () {
  "use strict";

  function pad(number) {
    return (number < 10 ? "0" : "") + number;
  }

  function zoneName(date) {
    var part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(date)
      .filter(function (p) { return p.type === "timeZoneName"; })[0];
    return part ? " " + part.value : "";
  }

  // "2024-05-01 14:03:07 UTC" in the browser's time zone, named.
  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "—";
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
      zoneName(date);
  }

  function setTime(element, iso) {
    if (!element) return;
    if (iso) {
      element.setAttribute("datetime", iso);
      element.textContent = formatTime(iso);
    } else {
      element.removeAttribute("datetime");
      element.textContent = "—";
    }
  }

  function readJson(id) {
    var script = document.getElementById(id);
    return script ? JSON.parse(script.textContent) : null;
  }

  // -- the request form ----------------------------------------------------------------------

  function fillDatalist(id, values) {
    var list = document.getElementById(id);
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      list.appendChild(option);
    });
  }

  function unique(values) {
    return values.filter(function (value, index) {
      return values.indexOf(value) === index;
    }).sort();
  }

  function requestForm(form) {
    var bindings = readJson("redeploy-bindings") || {};
    var application = form.querySelector("[name=application]");
    var namespace = form.querySelector("[name=namespace]");
    var deployment = form.querySelector("[name=deployment]");
    if (!application || !namespace || !deployment) return;

    function update() {
      var places = bindings[application.value.trim()];
      if (!places) return;  // not one the user may redeploy now: keep what the server offered
      fillDatalist("namespace-choices", unique(places.map(function (p) { return p.namespace; })));
      fillDatalist("deployment-choices", unique(places.map(function (p) { return p.deployment; })));
      fillDatalist("cluster-choices", unique(places.map(function (p) { return p.cluster; })));
      // One Deployment in one namespace (in any number of clusters): fill it in, unless typed.
      var names = unique(places.map(function (p) { return p.namespace + "\n" + p.deployment; }));
      if (names.length === 1 && !namespace.value && !deployment.value) {
        namespace.value = places[0].namespace;
        deployment.value = places[0].deployment;
      }
    }

    application.addEventListener("change", update);
    application.addEventListener("input", update);
  }

  // -- the operation page --------------------------------------------------------------------

  var FINISHED = ["SUCCEEDED", "FAILED"];

  function setBadge(element, state, badges) {
    if (!element || element.dataset.state === state) return;
    var badge = badges[state] || { label: state, css: "" };
    element.className = "badge" + (badge.css ? " " + badge.css : "");
    element.textContent = badge.label;
    element.dataset.state = state;
  }

  function setText(row, field, value) {
    row.querySelectorAll('[data-field="' + field + '"]').forEach(function (element) {
      element.textContent = value === null || value === undefined || value === "" ? "—" : value;
    });
  }

  function setBar(row, field, value, max) {
    var bar = row.querySelector('[data-field="' + field + '"]');
    if (!bar) return;
    bar.max = max > 0 ? max : 1;
    bar.value = value || 0;
  }

  function updateTarget(row, target, badges) {
    row.dataset.targetId = target.id;
    setText(row, "cluster", target.cluster);
    setBadge(row.querySelector('[data-field="state"]'), target.state, badges);
    var progress = target.progress || {};
    var known = progress.replicas !== null && progress.replicas !== undefined;
    row.querySelector('[data-field="progress"]').hidden = !known;
    row.querySelector('[data-field="noProgress"]').hidden = known;
    if (known) {
      setText(row, "replicas", String(progress.replicas));
      setText(row, "updatedReplicas", String(progress.updatedReplicas || 0));
      setText(row, "availableReplicas", String(progress.availableReplicas || 0));
      setBar(row, "updatedBar", progress.updatedReplicas, progress.replicas);
      setBar(row, "availableBar", progress.availableReplicas, progress.replicas);
    }
    setTime(row.querySelector('[data-field="operatedAt"]'), target.operatedAt);
    setText(row, "restartedAt", target.restartedAt);
    setText(row, "generation", target.generation === null ? null : String(target.generation));
    setText(row, "resourceVersion", target.resourceVersion);
    // The result message is shown verbatim: an empty one stays empty.
    row.querySelector('[data-field="message"]').textContent = target.message || "";
  }

  function updateTargets(page, targets, badges) {
    var body = page.querySelector("[data-targets]");
    var empty = body.querySelector("[data-no-targets]");
    var template = document.getElementById("target-row-template");
    targets.forEach(function (target) {
      var row = body.querySelector('tr[data-target-id="' + target.id + '"]');
      if (!row) {
        row = template.content.querySelector("tr").cloneNode(true);
        body.insertBefore(row, empty);
      }
      updateTarget(row, target, badges);
    });
    empty.hidden = targets.length > 0;
  }

  function updateOperation(page, operation, badges) {
    setBadge(page.querySelector('[data-op-field="state"]'), operation.state, badges);
    var message = page.querySelector('[data-op-field="message"]');
    message.textContent = operation.message || "";
    message.hidden = !operation.message;
    message.classList.toggle("alert-success", operation.state === "SUCCEEDED");
    message.classList.toggle("alert-error", operation.state === "FAILED");
    setTime(page.querySelector('[data-op-field="startedAt"]'), operation.startedAt);
    setTime(page.querySelector('[data-op-field="finishedAt"]'), operation.finishedAt);
    var ticket = page.querySelector('[data-op-field="ticketNo"]');
    if (operation.ticketNo && !ticket.querySelector("a")) {
      var link = document.createElement("a");
      link.href = page.dataset.ticketUrl.replace("TICKET_NO", encodeURIComponent(operation.ticketNo));
      link.textContent = operation.ticketNo;
      ticket.textContent = "";
      ticket.appendChild(link);
    }
    updateTargets(page, operation.targets || [], badges);
    var wasFinished = FINISHED.indexOf(page.dataset.state) !== -1;
    page.dataset.state = operation.state;
    // A failure ended while watching: the server knows what comes next (given back, retry).
    if (!wasFinished && operation.state === "FAILED") window.location.reload();
    if (FINISHED.indexOf(operation.state) !== -1) {
      var following = page.querySelector('[data-op-field="following"]');
      if (following) following.hidden = true;
      var empty = page.querySelector("[data-no-targets] td");
      if (empty && empty.dataset.finishedText) empty.textContent = empty.dataset.finishedText;
    }
  }

  function operationPage(page) {
    var badges = readJson("redeploy-state-badges") || {};
    var interval = parseInt(page.dataset.pollMilliseconds, 10) || 2000;
    var failures = 0;

    // Times in the browser's zone, the same way the updates will show them.
    page.querySelectorAll("time[datetime]").forEach(function (element) {
      setTime(element, element.getAttribute("datetime"));
    });

    function poll() {
      if (FINISHED.indexOf(page.dataset.state) !== -1) return;
      fetch(page.dataset.statusUrl, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
      })
        .then(function (response) {
          // Gone, or signed out (sent to the login page): stop asking.
          if (response.redirected || response.status === 404 || response.status === 403) {
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (operation) {
          if (!operation) return;
          failures = 0;
          updateOperation(page, operation, badges);
          window.setTimeout(poll, interval);
        })
        .catch(function () {
          // The server is briefly away: ask again, less and less often.
          failures += 1;
          window.setTimeout(poll, interval * Math.min(failures + 1, 10));
        });
    }

    window.setTimeout(poll, interval);
  }

  function start() {
    document.querySelectorAll("[data-redeploy-form]").forEach(requestForm);
    document.querySelectorAll("[data-operation]").forEach(operationPage);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
