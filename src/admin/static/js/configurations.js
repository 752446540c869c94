// The configurations page: stats, search and filter, the table, per-row and bulk actions.

import { configurations, providerNames, providers } from "./api.js";
import { clear, clearErrors, h, showError } from "./dom.js";
import { bulkDelete, makeDefault, openWith, remove, runTest, testAll } from "./configurations/actions.js";
import { pageNodes, pageParts } from "./configurations/layout.js";
import { invitationsPanel } from "./configurations/invitations.js";
import { teamPanel } from "./configurations/members.js";
import { configRow, emptyRow, pagerNodes, statCards } from "./configurations/table.js";
import { canManage, loadTeams, openNewTeam, openShare, ownedTeams, scopeSwitcher } from "./configurations/teams.js";

const PAGE_SIZE = 50;

function fail(page, error) {
  page.parts.listError.textContent = error.message;
  page.parts.listError.hidden = false;
}

async function loadStats(page) {
  if (page.teams.current) return;
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
      q: state.q, provider: state.provider, limit: PAGE_SIZE, offset: state.offset, team: page.teams.scope || undefined,
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

// Bulk delete is for the caller's own configurations: team rows have no checkbox.
const selectable = (items) => items.filter((c) => !c.team);

function updateSelection({ state, parts }) {
  const count = state.selected.size;
  const rows = selectable(state.items).length;
  parts.bulkButton.disabled = count === 0;
  parts.bulkButton.textContent = count ? `Delete selected (${count})` : "Delete selected";
  parts.selectAll.checked = count > 0 && count === rows;
  parts.selectAll.indeterminate = count > 0 && count < rows;
  parts.selectAll.disabled = rows === 0;
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
    share: (config, button) => openShare(page, config, button),
  };
}

function renderRows(page) {
  const { state, parts } = page;
  clear(parts.body);
  if (!state.items.length) parts.body.append(emptyRow(state.q || state.provider, page.teams.current));
  const on = rowHandlers(page);
  const owned = ownedTeams(page.teams.items).length > 0;
  const rights = (config) => ({ manage: canManage(config, page.teams.items), share: owned && !config.team });
  const view = { selected: state.selected, running: state.running, providerName: page.providerName, rights };
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
    state.selected = new Set(selectAll.checked ? selectable(state.items).map((c) => c.id) : []);
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

/** What the chosen set allows: a team's view has its panel, and only its owners add to it. */
async function showScope(page, navigate) {
  const { parts, teams } = page;
  parts.newTeamButton.addEventListener("click", () => openNewTeam(navigate, parts.newTeamButton));
  if (teams.enabled) {
    const invited = await invitationsPanel(navigate);
    if (invited && page.isCurrent()) parts.teamSlot.append(invited);
  }
  const team = teams.current;
  if (!team) return;
  // A team's rows are deleted one by one by its owners: no personal summary, "Test all" or bulk delete here.
  for (const part of [parts.statsBox, parts.testAllButton, parts.bulkButton, parts.selectAll]) part.hidden = true;
  parts.addButton.hidden = team.role !== "owner";
  parts.addButton.textContent = "Add team configuration";
  const panel = await teamPanel(team, navigate);
  if (page.isCurrent()) parts.teamSlot.append(panel);
}

export async function renderConfigurations(main, { params, isCurrent, navigate }) {
  const teams = await loadTeams(params);
  if (!isCurrent()) return;
  const parts = pageParts();
  if (teams.enabled) parts.switcher = scopeSwitcher(teams, navigate);
  main.append(...pageNodes(parts));
  const page = {
    parts,
    isCurrent,
    teams,
    state: { q: "", provider: "", offset: 0, items: [], total: 0, selected: new Set(), running: new Set() },
    providerName: {},
  };
  page.renderRows = () => renderRows(page);
  page.refresh = () => Promise.all([load(page), loadStats(page)]);
  wireToolbar(page);
  clearErrors(main);
  loadProviders(page);
  await Promise.all([showScope(page, navigate), page.refresh()]);
  await openFromParams(main, page, params);
}
