// The "Add from template" page: a gallery of template cards; one opens a form with just that template's inputs,
// and "Create and test" creates the whole failover chain and shows each configuration's test verdict.

import { request } from "./api.js";
import { clearErrors, field, h, showDialog, showError, toast, uniqueId } from "./dom.js";
import { describeResult, statusBadge, withResult } from "./status.js";

const providersOf = (template) => [...new Set(template.configurations.map((c) => c.provider))];
const chainOf = (template) => template.configurations.map((c) => `${c.name} (${c.provider} ${c.model})`).join(" → ");

function card(template, onOpen) {
  const open = h("button", { type: "button", class: "btn btn-primary", dataset: { template: template.id } }, "Use this template");
  open.addEventListener("click", () => onOpen(template, open));
  return h(
    "li",
    { class: "card template-card", dataset: { templateId: template.id } },
    h("h2", {}, template.title),
    h("p", { class: "template-tags" },
      providersOf(template).map((p) => h("span", { class: "tag" }, p)),
      template.source === "operator" ? h("span", { class: "tag tag-default" }, "from your operator") : null),
    h("p", { class: "muted" }, template.description),
    h("p", { class: "template-chain" }, chainOf(template)),
    open,
  );
}

/** The gallery page at /ui/templates. */
export async function renderTemplates(main, { isCurrent }) {
  const gallery = h("ul", { class: "template-grid", "aria-label": "Templates" });
  main.append(
    h("div", { class: "page-head" }, h("div", {},
      h("h1", {}, "Add from template"),
      h("p", { class: "muted" }, "Ready-made setups: pick one, paste the keys it asks for, and its configurations are created with their fallbacks and tested."))),
    gallery,
  );
  const { items } = await request("GET", "/api/templates");
  if (!isCurrent()) return;
  gallery.append(...items.map((template) => card(template, openApply)));
}

function inputField(item) {
  const kind = { api_key: "password", base_url: "url" }[item.kind] || "text";
  const control = h("input", { type: kind, name: item.id, autocomplete: "off", spellcheck: "false", required: item.required });
  const label = item.required ? item.label : `${item.label} (optional)`;
  return { item, control, node: field(label, control, { name: item.id }) };
}

function collect(fields) {
  const inputs = {};
  for (const { item, control } of fields) {
    // Keys go as typed (the API refuses surrounding spaces rather than guessing); URLs and names are trimmed.
    const value = item.kind === "api_key" ? control.value : control.value.trim();
    if (value) inputs[item.id] = value;
  }
  const missing = fields.find(({ item }) => item.required && !inputs[item.id]);
  return { inputs, missing };
}

function verdictRow(config, verdict) {
  const look = verdict
    ? withResult({ name: config.name }, verdict)
    : { ...config, test_status: "untested" };
  return h(
    "li",
    { class: "template-result", dataset: { configurationId: config.id, status: look.test_status } },
    h("span", { class: "cell-name" }, config.name),
    statusBadge(look),
    h("span", { class: "muted" }, verdict ? describeResult(verdict.message, verdict.latency_ms) : "Not tested"),
  );
}

function showResults(list, result) {
  const byId = Object.fromEntries(result.tests.map((t) => [t.configuration_id, t]));
  list.replaceChildren(...result.configurations.map((c) => verdictRow(c, byId[c.id])));
  list.hidden = false;
  return result.tests.every((t) => t.success);
}

function applyForm(template, titleId) {
  const fields = template.inputs.map(inputField);
  const prefix = h("input", { type: "text", name: "name_prefix", maxlength: "50", autocomplete: "off" });
  const makeDefault = h("input", { type: "checkbox", name: "make_default" });
  const parts = {
    fields, prefix, makeDefault,
    general: h("p", { class: "form-error", role: "alert", hidden: true }),
    results: h("ul", { class: "template-results", "aria-label": "Test results", hidden: true }),
    cancel: h("button", { type: "button", class: "btn" }, "Cancel"),
    submit: h("button", { type: "submit", class: "btn btn-primary" }, "Create and test"),
  };
  parts.form = h(
    "form",
    { novalidate: true },
    h("h2", { id: titleId }, template.title),
    h("p", { class: "muted" }, `Creates, in failover order: ${chainOf(template)}.`),
    parts.general,
    h("div", { class: "form-grid" }, fields.map((f) => f.node)),
    field("Name prefix (optional)", prefix, { name: "name_prefix", hint: "Put before each name, e.g. to use a template twice." }),
    h("div", { class: "checks" }, h("label", { class: "check" }, makeDefault, "Make the first one my default")),
    parts.results,
    h("div", { class: "dialog-actions" }, parts.cancel, parts.submit),
  );
  return parts;
}

async function submitApply(template, parts) {
  clearErrors(parts.form);
  const { inputs, missing } = collect(parts.fields);
  if (missing) {
    showError(parts.form, { param: missing.item.id, message: `Fill in: ${missing.item.label}.` }, parts.general);
    return;
  }
  const body = { inputs, test: true, make_default: parts.makeDefault.checked };
  if (parts.prefix.value.trim()) body.name_prefix = parts.prefix.value;
  parts.submit.disabled = true;
  parts.submit.textContent = "Creating and testing…";
  try {
    const result = await request("POST", `/api/templates/${encodeURIComponent(template.id)}/apply`, { body });
    // The keys go no further than the request that carried them.
    for (const { control } of parts.fields) control.value = "";
    const allWorking = showResults(parts.results, result);
    parts.submit.hidden = true;
    parts.cancel.textContent = "Done";
    toast(`Created ${result.configurations.length} configuration(s) from "${template.title}".`, allWorking ? "success" : "error");
  } catch (error) {
    // The API names an input as "inputs.<id>"; its field carries the bare id.
    const param = String(error.param || "").replace(/^inputs\./, "");
    showError(parts.form, { message: error.message, param }, parts.general);
  } finally {
    parts.submit.disabled = false;
    parts.submit.textContent = "Create and test";
  }
}

/** Open the form of one template in a dialog. */
export function openApply(template, returnFocus) {
  const titleId = uniqueId("template-title");
  const parts = applyForm(template, titleId);
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId, dataset: { templateId: template.id } }, parts.form);
  parts.cancel.addEventListener("click", () => dialog.close());
  parts.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitApply(template, parts);
  });
  showDialog(dialog, {
    returnFocus,
    onClose: () => { for (const { control } of parts.fields) control.value = ""; },
  });
  (parts.fields[0]?.control || parts.prefix).focus();
  return dialog;
}
