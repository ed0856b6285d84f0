// The proof-of-work check before a session's first battle (ALTCHA's puzzle, arena/challenge.py):
// find n with SHA-256(salt + n) equal to the challenge, then send the signed answer with the
// form. It starts as soon as the page loads, so a person rarely waits for it. crypto.subtle
// exists only in secure contexts (HTTPS, or a loopback address in development).
(function () {
  "use strict";

  var BATCH = 2000;

  function hex(buffer) {
    var bytes = new Uint8Array(buffer);
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  async function solve(c) {
    var encoder = new TextEncoder();
    for (var start = 0; start <= c.maxNumber; start += BATCH) {
      var batch = [];
      for (var n = start; n < Math.min(start + BATCH, c.maxNumber + 1); n++) {
        batch.push(crypto.subtle.digest("SHA-256", encoder.encode(c.salt + n)));
      }
      var hashes = await Promise.all(batch);
      for (var i = 0; i < hashes.length; i++) {
        if (hex(hashes[i]) === c.challenge) return start + i;
      }
    }
    return null;
  }

  async function answer(input) {
    var response = await fetch(input.dataset.challenge, { credentials: "same-origin" });
    var c = await response.json();
    if (!c.required) return "";
    var number = await solve(c);
    if (number === null) return "";
    var payload = {
      algorithm: c.algorithm, challenge: c.challenge, number: number,
      salt: c.salt, signature: c.signature,
    };
    return btoa(JSON.stringify(payload));
  }

  function start() {
    var input = document.querySelector("input[data-challenge]");
    if (!input || !window.crypto || !crypto.subtle || input.dataset.pending) return;
    input.dataset.pending = "1";
    var done = answer(input).then(function (value) { input.value = value; input.dataset.solved = "1"; })
      .catch(function () { input.dataset.solved = "1"; });
    var form = input.form;
    // htmx asks before it sends: hold the request until the answer is in the form.
    form.addEventListener("htmx:confirm", function (event) {
      if (input.dataset.solved || event.detail.elt !== form) return;
      event.preventDefault();
      done.then(function () { event.detail.issueRequest(); });
    });
    form.addEventListener("submit", function (event) {
      // Forms that htmx sends are held at htmx:confirm instead.
      if (input.dataset.solved || event.defaultPrevented || window.htmx) return;
      event.preventDefault();
      done.then(function () { form.requestSubmit(event.submitter); });
    });
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", start);
})();
