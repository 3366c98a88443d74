// Keeps each authorization's "time left" (server-rendered as "1h 52m") ticking down.
// Counts from the seconds the server computed, so a skewed client clock does not matter.
(function () {
  "use strict";

  function format(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var secs = seconds % 60;
    if (hours) return hours + "h " + minutes + "m";
    if (minutes) return minutes + "m " + secs + "s";
    return secs + "s";
  }

  function expire(badge) {
    badge.textContent = badge.dataset.expiredLabel || "expired";
    badge.classList.add("badge-expired");
    var row = badge.closest("[data-countdown-row]");
    var action = row && row.querySelector("[data-countdown-action]");
    if (action) {
      action.removeAttribute("href");
      action.setAttribute("aria-disabled", "true");
    }
  }

  function start() {
    var started = Date.now();
    var badges = Array.prototype.slice.call(document.querySelectorAll("[data-seconds-left]"));
    if (!badges.length) return;
    function tick() {
      var elapsed = Math.floor((Date.now() - started) / 1000);
      badges.forEach(function (badge) {
        var left = parseInt(badge.dataset.secondsLeft, 10) - elapsed;
        if (left > 0) badge.textContent = format(left);
        else expire(badge);
      });
    }
    tick();
    window.setInterval(tick, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
