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

  // Full-screen view of both images: flip between them (arrows, space) or see them side by
  // side (C); Escape closes. Built here so the page has no inline script.
  function viewer() {
    var dialog = document.getElementById("viewer");
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.id = "viewer";
    dialog.innerHTML = '<div class="viewer-bar"><button type="button" data-show="0">A</button>' +
      '<button type="button" data-show="1">B</button>' +
      '<button type="button" data-side="1">Side by side <kbd>C</kbd></button>' +
      '<span class="hint">← → or space to flip</span>' +
      '<button type="button" data-close="1">Close <kbd>Esc</kbd></button></div>' +
      '<div class="viewer-images"></div>';
    dialog.addEventListener("click", function (event) {
      var b = event.target.closest("button");
      if (!b) return;
      if (b.dataset.show) showSide(Number(b.dataset.show));
      if (b.dataset.side) dialog.classList.toggle("side");
      if (b.dataset.close) dialog.close();
    });
    document.body.appendChild(dialog);
    return dialog;
  }

  function showSide(index) {
    var images = viewer().querySelectorAll("img");
    images.forEach(function (img, i) { img.classList.toggle("current", i === index); });
    viewer().dataset.current = String(index);
  }

  function openViewer(index) {
    var sources = document.querySelectorAll("#battle .panes img");
    if (sources.length !== 2) return;
    var dialog = viewer();
    var holder = dialog.querySelector(".viewer-images");
    holder.textContent = "";
    sources.forEach(function (source, i) {
      var img = document.createElement("img");
      img.src = source.currentSrc || source.src;
      img.alt = i === 0 ? "Image A" : "Image B";
      holder.appendChild(img);
    });
    showSide(index || 0);
    if (!dialog.open) dialog.showModal();
  }

  function viewerKey(event) {
    var dialog = document.getElementById("viewer");
    if (!dialog || !dialog.open) return false;
    var key = event.key;
    if (key === "ArrowLeft" || key === "ArrowRight" || key === " ") {
      showSide(dialog.dataset.current === "0" ? 1 : 0);
    } else if (key.toLowerCase() === "c") {
      dialog.classList.toggle("side");
    } else if (key.toLowerCase() === "f") {
      dialog.close();
    } else {
      // A vote key still votes; the view closes so the reveal is seen.
      if ("abtx1234".indexOf(key.toLowerCase()) !== -1) dialog.close();
      return false;
    }
    event.preventDefault();
    return true;
  }

  // The prompt box's character count against its limit.
  function countPrompt() {
    var box = document.getElementById("prompt");
    var counter = document.getElementById("prompt-count");
    if (!box || !counter) return;
    var max = Number(counter.dataset.max);
    counter.textContent = box.value.length + " / " + max;
    counter.classList.toggle("over", box.value.length > max);
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (viewerKey(event)) return;
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
    var image = event.target.closest && event.target.closest("#battle .panes img");
    var opener = event.target.closest && event.target.closest("#open-viewer");
    if (image || opener) {
      var all = Array.prototype.slice.call(document.querySelectorAll("#battle .panes img"));
      openViewer(image ? all.indexOf(image) : 0);
      return;
    }
    var link = event.target.closest && event.target.closest(".copy-settings");
    if (!link || !navigator.clipboard) return;
    event.preventDefault();
    navigator.clipboard.writeText(link.dataset.json).then(function () {
      link.textContent = "Copied";
    });
  });
  document.addEventListener("change", function (event) {
    if (event.target.id === "chat-model") showBounds();
    // Choosing "random" empties the seed box, so what is sent is what is shown.
    if (event.target.name === "seed_mode" && event.target.value === "random") {
      var seed = document.getElementById("chat-seed");
      if (seed) seed.value = "";
    }
  });
  document.addEventListener("DOMContentLoaded", showBounds);
  document.addEventListener("DOMContentLoaded", countPrompt);
  document.addEventListener("htmx:load", countPrompt);
  document.addEventListener("input", function (event) {
    if (event.target.id === "prompt") countPrompt();
    // Typing a seed selects "fixed": a typed seed is always the one used.
    if (event.target.id === "chat-seed") {
      var fixed = document.querySelector("input[name='seed_mode'][value='fixed']");
      var random = document.querySelector("input[name='seed_mode'][value='random']");
      if (event.target.value.trim() && fixed) fixed.checked = true;
      else if (random) random.checked = true;
    }
  });
  // Under the reveal floor the progress shown is the time elapsed towards the floor. The panel
  // says when the floor ends (milliseconds from when it was drawn) and how long it is, and stays
  // the same for the whole floor, so the polls are 304s and the browser swaps its cached copy
  // back in: this animates the figure between them. A copy seen later than it was drawn names a
  // later end, so each battle keeps the earliest end it was told.
  var floors = {};
  var ticking = false;

  function floorOf(panel) {
    if (!panel || !panel.dataset.floorMs) return null;
    return floors[panel.getAttribute("hx-get")] || null;
  }

  // Draw the figure now; false once no panel under a floor is on the page.
  function paintFloor() {
    var floor = floorOf(document.getElementById("battle"));
    if (!floor) return false;
    var left = Math.max(floor.end - performance.now(), 0);
    var done = Math.max(Math.min(Math.floor(100 * (floor.length - left) / floor.length), 99), 0);
    var bar = document.getElementById("progress");
    var label = document.getElementById("progress-label");
    if (bar) { bar.value = done; bar.textContent = done + "%"; }
    if (label) label.textContent = "Generating both images… " + done + "%";
    return true;
  }

  function tick() {
    ticking = paintFloor();
    if (ticking) window.requestAnimationFrame(tick);
  }

  function watchFloor() {
    var panel = document.getElementById("battle");
    if (!panel || !panel.dataset.floorMs) return;
    var key = panel.getAttribute("hx-get");
    var end = performance.now() + Number(panel.dataset.floorInMs);
    var known = floors[key];
    floors[key] = {
      end: known ? Math.min(known.end, end) : end,
      length: Math.max(Number(panel.dataset.floorMs), 1)
    };
    paintFloor();
    if (!ticking) { ticking = true; window.requestAnimationFrame(tick); }
  }

  // A generating panel polls once, when the server says (hx-trigger "load delay:..."): under
  // the floor at its end, past it at the next reveal step the battle could be shown at. If that
  // poll fails, nothing else would ask again: its "arena-retry" trigger asks 2 s later.
  function retryFloorPoll(event) {
    var panel = event.detail && event.detail.elt;
    if (panel && panel.id === "battle" && (panel.dataset.floorMs || panel.dataset.pollMs)) {
      panel.dispatchEvent(new CustomEvent("arena-retry"));
    }
  }

  document.addEventListener("htmx:sendError", retryFloorPoll);
  document.addEventListener("htmx:responseError", retryFloorPoll);
  document.addEventListener("DOMContentLoaded", watchFloor);
  document.addEventListener("htmx:load", watchFloor);
  document.addEventListener("DOMContentLoaded", function () { revealTogether(document); });
  document.addEventListener("htmx:load", function (event) { revealTogether(event.target); });
  document.addEventListener("keydown", onKey);

  // An answer htmx does not swap in (a 5xx such as 503, or no answer at all) still shows its
  // message: the page's alert text, the JSON error's message, or the status itself.
  function notice(text) {
    var box = document.getElementById("notice");
    if (!box) {
      box = document.createElement("p");
      box.id = "notice";
      box.className = "error notice";
      box.setAttribute("role", "alert");
      var main = document.querySelector("main");
      main.insertBefore(box, main.firstChild);
    }
    box.textContent = text;
  }

  function messageOf(xhr) {
    var body = xhr.responseText || "";
    try {
      var data = JSON.parse(body);
      if (data && data.error && data.error.message) return data.error.message;
    } catch (ignored) { /* not JSON: an HTML page */ }
    var alert = new DOMParser().parseFromString(body, "text/html").querySelector("[role=alert]");
    var text = alert ? alert.textContent.trim() : "";
    return text || "The arena answered " + xhr.status + " " + (xhr.statusText || "") +
      ". Try again in a few seconds.";
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var retry = xhr.getResponseHeader("Retry-After");
    var text = messageOf(xhr);
    notice(retry && text.indexOf("Try again") === -1 ? text + " Try again in " + retry + " s." : text);
  });
  document.addEventListener("htmx:sendError", function () {
    notice("The arena cannot be reached right now. Check your connection and try again.");
  });
  document.addEventListener("htmx:afterSwap", function () {
    var box = document.getElementById("notice");
    if (box) box.remove();
  });
})();
