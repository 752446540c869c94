// What the configurations page shows for its data: the summary cards, one row per configuration, the pager.

import { fullTime, h, relativeTime } from "../dom.js";
import { statusBadge } from "../status.js";
import { teamBadge } from "./teams.js";

/** The summary cards: total, active and failed tests. */
export function statCards(stats) {
  const byStatus = stats.by_status || {};
  const cards = [
    ["Total", stats.total, "total"],
    ["Active", stats.active, "active"],
    ["Failed tests", byStatus.failed || 0, "failed"],
  ];
  return cards.map(([label, value, key]) =>
    h("div", { class: `stat stat-${key}` }, h("dt", {}, label), h("dd", { dataset: { stat: key } }, String(value ?? 0))),
  );
}

export function emptyRow(filtered, team) {
  const words = filtered ? "No configuration matches this search."
    : team ? `No configurations in ${team.name} yet.` : "No configurations yet. Add one to start.";
  return h("tr", { class: "empty-row" }, h("td", { colspan: "8" }, words));
}

function selectBox(config, checked, onToggle) {
  const check = h("input", { type: "checkbox", checked, "aria-label": `Select ${config.name}` });
  check.addEventListener("change", () => onToggle(config, check.checked));
  return check;
}

function rowButtons(config, running, on, { manage, share }) {
  const testButton = h("button", { type: "button", class: "btn btn-small", disabled: running, "aria-label": `Test ${config.name}` }, "Test");
  const defaultButton = h("button", {
    type: "button", class: "btn btn-small", disabled: config.is_default || !config.is_active,
    "aria-label": `Make ${config.name} the default`,
  }, "Set default");
  testButton.addEventListener("click", () => on.test(config));
  defaultButton.addEventListener("click", () => on.makeDefault(config));
  const buttons = [testButton, defaultButton];
  // A team member's row has no owner's controls: the API would refuse them (403) anyway.
  if (share) {
    const shareButton = h("button", { type: "button", class: "btn btn-small", "aria-label": `Share ${config.name} with a team` }, "Share");
    shareButton.addEventListener("click", () => on.share(config, shareButton));
    buttons.push(shareButton);
  }
  if (manage) {
    const editButton = h("button", { type: "button", class: "btn btn-small", "aria-label": `Edit ${config.name}` }, "Edit");
    const deleteButton = h("button", { type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Delete ${config.name}` }, "Delete");
    editButton.addEventListener("click", () => on.edit(config, editButton));
    deleteButton.addEventListener("click", () => on.remove(config));
    buttons.push(editButton, deleteButton);
  }
  return h("div", { class: "row-actions" }, buttons);
}

/** One configuration's row; `on` holds the handlers of its checkbox and buttons, `view.rights(config)` what the
 * caller may do with it ({manage, share}). Only personal rows can be selected for bulk delete. */
export function configRow(config, { selected, running, providerName, rights }, on) {
  const busy = running.has(config.id);
  const nameCell = h("th", { scope: "row", class: "cell-name", dataset: { label: "Name" } }, h("span", {}, config.name), teamBadge(config));
  if (!config.is_active) nameCell.append(h("span", { class: "tag" }, "Inactive"));
  return h(
    "tr",
    { dataset: { id: config.id, name: config.name, team: config.team ? config.team.name : "" }, class: config.is_active ? "" : "row-inactive" },
    h("td", { class: "col-select" }, config.team ? null : selectBox(config, selected.has(config.id), on.toggle)),
    nameCell,
    h("td", { dataset: { label: "Provider" } }, providerName[config.provider] || config.provider),
    h("td", { class: "cell-model", dataset: { label: "Model" } }, config.model),
    h("td", { class: "cell-status", dataset: { label: "Status" } }, statusBadge(config, { running: busy })),
    h("td", { class: "cell-default", dataset: { label: "Default" } },
      config.is_default ? h("span", { class: "tag tag-default" }, "Default") : h("span", { class: "muted" }, "—")),
    h("td", { dataset: { label: "Last used" } }, h("time", { datetime: config.last_used_at || "", title: fullTime(config.last_used_at) }, relativeTime(config.last_used_at))),
    h("td", { class: "col-actions" }, rowButtons(config, busy, on, rights(config))),
  );
}

/** "1–50 of 120" with Previous and Next, or nothing when one page holds everything; `onStep(±pageSize)`. */
export function pagerNodes({ offset, total }, pageSize, onStep) {
  if (total <= pageSize) return [];
  const last = Math.min(offset + pageSize, total);
  const prev = h("button", { type: "button", class: "btn", disabled: offset === 0 }, "Previous");
  const next = h("button", { type: "button", class: "btn", disabled: last >= total }, "Next");
  prev.addEventListener("click", () => onStep(-pageSize));
  next.addEventListener("click", () => onStep(pageSize));
  return [h("span", { class: "muted" }, `${offset + 1}–${last} of ${total}`), prev, next];
}
