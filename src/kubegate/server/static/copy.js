// kubegate portal: a button with data-copy-target="<id>" copies that element's text to the
// clipboard and says so in the element named by data-copied-status. Served from
// /portal/static/ (the CSP allows no inline script); without script the text stays
// selectable on the page.
"use strict";

(function () {
  function say(button, text) {
    var status = document.getElementById(button.getAttribute("data-copied-status") || "");
    if (status) {
      status.textContent = text;
    }
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) {
      return;
    }
    var text = target.textContent.trim();
    if (!navigator.clipboard) {
      say(button, "Copying is not available here: select the key and copy it.");
      return;
    }
    navigator.clipboard.writeText(text).then(
      function () { say(button, "Copied to the clipboard."); },
      function () { say(button, "Could not copy: select the key and copy it."); }
    );
  }

  function wire() {
    var buttons = document.querySelectorAll("button[data-copy-target]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) { copy(event.currentTarget); });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wire);
  } else {
    wire();
  }
})();
