// The add / edit dialog. On edit the key field holds the masked key; left as is, the stored key is kept.

import { configurations, teams } from "./api.js";
import { clearErrors, field, h, showDialog, showError, toast, uniqueId } from "./dom.js";
import { describeResult, withResult } from "./status.js";

function fallbackPicker(others, chosen) {
  const order = [...chosen];
  const byId = Object.fromEntries(others.map((c) => [c.id, c]));
  const list = h("ol", { class: "fallback-list", "aria-label": "Fallback order" });
  const adder = h("select", { name: "fallback_add" });
  const wrap = h("div", { class: "fallback-picker" }, list, adder);

  function move(index, delta) {
    const [item] = order.splice(index, 1);
    order.splice(index + delta, 0, item);
    render();
    list.querySelectorAll("li")[index + delta]?.querySelector("button")?.focus();
  }

  function render() {
    list.replaceChildren(
      ...order.map((id, index) => {
        const name = byId[id] ? byId[id].name : id;
        const up = h("button", { type: "button", class: "btn btn-icon", "aria-label": `Move ${name} up`, disabled: index === 0 }, "↑");
        const down = h("button", { type: "button", class: "btn btn-icon", "aria-label": `Move ${name} down`, disabled: index === order.length - 1 }, "↓");
        const drop = h("button", { type: "button", class: "btn btn-icon", "aria-label": `Remove ${name} from fallbacks` }, "×");
        up.addEventListener("click", () => move(index, -1));
        down.addEventListener("click", () => move(index, 1));
        drop.addEventListener("click", () => { order.splice(index, 1); render(); adder.focus(); });
        return h("li", {}, h("span", { class: "fallback-name" }, `${index + 1}. ${name}`), h("span", { class: "fallback-buttons" }, up, down, drop));
      }),
    );
    const free = others.filter((c) => !order.includes(c.id));
    adder.replaceChildren(
      h("option", { value: "" }, free.length ? "Add a fallback…" : order.length ? "All your other configurations are fallbacks" : "No other configurations yet"),
      ...free.map((c) => h("option", { value: c.id }, `${c.name} (${c.model})`)),
    );
    adder.disabled = free.length === 0;
  }

  adder.addEventListener("change", () => {
    if (adder.value) order.push(adder.value);
    render();
    adder.focus();
  });
  render();
  return { node: wrap, control: adder, value: () => [...order] };
}

function editorControls(current, editing, catalog, others) {
  const modelsId = uniqueId("models");
  const apiKey = h("input", {
    type: "password", name: "api_key", autocomplete: "off", spellcheck: "false", required: !editing,
    value: editing ? current.api_key || "" : "",
  });
  return {
    name: h("input", { type: "text", name: "name", required: true, maxlength: "100", autocomplete: "off", value: current.name || "" }),
    provider: h("select", { name: "provider", required: true }, catalog.map((p) => h("option", { value: p.id, selected: p.id === current.provider }, p.name))),
    model: h("input", { type: "text", name: "model", required: true, list: modelsId, autocomplete: "off", value: current.model || "" }),
    modelOptions: h("datalist", { id: modelsId }),
    apiKey,
    reveal: h("button", { type: "button", class: "btn btn-small", "aria-pressed": "false", "aria-label": "Show API key" }, "Show"),
    baseUrl: h("input", { type: "url", name: "base_url", autocomplete: "off", spellcheck: "false", value: current.base_url || "" }),
    active: h("input", { type: "checkbox", name: "is_active", checked: current.is_active !== false }),
    makeDefault: h("input", { type: "checkbox", name: "is_default", checked: Boolean(current.is_default), disabled: Boolean(current.is_default) }),
    testOnSave: h("input", { type: "checkbox", name: "test_on_save", checked: !editing }),
    fallbacks: fallbackPicker(others.filter((c) => c.id !== current.id), current.fallback_ids || []),
    generalError: h("p", { class: "form-error", role: "alert", hidden: true }),
    save: h("button", { type: "submit", class: "btn btn-primary" }, editing ? "Save changes" : "Add configuration"),
    cancel: h("button", { type: "button", class: "btn" }, "Cancel"),
  };
}

function checkbox(input, label, extra) {
  input.id = uniqueId("c");
  return h("div", { class: "check", dataset: { field: input.name } },
    input, h("label", { htmlFor: input.id }, label), extra,
    h("p", { class: "field-error", dataset: { errorFor: input.name } }));
}

function editorTitle({ current, editing, team }) {
  if (editing) return current.team ? `Edit ${current.team.name}/${current.name}` : `Edit ${current.name}`;
  return team ? `Add a configuration to team ${team.name}` : "Add a configuration";
}

/** The form around the controls; returns it with the base URL field, whose label and hint follow the provider. */
function editorForm(ed, titleId) {
  const { current, editing } = ed;
  const keyField = field("API key", ed.apiKey, {
    name: "api_key",
    wrap: h("div", { class: "input-with-button" }, ed.apiKey, ed.reveal),
    hint: editing ? "Shown masked. Leave it as is to keep the stored key, or paste a new one." : "Stored encrypted; this page never shows it again.",
  });
  const baseField = field("Base URL", ed.baseUrl, { name: "base_url" });
  const fallbackField = field("Fallbacks, in order", ed.fallbacks.control, {
    name: "fallback_ids", hint: "Tried in this order when this configuration fails.", wrap: ed.fallbacks.node,
  });
  const form = h(
    "form",
    { class: "editor", novalidate: true },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, editorTitle(ed))),
    ed.generalError,
    h("div", { class: "form-grid" },
      field("Name", ed.name, { name: "name", hint: "Clients may send it as the model to pick this configuration." }),
      field("Provider", ed.provider, { name: "provider" }),
      field("Model", ed.model, { name: "model", hint: "Pick one or type any model name." }),
      keyField,
      baseField,
    ),
    fallbackField,
    h("div", { class: "checks" },
      checkbox(ed.active, "Active"),
      checkbox(ed.makeDefault, editing && current.is_default ? "Default (choose another to change)" : "Make this the default"),
      checkbox(ed.testOnSave, "Test on save")),
    ed.modelOptions,
    h("div", { class: "dialog-actions" }, ed.cancel, ed.save),
  );
  return { form, baseField };
}

/** The chosen provider's models as suggestions, and whether (and which) base URL it needs. */
function syncProvider({ catalog, provider, modelOptions, baseUrl, baseField }) {
  const entry = catalog.find((p) => p.id === provider.value);
  modelOptions.replaceChildren(...((entry && entry.models) || []).map((m) => h("option", { value: m })));
  baseUrl.placeholder = entry && entry.base_url ? entry.base_url : "https://…";
  baseUrl.required = Boolean(entry && entry.requires_base_url);
  baseField.querySelector("label").textContent = baseUrl.required ? "Base URL (required)" : "Base URL (optional)";
  const hint = entry && entry.base_url ? `Leave empty for ${entry.base_url}` : "The address of your deployment's OpenAI-compatible API.";
  let hintNode = baseField.querySelector(".hint");
  if (!hintNode) {
    hintNode = h("p", { class: "hint", id: `${baseUrl.id}-hint` });
    baseField.querySelector(".field-error").before(hintNode);
    baseUrl.setAttribute("aria-describedby", `${baseUrl.id}-error ${hintNode.id}`);
  }
  hintNode.textContent = hint;
}

function toggleReveal({ apiKey, reveal }) {
  const show = apiKey.type === "password";
  apiKey.type = show ? "text" : "password";
  reveal.textContent = show ? "Hide" : "Show";
  reveal.setAttribute("aria-pressed", String(show));
  reveal.setAttribute("aria-label", show ? "Hide API key" : "Show API key");
}

function localProblem({ name, model, apiKey, baseUrl, editing }) {
  if (!name.value.trim()) return { param: "name", message: "Give the configuration a name." };
  if (!model.value.trim()) return { param: "model", message: "Choose or type a model." };
  if (!editing && !apiKey.value) return { param: "api_key", message: "Paste the provider's API key." };
  if (editing && !apiKey.value) return { param: "api_key", message: "Paste a key, or put back the masked one to keep the stored key." };
  if (baseUrl.required && !baseUrl.value.trim()) return { param: "base_url", message: "This provider needs a base URL." };
  return null;
}

/** The create body, or on edit the changes (PATCH). */
function payload(ed) {
  const { current, editing, apiKey, makeDefault, testOnSave } = ed;
  const values = {
    name: ed.name.value.trim(),
    provider: ed.provider.value,
    model: ed.model.value.trim(),
    is_active: ed.active.checked,
    fallback_ids: ed.fallbacks.value(),
  };
  const url = ed.baseUrl.value.trim();
  if (!editing) {
    return { ...values, api_key: apiKey.value, base_url: url || undefined, is_default: makeDefault.checked, test_on_save: testOnSave.checked };
  }
  values.test_on_save = testOnSave.checked;
  // The masked value the API gave us means "keep the stored key": leave the field out.
  if (apiKey.value !== current.api_key) values.api_key = apiKey.value;
  values.base_url = url || null;
  if (makeDefault.checked && !current.is_default) values.is_default = true;
  return values;
}

/** `saved` with its test verdict; a gateway that did not test on save leaves tested_at as it was: test now. */
async function testedAfterSave(saved, current) {
  if (saved.tested_at && saved.tested_at !== current.tested_at) return saved;
  try {
    const result = await configurations.test(saved.id);
    return withResult(saved, result);
  } catch (error) {
    return { ...saved, test_status: "failed", test_message: `could not run: ${error.message}`, test_latency_ms: null };
  }
}

/** The toast after a save: its words and kind. */
function savedNote(saved, { editing, testOnSave }) {
  const words = `${editing ? "Saved" : "Added"} ${saved.name}.`;
  if (!testOnSave.checked) return [words, "success"];
  const verdict = describeResult(saved.test_message, saved.test_latency_ms);
  return [`${words} Test: ${verdict}`, saved.test_status === "success" ? "success" : "error"];
}

async function submit(ed) {
  const { form, generalError, save, editing } = ed;
  clearErrors(form);
  const problem = localProblem(ed);
  if (problem) {
    showError(form, problem, generalError);
    return;
  }
  save.disabled = true;
  save.textContent = "Saving…";
  try {
    const body = payload(ed);
    let saved = editing ? await configurations.update(ed.current.id, body) : await ed.create(body);
    // The key goes no further than the request that carried it.
    ed.apiKey.value = "";
    if (ed.testOnSave.checked) saved = await testedAfterSave(saved, ed.current);
    const [words, kind] = savedNote(saved, ed);
    ed.dialog.close();
    toast(words, kind);
    await ed.onSaved(saved);
  } catch (error) {
    showError(form, error, generalError);
  } finally {
    save.disabled = false;
    save.textContent = editing ? "Save changes" : "Add configuration";
  }
}

function wire(ed) {
  const { dialog } = ed;
  ed.reveal.addEventListener("click", () => toggleReveal(ed));
  ed.provider.addEventListener("change", () => syncProvider(ed));
  ed.cancel.addEventListener("click", () => dialog.close());
  ed.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(ed);
  });
}

/** Open the dialog; `config` null adds a new configuration, inside `team` when given. */
export function openEditor({ config, catalog, others, onSaved, returnFocus, team = null }) {
  const editing = Boolean(config);
  const current = config || { provider: catalog[0]?.id || "openai", is_active: true, fallback_ids: [] };
  const titleId = uniqueId("editor-title");
  const create = team ? (body) => teams.createConfiguration(team.id, body) : configurations.create;
  const ed = { ...editorControls(current, editing, catalog, others), current, editing, catalog, onSaved, team, create };
  Object.assign(ed, editorForm(ed, titleId));
  ed.dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId }, ed.form);
  wire(ed);
  syncProvider(ed);
  showDialog(ed.dialog, { returnFocus, onClose: () => { ed.apiKey.value = ""; } });
  ed.name.focus();
  return ed.dialog;
}
