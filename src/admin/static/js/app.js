// Entry point: sign-in, the router for /ui/, /ui/settings, /ui/usage and /ui/templates, the migration banner.

import { ApiError, auth, getOptional, request, setUnauthorizedHandler } from "./api.js";
import { clear, field, h, toast } from "./dom.js";
import { renderConfigurations } from "./configurations.js";
import { renderSettings } from "./settings.js";
import { renderTemplates } from "./templates.js";
import { renderUsage } from "./usage.js";

const ROUTES = {
  "/ui/": { title: "Configurations", render: renderConfigurations },
  "/ui/settings": { title: "Settings", render: renderSettings },
  "/ui/usage": { title: "Usage", render: renderUsage },
  "/ui/templates": { title: "Add from template", render: renderTemplates },
};

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
let signInMessage = "";
let renderToken = 0;

export function navigate(path, { replace = false } = {}) {
  const url = new URL(path, window.location.origin);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

function markCurrentLink(path) {
  for (const link of topbar.querySelectorAll("nav a")) {
    if (new URL(link.href).pathname === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  if (!auth.token) {
    renderSignIn();
    return;
  }
  const path = window.location.pathname in ROUTES ? window.location.pathname : "/ui/";
  const view = ROUTES[path];
  topbar.hidden = false;
  document.title = `${view.title} · llm-gateway`;
  markCurrentLink(path);
  const mine = ++renderToken;
  clear(main);
  const params = new URLSearchParams(window.location.search);
  try {
    await view.render(main, { navigate, params, isCurrent: () => mine === renderToken });
  } catch (error) {
    if (mine !== renderToken) return;
    main.append(h("p", { class: "notice notice-error", role: "alert" }, `Could not load this page: ${error.message}`));
  }
  refreshBanner();
}

function renderSignIn() {
  topbar.hidden = true;
  clear(document.getElementById("banners"));
  document.title = "Sign in · llm-gateway";
  const input = h("input", {
    type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false", placeholder: "lgw_…",
  });
  const error = h("p", { class: "field-error", id: "token-error", dataset: { errorFor: "token" } });
  const button = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in");
  const form = h(
    "form",
    { class: "signin card", "aria-labelledby": "signin-title", novalidate: true },
    h("div", { class: "signin-brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), "llm-gateway"),
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Paste a gateway token. It stays in this browser tab only and is forgotten when you sign out or close the tab."),
    field("Gateway token", input, { name: "token" }),
    button,
  );
  input.setAttribute("aria-describedby", "token-error");
  if (signInMessage) error.textContent = signInMessage;
  form.querySelector(".field-error").replaceWith(error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!token) {
      error.textContent = "Paste your gateway token.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      // Any call that needs a user's token proves the token; stats is the cheapest.
      await request("GET", "/api/llm-configurations/stats", { token });
      auth.signIn(token);
      signInMessage = "";
      input.value = "";
      route();
    } catch (err) {
      error.textContent = err.status === 401 ? `This token was refused: ${err.message}` : err.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(main).append(h("div", { class: "signin-wrap" }, form));
  input.focus();
}

function signOut(message = "") {
  auth.signOut();
  signInMessage = message;
  renderToken += 1;
  navigate("/ui/", { replace: true });
}

async function refreshBanner() {
  const area = document.getElementById("banners");
  let status;
  try {
    // Gateways without the legacy migration answer 404: then there is simply nothing to say.
    status = await getOptional("/api/migrations/status");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) return;
    status = null;
  }
  clear(area);
  if (!status || !status.needs_reentry) return;
  const target = status.configuration_id ? `/ui/?edit=${encodeURIComponent(status.configuration_id)}` : "/ui/?add=1";
  const why = status.reason ? ` (${status.reason})` : "";
  area.append(h(
    "div",
    { class: "banner", role: "alert" },
    h("strong", {}, "Your API key must be entered again. "),
    `Your earlier settings did not keep a usable key${why}. `,
    h("a", { href: target, dataset: { link: "" } }, status.configuration_id ? "Enter the key for this configuration" : "Add your configuration"),
    ".",
  ));
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", route);
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  toast("Signed out. The token was removed from this tab.");
});
setUnauthorizedHandler((error) => signOut(`Signed out: ${error.message}`));

route();
