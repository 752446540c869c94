// The add / edit dialog. On edit the key field holds the masked key; left as is, the stored key is kept.

import { configurations } from "./api.js";
import { clearErrors, field, h, showError, toast, uniqueId } from "./dom.js";
import { describeResult } from "./status.js";

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

/** Open the dialog; `config` null adds a new configuration. */
export function openEditor({ config, catalog, others, onSaved, returnFocus }) {
  const editing = Boolean(config);
  const current = config || { provider: catalog[0]?.id || "openai", is_active: true, fallback_ids: [] };
  const titleId = uniqueId("editor-title");

  const name = h("input", { type: "text", name: "name", required: true, maxlength: "100", autocomplete: "off", value: current.name || "" });
  const provider = h("select", { name: "provider", required: true }, catalog.map((p) => h("option", { value: p.id, selected: p.id === current.provider }, p.name)));
  const modelsId = uniqueId("models");
  const model = h("input", { type: "text", name: "model", required: true, list: modelsId, autocomplete: "off", value: current.model || "" });
  const modelOptions = h("datalist", { id: modelsId });
  const apiKey = h("input", {
    type: "password", name: "api_key", autocomplete: "off", spellcheck: "false", required: !editing,
    value: editing ? current.api_key || "" : "",
  });
  const reveal = h("button", { type: "button", class: "btn btn-small", "aria-pressed": "false", "aria-label": "Show API key" }, "Show");
  const baseUrl = h("input", { type: "url", name: "base_url", autocomplete: "off", spellcheck: "false", value: current.base_url || "" });
  const active = h("input", { type: "checkbox", name: "is_active", checked: current.is_active !== false });
  const makeDefault = h("input", { type: "checkbox", name: "is_default", checked: Boolean(current.is_default), disabled: Boolean(current.is_default) });
  const testOnSave = h("input", { type: "checkbox", name: "test_on_save", checked: !editing });
  const fallbacks = fallbackPicker(others.filter((c) => c.id !== current.id), current.fallback_ids || []);
  const generalError = h("p", { class: "form-error", role: "alert", hidden: true });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, editing ? "Save changes" : "Add configuration");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");

  const keyField = field("API key", apiKey, {
    name: "api_key",
    wrap: h("div", { class: "input-with-button" }, apiKey, reveal),
    hint: editing ? "Shown masked. Leave it as is to keep the stored key, or paste a new one." : "Stored encrypted; this page never shows it again.",
  });
  const baseField = field("Base URL", baseUrl, { name: "base_url" });
  const fallbackField = field("Fallbacks, in order", fallbacks.control, {
    name: "fallback_ids", hint: "Tried in this order when this configuration fails.", wrap: fallbacks.node,
  });

  const checkbox = (input, label, extra) => {
    input.id = uniqueId("c");
    return h("div", { class: "check", dataset: { field: input.name } },
      input, h("label", { htmlFor: input.id }, label), extra,
      h("p", { class: "field-error", dataset: { errorFor: input.name } }));
  };

  const form = h(
    "form",
    { class: "editor", novalidate: true },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, editing ? `Edit ${current.name}` : "Add a configuration")),
    generalError,
    h("div", { class: "form-grid" },
      field("Name", name, { name: "name", hint: "Clients may send it as the model to pick this configuration." }),
      field("Provider", provider, { name: "provider" }),
      field("Model", model, { name: "model", hint: "Pick one or type any model name." }),
      keyField,
      baseField,
    ),
    fallbackField,
    h("div", { class: "checks" },
      checkbox(active, "Active"),
      checkbox(makeDefault, editing && current.is_default ? "Default (choose another to change)" : "Make this the default"),
      checkbox(testOnSave, "Test on save")),
    modelOptions,
    h("div", { class: "dialog-actions" }, cancel, save),
  );
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId }, form);

  function syncProvider() {
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

  reveal.addEventListener("click", () => {
    const show = apiKey.type === "password";
    apiKey.type = show ? "text" : "password";
    reveal.textContent = show ? "Hide" : "Show";
    reveal.setAttribute("aria-pressed", String(show));
    reveal.setAttribute("aria-label", show ? "Hide API key" : "Show API key");
  });
  provider.addEventListener("change", syncProvider);
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    apiKey.value = "";
    dialog.remove();
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
  });

  function localProblem() {
    if (!name.value.trim()) return { param: "name", message: "Give the configuration a name." };
    if (!model.value.trim()) return { param: "model", message: "Choose or type a model." };
    if (!editing && !apiKey.value) return { param: "api_key", message: "Paste the provider's API key." };
    if (editing && !apiKey.value) return { param: "api_key", message: "Paste a key, or put back the masked one to keep the stored key." };
    if (baseUrl.required && !baseUrl.value.trim()) return { param: "base_url", message: "This provider needs a base URL." };
    return null;
  }

  function body() {
    const values = {
      name: name.value.trim(),
      provider: provider.value,
      model: model.value.trim(),
      is_active: active.checked,
      fallback_ids: fallbacks.value(),
    };
    const url = baseUrl.value.trim();
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

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const problem = localProblem();
    if (problem) {
      showError(form, problem, generalError);
      return;
    }
    save.disabled = true;
    save.textContent = "Saving…";
    try {
      const payload = body();
      let saved = editing ? await configurations.update(current.id, payload) : await configurations.create(payload);
      // The key goes no further than the request that carried it.
      apiKey.value = "";
      let words = `${editing ? "Saved" : "Added"} ${saved.name}.`;
      let kind = "success";
      if (testOnSave.checked) {
        // A gateway that did not test on save leaves tested_at as it was: test now instead.
        if (!saved.tested_at || saved.tested_at === current.tested_at) {
          try {
            const result = await configurations.test(saved.id);
            saved = { ...saved, test_status: result.status, test_message: result.message, test_latency_ms: result.latency_ms };
          } catch (error) {
            saved = { ...saved, test_status: "failed", test_message: `could not run: ${error.message}`, test_latency_ms: null };
          }
        }
        words += ` Test: ${describeResult(saved.test_message, saved.test_latency_ms)}`;
        if (saved.test_status !== "success") kind = "error";
      }
      dialog.close();
      toast(words, kind);
      await onSaved(saved);
    } catch (error) {
      showError(form, error, generalError);
    } finally {
      save.disabled = false;
      save.textContent = editing ? "Save changes" : "Add configuration";
    }
  });

  syncProvider();
  document.body.append(dialog);
  dialog.showModal();
  name.focus();
  return dialog;
}
