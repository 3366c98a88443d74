// Small progressive enhancements; every page works without JavaScript.
(function () {
  "use strict";

  function languageSwitch() {
    document.querySelectorAll(".language-form").forEach(function (form) {
      var select = form.querySelector("select");
      form.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
      select.addEventListener("change", function () { form.submit(); });
    });
  }

  function choiceFilters() {
    document.querySelectorAll("input.choice-filter").forEach(function (input) {
      var list = document.querySelector(input.dataset.filterTarget);
      if (!list) return;
      var choices = list.querySelectorAll("[data-filter-text]");
      if (choices.length < 8) return;  // a short list needs no filter
      input.hidden = false;
      input.addEventListener("input", function () {
        var needle = input.value.trim().toLowerCase();
        choices.forEach(function (choice) {
          var text = choice.dataset.filterText.toLowerCase();
          var checked = choice.querySelector("input").checked;
          choice.hidden = needle !== "" && text.indexOf(needle) === -1 && !checked;
        });
      });
    });
  }

  function start() {
    languageSwitch();
    choiceFilters();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
