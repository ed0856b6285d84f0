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

  // Direct chat: show the chosen model's bounds, and copy a turn's settings as JSON.
  function showBounds() {
    var select = document.getElementById("chat-model");
    var hint = document.getElementById("chat-bounds");
    if (!select || !hint) return;
    var o = select.options[select.selectedIndex].dataset;
    hint.textContent = "Steps 1–" + o.maxSteps + " (default " + o.steps + "), guidance " +
      o.minGuidance + "–" + o.maxGuidance + " (default " + o.guidance + "), sizes " + o.sizes +
      (o.refine === "1" ? "; can refine images" : "; cannot refine images");
    document.getElementById("chat-steps").max = o.maxSteps;
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".copy-settings");
    if (!link || !navigator.clipboard) return;
    event.preventDefault();
    navigator.clipboard.writeText(link.dataset.json).then(function () {
      link.textContent = "Copied";
    });
  });
  document.addEventListener("change", function (event) {
    if (event.target.id === "chat-model") showBounds();
  });
  document.addEventListener("DOMContentLoaded", showBounds);
  document.addEventListener("DOMContentLoaded", function () { revealTogether(document); });
  document.addEventListener("htmx:load", function (event) { revealTogether(event.target); });
  document.addEventListener("keydown", onKey);
})();
