// The dashboard's only script besides HTMX. Loaded from a file: the pages' CSP forbids
// inline code.
"use strict";

// HTMX requests carry the page's CSRF token (state-changing ones need it).
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

// Forms marked data-confirm ask first; data-prompt asks for a reason (sent as "reason").
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) {
    return;
  }
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  if (form.dataset.prompt) {
    const answer = window.prompt(form.dataset.prompt, "");
    if (answer === null) {
      event.preventDefault();
      return;
    }
    const reason = form.elements.namedItem("reason");
    if (reason instanceof HTMLInputElement) {
      reason.value = answer;
    }
  }
});
