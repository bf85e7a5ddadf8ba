// Polling pauses while the tab is hidden: every polled fragment's hx-trigger carries
// [document.visibilityState === 'visible']; when the tab comes back, refresh them at once.
(function () {
  "use strict";
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible" || !window.htmx) return;
    document.querySelectorAll("[data-poll]").forEach(function (el) { window.htmx.trigger(el, "refresh"); });
  });
})();
