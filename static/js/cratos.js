// Small progressive enhancements; every page works without JavaScript.
(function () {
  "use strict";

  function languageSwitch() {
    document.querySelectorAll(".language-form").forEach(function (form) {
      var select = form.querySelector("select");
      var initial = select.value;
      var byKeyboard = false;
      form.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
      // A click picks a language at once; arrow keys only browse the list (WCAG 3.2.2):
      // Enter, or leaving the field, makes the choice.
      select.addEventListener("keydown", function (event) {
        byKeyboard = true;
        if (event.key === "Enter" && select.value !== initial) {
          event.preventDefault();
          form.submit();
        }
      });
      select.addEventListener("mousedown", function () { byKeyboard = false; });
      select.addEventListener("change", function () { if (!byKeyboard) form.submit(); });
      select.addEventListener("blur", function () { if (select.value !== initial) form.submit(); });
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
