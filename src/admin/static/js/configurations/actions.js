// What the configurations page's buttons do. Each takes the page (its state, parts, renderRows and refresh).

import { allConfigurations, configurations, providers } from "../api.js";
import { confirmDialog, toast } from "../dom.js";
import { openEditor } from "../editor.js";
import { describeResult } from "../status.js";

const plural = (count) => (count === 1 ? "" : "s");

export async function runTest(page, config) {
  page.state.running.add(config.id);
  page.renderRows();
  try {
    const result = await configurations.test(config.id);
    const words = describeResult(result.message, result.latency_ms);
    toast(`${config.name}: ${words}`, result.success ? "success" : "error");
  } catch (error) {
    toast(`Could not test ${config.name}: ${error.message}`, "error");
  } finally {
    page.state.running.delete(config.id);
  }
  await page.refresh();
}

export async function makeDefault(page, config) {
  try {
    await configurations.setDefault(config.id);
    toast(`${config.name} is now the default.`, "success");
  } catch (error) {
    toast(`Could not make ${config.name} the default: ${error.message}`, "error");
  }
  await page.refresh();
}

export async function remove(page, config) {
  const ok = await confirmDialog({
    title: `Delete ${config.name}?`,
    message: "Its encrypted API key is deleted with it and cannot be recovered.",
  });
  if (!ok) return;
  try {
    await configurations.remove(config.id);
    page.state.selected.delete(config.id);
    toast(`Deleted ${config.name}.`, "success");
  } catch (error) {
    toast(`Could not delete ${config.name}: ${error.message}`, "error");
  }
  await page.refresh();
}

export async function bulkDelete(page) {
  const { state } = page;
  const ids = [...state.selected];
  const names = state.items.filter((c) => state.selected.has(c.id)).map((c) => c.name);
  const ok = await confirmDialog({
    title: `Delete ${ids.length} configuration${plural(ids.length)}?`,
    message: `${names.join(", ")}. Their encrypted API keys are deleted with them and cannot be recovered.`,
    confirmLabel: `Delete ${ids.length}`,
  });
  if (!ok) return;
  try {
    const result = await configurations.bulkDelete(ids);
    const deleted = result && Array.isArray(result.deleted) ? result.deleted.length : ids.length;
    state.selected.clear();
    toast(`Deleted ${deleted} configuration${plural(deleted)}.`, "success");
  } catch (error) {
    toast(`Could not delete the selection: ${error.message}`, "error");
  }
  await page.refresh();
}

export async function testAll(page) {
  const { state, parts } = page;
  parts.testAllButton.disabled = true;
  for (const config of state.items) if (config.is_active) state.running.add(config.id);
  page.renderRows();
  try {
    const outcome = await configurations.testAll();
    const results = (outcome && outcome.results) || [];
    const passed = results.filter((r) => r.success).length;
    toast(`Tested ${results.length}: ${passed} working, ${results.length - passed} not.`, passed === results.length ? "success" : "error");
  } catch (error) {
    toast(`Could not test all: ${error.message}`, "error");
  } finally {
    state.running.clear();
    parts.testAllButton.disabled = false;
  }
  await page.refresh();
}

/** Open the editor on `config` (null adds one); `button`, when given, is busy meanwhile and gets focus back. */
export async function openWith(page, config, button) {
  const label = button ? button.textContent : "";
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    if (button === page.parts.addButton) button.textContent = "Loading…";
  }
  try {
    // A team configuration falls back only within its team; a personal one to any configuration the caller uses.
    const team = config ? config.team : page.teams.current;
    const [catalog, others] = await Promise.all([providers(), allConfigurations(team ? { team: team.id } : {})]);
    openEditor({ config, catalog, others, onSaved: page.refresh, returnFocus: button, team: config ? null : team });
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
