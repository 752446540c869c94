// Settings: which configuration is the default, its masked key and its live test status.

import { allConfigurations, configurations, providers } from "./api.js";
import { clear, field, fullTime, h, relativeTime, spinner, toast } from "./dom.js";
import { describeResult, statusBadge } from "./status.js";

export async function renderSettings(main, { isCurrent }) {
  const [items, catalog] = await Promise.all([allConfigurations(), providers()]);
  if (!isCurrent()) return;
  const providerName = Object.fromEntries(catalog.map((p) => [p.id, p.name]));
  main.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Settings"),
    h("p", { class: "muted" }, "The default configuration serves every request that does not name another one."))));

  if (!items.length) {
    main.append(h("section", { class: "card" }, h("p", {}, "You have no configurations yet. "),
      h("a", { href: "/ui/", dataset: { link: "" }, class: "btn btn-primary" }, "Add a configuration")));
    return;
  }

  let chosen = items.find((c) => c.is_default) || null;
  const select = h("select", { name: "default_id" },
    chosen ? null : h("option", { value: "", selected: true }, "No default (choose one)"),
    items.map((c) => h("option", { value: c.id, selected: chosen && c.id === chosen.id, disabled: !c.is_active },
      `${c.name} — ${providerName[c.provider] || c.provider} · ${c.model}${c.is_active ? "" : " (inactive)"}`)));
  const selectField = field("Default configuration", select, { name: "default_id" });
  const errorSlot = selectField.querySelector(".field-error");
  const details = h("dl", { class: "details" });
  const testButton = h("button", { type: "button", class: "btn" }, "Test now");
  const card = h("section", { class: "card settings-card" },
    selectField, details,
    h("div", { class: "card-actions" }, testButton, h("a", { href: "/ui/", dataset: { link: "" } }, "Manage configurations")));
  main.append(card);

  function renderDetails({ running = false } = {}) {
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

  async function runTest() {
    renderDetails({ running: true });
    try {
      const result = await configurations.test(chosen.id);
      chosen = { ...chosen, test_status: result.status, test_message: result.message, test_latency_ms: result.latency_ms, tested_at: new Date().toISOString() };
    } catch (error) {
      toast(`Could not test ${chosen.name}: ${error.message}`, "error");
    }
    renderDetails();
  }

  select.addEventListener("change", async () => {
    const next = items.find((c) => c.id === select.value);
    if (!next) return;
    errorSlot.textContent = "";
    select.removeAttribute("aria-invalid");
    select.disabled = true;
    try {
      chosen = await configurations.setDefault(next.id);
      if (!chosen || !chosen.id) chosen = await configurations.get(next.id);
      select.querySelector('option[value=""]')?.remove();
      toast(`${chosen.name} is now the default.`, "success");
      select.disabled = false;
      await runTest();
    } catch (error) {
      errorSlot.textContent = error.message;
      select.setAttribute("aria-invalid", "true");
      select.value = chosen ? chosen.id : "";
    } finally {
      select.disabled = false;
    }
  });
  testButton.addEventListener("click", runTest);
  renderDetails();
}
