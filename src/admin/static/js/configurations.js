// The configurations page: stats, search and filter, the table, per-row and bulk actions.

import { configurations, providerNames, providers } from "./api.js";
import { clear, clearErrors, h, showError } from "./dom.js";
import { bulkDelete, makeDefault, openWith, remove, runTest, testAll } from "./configurations/actions.js";
import { pageNodes, pageParts } from "./configurations/layout.js";
import { configRow, emptyRow, pagerNodes, statCards } from "./configurations/table.js";

const PAGE_SIZE = 50;

function fail(page, error) {
  page.parts.listError.textContent = error.message;
  page.parts.listError.hidden = false;
}

async function loadStats(page) {
  try {
    const stats = await configurations.stats();
    clear(page.parts.statsBox).append(...statCards(stats));
  } catch (error) {
    fail(page, error);
  }
}

async function load(page) {
  const { state } = page;
  try {
    const result = await configurations.list({
      q: state.q, provider: state.provider, limit: PAGE_SIZE, offset: state.offset,
    });
    state.items = result.items;
    state.total = result.total;
    const visible = new Set(result.items.map((c) => c.id));
    for (const id of state.selected) if (!visible.has(id)) state.selected.delete(id);
    page.parts.listError.hidden = true;
    renderRows(page);
  } catch (error) {
    fail(page, error);
  }
}

function updateSelection({ state, parts }) {
  const count = state.selected.size;
  parts.bulkButton.disabled = count === 0;
  parts.bulkButton.textContent = count ? `Delete selected (${count})` : "Delete selected";
  parts.selectAll.checked = count > 0 && count === state.items.length;
  parts.selectAll.indeterminate = count > 0 && count < state.items.length;
}

function rowHandlers(page) {
  return {
    toggle: (config, checked) => {
      if (checked) page.state.selected.add(config.id);
      else page.state.selected.delete(config.id);
      updateSelection(page);
    },
    test: (config) => runTest(page, config),
    makeDefault: (config) => makeDefault(page, config),
    edit: (config, button) => openWith(page, config, button),
    remove: (config) => remove(page, config),
  };
}

function renderRows(page) {
  const { state, parts } = page;
  clear(parts.body);
  if (!state.items.length) parts.body.append(emptyRow(state.q || state.provider));
  const on = rowHandlers(page);
  const view = { selected: state.selected, running: state.running, providerName: page.providerName };
  for (const config of state.items) parts.body.append(configRow(config, view, on));
  const step = (delta) => {
    state.offset = Math.max(0, state.offset + delta);
    load(page);
  };
  clear(parts.pager).append(...pagerNodes(state, PAGE_SIZE, step));
  updateSelection(page);
}

function wireToolbar(page) {
  const { state, parts } = page;
  const { search, filter, selectAll } = parts;
  const searchNow = () => { state.q = search.value.trim(); state.offset = 0; load(page); };
  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(searchNow, 250);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { clearTimeout(debounce); searchNow(); }
  });
  filter.addEventListener("change", () => { state.provider = filter.value; state.offset = 0; load(page); });
  selectAll.addEventListener("change", () => {
    state.selected = new Set(selectAll.checked ? state.items.map((c) => c.id) : []);
    renderRows(page);
  });
  parts.bulkButton.addEventListener("click", () => bulkDelete(page));
  parts.testAllButton.addEventListener("click", () => testAll(page));
  parts.addButton.addEventListener("click", () => openWith(page, null, parts.addButton));
}

// The catalog can take seconds on a cold gateway: the table does not wait for it.
function loadProviders(page) {
  providers().then((catalog) => {
    page.providerName = providerNames(catalog);
    page.parts.filter.append(...catalog.map((p) => h("option", { value: p.id }, p.name)));
    if (page.isCurrent()) renderRows(page);
  }).catch((error) => fail(page, new Error(`Could not load the provider list: ${error.message}`)));
}

/** ?add=1 opens the editor empty, ?edit=<id> on that configuration (the migration banner links here). */
async function openFromParams(main, page, params) {
  if (params.get("add") && page.isCurrent()) await openWith(page, null, page.parts.addButton);
  const editId = params.get("edit");
  if (editId && page.isCurrent()) {
    try {
      const config = await configurations.get(editId);
      await openWith(page, config);
    } catch (error) {
      showError(main, error, page.parts.listError);
    }
  }
}

export async function renderConfigurations(main, { params, isCurrent }) {
  const parts = pageParts();
  main.append(...pageNodes(parts));
  const page = {
    parts,
    isCurrent,
    state: { q: "", provider: "", offset: 0, items: [], total: 0, selected: new Set(), running: new Set() },
    providerName: {},
  };
  page.renderRows = () => renderRows(page);
  page.refresh = () => Promise.all([load(page), loadStats(page)]);
  wireToolbar(page);
  clearErrors(main);
  loadProviders(page);
  await page.refresh();
  await openFromParams(main, page, params);
}
