// gfe-proxy demo: a "copy" button on the curl cheat-sheet. Served by the static_dir handler.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const pre of document.querySelectorAll("pre.cheat")) {
    const button = document.createElement("button");
    button.className = "copy";
    button.type = "button";
    button.textContent = "copy";
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.querySelector("code").textContent);
        button.textContent = "copied";
      } catch {
        button.textContent = "select and copy";  // clipboard needs https or localhost
      }
      setTimeout(() => { button.textContent = "copy"; }, 1500);
    });
    pre.appendChild(button);
  }
});
