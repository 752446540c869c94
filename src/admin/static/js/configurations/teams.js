// Teams on the configurations page: which set is shown (all, personal, one team), creating a team, and sharing a
// personal configuration into a team the caller owns. Roles come from GET /api/teams; the API enforces them too.

import { teams } from "../api.js";
import { clearErrors, field, h, showDialog, showError, toast, uniqueId } from "../dom.js";

const ALL = "";
const PERSONAL = "personal";

/** The caller's teams ([] on a gateway without teams) and the one `?team=` names, if any. */
export async function loadTeams(params) {
  const result = await teams.list();
  const items = result ? result.items : [];
  const wanted = params.get("team") || ALL;
  const current = items.find((t) => t.id === wanted) || null;
  const scope = current ? current.id : wanted === PERSONAL ? PERSONAL : ALL;
  return { items, enabled: Boolean(result), scope, current };
}

/** Whether the caller may edit, delete or share into `config`'s set: its own, or a team it owns. */
export function canManage(config, teamList) {
  if (!config.team) return true;
  const team = teamList.find((t) => t.id === config.team.id);
  return Boolean(team && team.role === "owner");
}

export const ownedTeams = (teamList) => teamList.filter((t) => t.role === "owner");

/** "All / Personal / each team" as a select; choosing one reloads the page on ?team=. */
export function scopeSwitcher({ items, scope }, navigate) {
  const select = h("select", { name: "team" },
    h("option", { value: ALL, selected: scope === ALL }, "All configurations"),
    h("option", { value: PERSONAL, selected: scope === PERSONAL }, "Personal"),
    items.map((t) => h("option", { value: t.id, selected: scope === t.id }, `${t.name} (${t.role})`)));
  select.id = uniqueId("team");
  select.addEventListener("change", () => navigate(select.value ? `/ui/?team=${encodeURIComponent(select.value)}` : "/ui/"));
  return select;
}

/** The badge on a team configuration's row. */
export function teamBadge(config) {
  if (!config.team) return null;
  return h("span", { class: "tag tag-team", dataset: { team: config.team.name }, title: `Shared in team ${config.team.name}` },
    config.team.name);
}

/** A small form dialog: `fields` inside, `submitLabel` runs `send()`; API errors land next to the field named. */
function formDialog({ title, fields, submitLabel, send, returnFocus }) {
  const titleId = uniqueId("dialog-title");
  const generalError = h("p", { class: "form-error", role: "alert", hidden: true });
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const save = h("button", { type: "submit", class: "btn btn-primary" }, submitLabel);
  const form = h("form", { novalidate: true }, h("h2", { id: titleId }, title), generalError, fields,
    h("div", { class: "dialog-actions" }, cancel, save));
  const dialog = h("dialog", { class: "dialog dialog-small", "aria-labelledby": titleId }, form);
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    save.disabled = true;
    try {
      await send();
      dialog.close();
    } catch (error) {
      showError(form, error, generalError);
    } finally {
      save.disabled = false;
    }
  });
  showDialog(dialog, { returnFocus });
  return dialog;
}

/** "New team": create it (the caller becomes its owner) and switch to it. */
export function openNewTeam(navigate, button) {
  const name = h("input", { type: "text", name: "name", required: true, maxlength: "100", autocomplete: "off" });
  formDialog({
    title: "New team",
    fields: field("Team name", name, { name: "name", hint: "Members call its configurations as <team>/<name>." }),
    submitLabel: "Create team",
    returnFocus: button,
    send: async () => {
      const team = await teams.create(name.value.trim());
      toast(`Created team ${team.name}. You are its owner.`, "success");
      navigate(`/ui/?team=${encodeURIComponent(team.id)}`);
    },
  });
  name.focus();
}

/** "Share": copy a personal configuration into a team the caller owns; the server re-encrypts the key. */
export function openShare(page, config, button) {
  const choices = ownedTeams(page.teams.items);
  const target = h("select", { name: "team" }, choices.map((t) => h("option", { value: t.id }, t.name)));
  const name = h("input", { type: "text", name: "name", maxlength: "100", autocomplete: "off", placeholder: config.name });
  formDialog({
    title: `Share ${config.name} with a team`,
    fields: [
      field("Team", target, { name: "team", hint: "The team's members can use it; only its owners can change it." }),
      field("Name in the team", name, { name: "name", hint: `Leave empty to keep ${config.name}.` }),
    ],
    submitLabel: "Share",
    returnFocus: button,
    send: async () => {
      const body = { configuration_id: config.id };
      if (name.value.trim()) body.name = name.value.trim();
      const shared = await teams.share(target.value, body);
      const team = choices.find((t) => t.id === target.value);
      toast(`Shared ${config.name} with ${team.name} as ${shared.name}.`, "success");
      await page.refresh();
    },
  });
  target.focus();
}
