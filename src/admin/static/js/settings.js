// Settings: which configuration is the default, its masked key and its live test status.

import { allConfigurations, configurations, providerNames, providers } from "./api.js";
import { clear, field, fullTime, h, relativeTime, toast } from "./dom.js";
import { describeResult, statusBadge, withResult } from "./status.js";

function defaultSelect(items, chosen, providerName) {
  return h("select", { name: "default_id" },
    chosen ? null : h("option", { value: "", selected: true }, "No default (choose one)"),
    items.map((c) => h("option", { value: c.id, selected: chosen && c.id === chosen.id, disabled: !c.is_active },
      `${c.team ? `${c.team.name}/` : ""}${c.name} — ${providerName[c.provider] || c.provider} · ${c.model}${c.is_active ? "" : " (inactive)"}`)));
}

/** The chosen default's provider, model, masked key and test status. */
function renderDetails(view, { running = false } = {}) {
  const { chosen, details, testButton, providerName } = view;
  clear(details);
  if (!chosen) {
    details.append(h("dt", {}, "Status"), h("dd", {}, "No default: requests must name a configuration."));
    testButton.disabled = true;
    return;
  }
  testButton.disabled = running;
  const tested = chosen.tested_at ? ` · tested ${relativeTime(chosen.tested_at)}` : "";
  const message = describeResult(chosen.test_message, chosen.test_latency_ms);
  details.append(
    h("dt", {}, "Provider"), h("dd", {}, providerName[chosen.provider] || chosen.provider),
    h("dt", {}, "Model"), h("dd", {}, chosen.model),
    h("dt", {}, "API key"), h("dd", {}, h("code", { class: "masked-key", dataset: { maskedKey: "" } }, chosen.api_key || "—")),
    h("dt", {}, "Test status"),
    h("dd", { class: "live-status", "aria-live": "polite" },
      statusBadge(chosen, { running }),
      running ? null : h("span", { class: "muted", title: fullTime(chosen.tested_at) }, `${message ? ` ${message}` : ""}${tested}`)),
  );
}

async function runTest(view) {
  renderDetails(view, { running: true });
  const { chosen } = view;
  try {
    const result = await configurations.test(chosen.id);
    view.chosen = { ...withResult(chosen, result), tested_at: new Date().toISOString() };
  } catch (error) {
    toast(`Could not test ${chosen.name}: ${error.message}`, "error");
  }
  renderDetails(view);
}

/** Make the selected configuration the default, then test it. */
async function choose(view) {
  const { select, errorSlot } = view;
  const next = view.items.find((c) => c.id === select.value);
  if (!next) return;
  errorSlot.textContent = "";
  select.removeAttribute("aria-invalid");
  select.disabled = true;
  try {
    view.chosen = await configurations.setDefault(next.id);
    if (!view.chosen || !view.chosen.id) view.chosen = await configurations.get(next.id);
    select.querySelector('option[value=""]')?.remove();
    toast(`${view.chosen.name} is now the default.`, "success");
    select.disabled = false;
    await runTest(view);
  } catch (error) {
    errorSlot.textContent = error.message;
    select.setAttribute("aria-invalid", "true");
    select.value = view.chosen ? view.chosen.id : "";
  } finally {
    select.disabled = false;
  }
}

export async function renderSettings(main, { isCurrent }) {
  const [items, catalog] = await Promise.all([allConfigurations(), providers()]);
  if (!isCurrent()) return;
  const providerName = providerNames(catalog);
  main.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Settings"),
    h("p", { class: "muted" }, "The default configuration serves every request that does not name another one."))));

  if (!items.length) {
    main.append(h("section", { class: "card" }, h("p", {}, "You have no configurations yet. "),
      h("a", { href: "/ui/", dataset: { link: "" }, class: "btn btn-primary" }, "Add a configuration")));
    return;
  }

  const chosen = items.find((c) => c.is_default) || null;
  const select = defaultSelect(items, chosen, providerName);
  const selectField = field("Default configuration", select, { name: "default_id" });
  const view = {
    items, chosen, providerName, select,
    errorSlot: selectField.querySelector(".field-error"),
    details: h("dl", { class: "details" }),
    testButton: h("button", { type: "button", class: "btn" }, "Test now"),
  };
  main.append(h("section", { class: "card settings-card" },
    selectField, view.details,
    h("div", { class: "card-actions" }, view.testButton, h("a", { href: "/ui/", dataset: { link: "" } }, "Manage configurations"))));
  select.addEventListener("change", () => choose(view));
  view.testButton.addEventListener("click", () => runTest(view));
  renderDetails(view);
}
