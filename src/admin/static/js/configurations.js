// The configurations page: stats, search and filter, the table, per-row and bulk actions.

import { allConfigurations, configurations, providers } from "./api.js";
import { clear, clearErrors, confirmDialog, fullTime, h, relativeTime, showError, toast, uniqueId } from "./dom.js";
import { openEditor } from "./editor.js";
import { describeResult, statusBadge } from "./status.js";

const PAGE_SIZE = 50;

export async function renderConfigurations(main, { params, isCurrent }) {
  const state = { q: "", provider: "", offset: 0, items: [], total: 0, selected: new Set(), running: new Set() };
  // The catalog can take seconds on a cold gateway: the table does not wait for it.
  let providerName = {};

  const statsBox = h("dl", { class: "stats", "aria-label": "Summary" });
  const listError = h("p", { class: "form-error", role: "alert", hidden: true });
  const search = h("input", { type: "search", name: "q", placeholder: "Name or model", autocomplete: "off" });
  const filter = h(
    "select",
    { name: "provider" },
    h("option", { value: "" }, "All providers"),
  );
  const bulkButton = h("button", { type: "button", class: "btn btn-danger-quiet", disabled: true }, "Delete selected");
  const testAllButton = h("button", { type: "button", class: "btn" }, "Test all");
  const addButton = h("button", { type: "button", class: "btn btn-primary" }, "Add configuration");
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select all configurations on this page" });
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const searchId = uniqueId("search");
  const filterId = uniqueId("filter");
  search.id = searchId;
  filter.id = filterId;

  main.append(
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Configurations"), h("p", { class: "muted" }, "Each one is a provider, a model and an encrypted API key. Requests use the default unless they name another.")),
      h("div", { class: "page-actions" }, testAllButton, addButton),
    ),
    statsBox,
    h(
      "div",
      { class: "toolbar", role: "search" },
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: searchId }, "Search"), search),
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: filterId }, "Provider"), filter),
      h("div", { class: "toolbar-spacer" }),
      bulkButton,
    ),
    listError,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "table" },
        h("caption", { class: "sr-only" }, "Your configurations"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col", class: "col-select" }, selectAll),
            ["Name", "Provider", "Model", "Status", "Default", "Last used"].map((t) => h("th", { scope: "col" }, t)),
            h("th", { scope: "col", class: "col-actions" }, "Actions"),
          ),
        ),
        body,
      ),
    ),
    pager,
  );

  function fail(error) {
    listError.textContent = error.message;
    listError.hidden = false;
  }

  async function loadStats() {
    try {
      const stats = await configurations.stats();
      const byStatus = stats.by_status || {};
      const cards = [
        ["Total", stats.total, "total"],
        ["Active", stats.active, "active"],
        ["Failed tests", byStatus.failed || 0, "failed"],
      ];
      clear(statsBox).append(
        ...cards.map(([label, value, key]) =>
          h("div", { class: `stat stat-${key}` }, h("dt", {}, label), h("dd", { dataset: { stat: key } }, String(value ?? 0))),
        ),
      );
    } catch (error) {
      fail(error);
    }
  }

  async function load() {
    try {
      const page = await configurations.list({
        q: state.q, provider: state.provider, limit: PAGE_SIZE, offset: state.offset,
      });
      state.items = page.items;
      state.total = page.total;
      const visible = new Set(page.items.map((c) => c.id));
      for (const id of state.selected) if (!visible.has(id)) state.selected.delete(id);
      listError.hidden = true;
      renderRows();
    } catch (error) {
      fail(error);
    }
  }

  const refresh = () => Promise.all([load(), loadStats()]);

  function updateSelection() {
    const count = state.selected.size;
    bulkButton.disabled = count === 0;
    bulkButton.textContent = count ? `Delete selected (${count})` : "Delete selected";
    selectAll.checked = count > 0 && count === state.items.length;
    selectAll.indeterminate = count > 0 && count < state.items.length;
  }

  function renderRows() {
    clear(body);
    if (!state.items.length) {
      const filtered = state.q || state.provider;
      body.append(
        h("tr", { class: "empty-row" }, h("td", { colspan: "8" }, filtered ? "No configuration matches this search." : "No configurations yet. Add one to start.")),
      );
    }
    for (const config of state.items) body.append(row(config));
    clear(pager);
    if (state.total > PAGE_SIZE) {
      const last = Math.min(state.offset + PAGE_SIZE, state.total);
      const prev = h("button", { type: "button", class: "btn", disabled: state.offset === 0 }, "Previous");
      const next = h("button", { type: "button", class: "btn", disabled: last >= state.total }, "Next");
      prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); load(); });
      next.addEventListener("click", () => { state.offset += PAGE_SIZE; load(); });
      pager.append(h("span", { class: "muted" }, `${state.offset + 1}–${last} of ${state.total}`), prev, next);
    }
    updateSelection();
  }

  function row(config) {
    const check = h("input", {
      type: "checkbox", checked: state.selected.has(config.id), "aria-label": `Select ${config.name}`,
    });
    check.addEventListener("change", () => {
      if (check.checked) state.selected.add(config.id);
      else state.selected.delete(config.id);
      updateSelection();
    });
    const running = state.running.has(config.id);
    const testButton = h("button", { type: "button", class: "btn btn-small", disabled: running, "aria-label": `Test ${config.name}` }, "Test");
    const defaultButton = h("button", {
      type: "button", class: "btn btn-small", disabled: config.is_default || !config.is_active,
      "aria-label": `Make ${config.name} the default`,
    }, "Set default");
    const editButton = h("button", { type: "button", class: "btn btn-small", "aria-label": `Edit ${config.name}` }, "Edit");
    const deleteButton = h("button", { type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Delete ${config.name}` }, "Delete");
    testButton.addEventListener("click", () => runTest(config));
    defaultButton.addEventListener("click", () => makeDefault(config));
    editButton.addEventListener("click", () => edit(config, editButton));
    deleteButton.addEventListener("click", () => remove(config));
    const nameCell = h("th", { scope: "row", class: "cell-name", dataset: { label: "Name" } }, h("span", {}, config.name));
    if (!config.is_active) nameCell.append(h("span", { class: "tag" }, "Inactive"));
    return h(
      "tr",
      { dataset: { id: config.id, name: config.name }, class: config.is_active ? "" : "row-inactive" },
      h("td", { class: "col-select" }, check),
      nameCell,
      h("td", { dataset: { label: "Provider" } }, providerName[config.provider] || config.provider),
      h("td", { class: "cell-model", dataset: { label: "Model" } }, config.model),
      h("td", { class: "cell-status", dataset: { label: "Status" } }, statusBadge(config, { running })),
      h("td", { class: "cell-default", dataset: { label: "Default" } },
        config.is_default ? h("span", { class: "tag tag-default" }, "Default") : h("span", { class: "muted" }, "—")),
      h("td", { dataset: { label: "Last used" } }, h("time", { datetime: config.last_used_at || "", title: fullTime(config.last_used_at) }, relativeTime(config.last_used_at))),
      h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, testButton, defaultButton, editButton, deleteButton)),
    );
  }

  async function runTest(config) {
    state.running.add(config.id);
    renderRows();
    try {
      const result = await configurations.test(config.id);
      const words = describeResult(result.message, result.latency_ms);
      toast(`${config.name}: ${words}`, result.success ? "success" : "error");
    } catch (error) {
      toast(`Could not test ${config.name}: ${error.message}`, "error");
    } finally {
      state.running.delete(config.id);
    }
    await refresh();
  }

  async function makeDefault(config) {
    try {
      await configurations.setDefault(config.id);
      toast(`${config.name} is now the default.`, "success");
    } catch (error) {
      toast(`Could not make ${config.name} the default: ${error.message}`, "error");
    }
    await refresh();
  }

  async function remove(config) {
    const ok = await confirmDialog({
      title: `Delete ${config.name}?`,
      message: "Its encrypted API key is deleted with it and cannot be recovered.",
    });
    if (!ok) return;
    try {
      await configurations.remove(config.id);
      state.selected.delete(config.id);
      toast(`Deleted ${config.name}.`, "success");
    } catch (error) {
      toast(`Could not delete ${config.name}: ${error.message}`, "error");
    }
    await refresh();
  }

  async function bulkDelete() {
    const ids = [...state.selected];
    const names = state.items.filter((c) => state.selected.has(c.id)).map((c) => c.name);
    const ok = await confirmDialog({
      title: `Delete ${ids.length} configuration${ids.length === 1 ? "" : "s"}?`,
      message: `${names.join(", ")}. Their encrypted API keys are deleted with them and cannot be recovered.`,
      confirmLabel: `Delete ${ids.length}`,
    });
    if (!ok) return;
    try {
      const result = await configurations.bulkDelete(ids);
      const deleted = result && Array.isArray(result.deleted) ? result.deleted.length : ids.length;
      state.selected.clear();
      toast(`Deleted ${deleted} configuration${deleted === 1 ? "" : "s"}.`, "success");
    } catch (error) {
      toast(`Could not delete the selection: ${error.message}`, "error");
    }
    await refresh();
  }

  async function testAll() {
    testAllButton.disabled = true;
    for (const config of state.items) if (config.is_active) state.running.add(config.id);
    renderRows();
    try {
      const outcome = await configurations.testAll();
      const results = (outcome && outcome.results) || [];
      const passed = results.filter((r) => r.success).length;
      toast(`Tested ${results.length}: ${passed} working, ${results.length - passed} not.`, passed === results.length ? "success" : "error");
    } catch (error) {
      toast(`Could not test all: ${error.message}`, "error");
    } finally {
      state.running.clear();
      testAllButton.disabled = false;
    }
    await refresh();
  }

  async function openWith(config, button) {
    const label = button ? button.textContent : "";
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      if (button === addButton) button.textContent = "Loading…";
    }
    try {
      const [catalog, others] = await Promise.all([providers(), allConfigurations()]);
      openEditor({ config, catalog, others, onSaved: refresh, returnFocus: button });
    } catch (error) {
      toast(`Could not open the editor: ${error.message}`, "error");
    } finally {
      if (button) {
        button.disabled = false;
        button.removeAttribute("aria-busy");
        button.textContent = label;
      }
    }
  }
  const edit = (config, button) => openWith(config, button);
  const add = () => openWith(null, addButton);

  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.q = search.value.trim(); state.offset = 0; load(); }, 250);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { clearTimeout(debounce); state.q = search.value.trim(); state.offset = 0; load(); }
  });
  filter.addEventListener("change", () => { state.provider = filter.value; state.offset = 0; load(); });
  selectAll.addEventListener("change", () => {
    state.selected = new Set(selectAll.checked ? state.items.map((c) => c.id) : []);
    renderRows();
  });
  bulkButton.addEventListener("click", bulkDelete);
  testAllButton.addEventListener("click", testAll);
  addButton.addEventListener("click", add);
  clearErrors(main);

  providers().then((catalog) => {
    providerName = Object.fromEntries(catalog.map((p) => [p.id, p.name]));
    filter.append(...catalog.map((p) => h("option", { value: p.id }, p.name)));
    if (isCurrent()) renderRows();
  }).catch((error) => fail(new Error(`Could not load the provider list: ${error.message}`)));
  await refresh();
  if (params.get("add") && isCurrent()) await add();
  const editId = params.get("edit");
  if (editId && isCurrent()) {
    try {
      const config = await configurations.get(editId);
      await edit(config);
    } catch (error) {
      showError(main, error, listError);
    }
  }
}
