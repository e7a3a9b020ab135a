// Copy buttons (the portal's own script; the CSP allows no inline script).
// <button data-copy="ID" hidden> copies the text of the element with id ID to the clipboard
// and says so in the role="status" element beside it. The buttons stay hidden where there
// is no script or no clipboard: the text can still be selected and copied by hand.
"use strict";

for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.dataset.copy);
  if (source === null || !navigator.clipboard) {
    continue;
  }
  const status = button.parentElement.querySelector("[role=status]");
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(source.textContent);
      if (status !== null) {
        status.textContent = "Copied.";
      }
    } catch (error) {
      if (status !== null) {
        status.textContent = "Could not copy: select the text and copy it yourself.";
      }
    }
  });
}
