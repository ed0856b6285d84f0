// Progressive enhancement for the battle page: show both images at the same moment, enable
// voting only then, and keyboard shortcuts. Everything works without this file.
(function () {
  "use strict";

  function revealTogether(root) {
    var panes = root.querySelector(".panes.pending");
    if (!panes) return;
    var buttons = root.querySelectorAll("#vote-form button");
    buttons.forEach(function (b) { b.disabled = true; });
    var images = Array.prototype.slice.call(panes.querySelectorAll("img"));
    var waiting = images.length;
    function one() {
      waiting -= 1;
      if (waiting > 0) return;
      panes.classList.remove("pending");
      buttons.forEach(function (b) { b.disabled = false; });
      var form = root.querySelector("#vote-form");
      if (form) form.dataset.ready = "1";
    }
    images.forEach(function (img) {
      if (img.complete && img.naturalWidth > 0) { one(); return; }
      img.addEventListener("load", one, { once: true });
      img.addEventListener("error", one, { once: true });
    });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT")) return;
    var key = event.key.toLowerCase();
    var candidates = document.querySelectorAll("[data-key]");
    for (var i = 0; i < candidates.length; i++) {
      var el = candidates[i];
      if (el.dataset.key.split(" ").indexOf(key) === -1 || el.disabled) continue;
      event.preventDefault();
      el.click();
      return;
    }
  }

  document.addEventListener("DOMContentLoaded", function () { revealTogether(document); });
  document.addEventListener("htmx:load", function (event) { revealTogether(event.target); });
  document.addEventListener("keydown", onKey);
})();
