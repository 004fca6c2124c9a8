// jitgate console: progressive enhancement only. Nothing here is needed to
// act: every action is a plain form post. This adds copy buttons and keeps
// sections marked data-live fresh by re-reading the page every 5 seconds.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) { return; }
      navigator.clipboard.writeText(source.value || source.textContent).then(function () {
        var status = document.getElementById(button.getAttribute("data-copy") + "-status");
        if (status) { status.textContent = "Copied."; }
      });
    });
  });
  var live = document.querySelectorAll("[data-live]");
  if (live.length === 0) { return; }
  setInterval(function () {
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        live.forEach(function (el) {
          var next = fresh.getElementById(el.id);
          // Do not replace a section the person is typing in.
          if (next && !el.contains(document.activeElement)) { el.replaceChildren.apply(el, Array.from(next.childNodes)); }
        });
      })
      .catch(function () {});
  }, 5000);
});
