// One team's panel above its configurations: its members, and for owners inviting users by name (they join
// when they accept), changing roles, removing members and deleting the team. Refusals (the last owner) are the
// API's own words.

import { teams } from "../api.js";
import { clear, clearErrors, confirmDialog, field, h, showError, toast, uniqueId } from "../dom.js";

const ROLES = ["member", "owner"];

function roleSelect(team, member, redraw) {
  const select = h("select", { name: "role", "aria-label": `Role of ${member.name}` },
    ROLES.map((r) => h("option", { value: r, selected: r === member.role }, r)));
  select.addEventListener("change", async () => {
    select.disabled = true;
    try {
      await teams.setRole(team.id, member.user_id, select.value);
      toast(`${member.name} is now ${select.value === "owner" ? "an owner" : "a member"} of ${team.name}.`, "success");
    } catch (error) {
      toast(`Could not change ${member.name}'s role: ${error.message}`, "error");
    }
    await redraw();
  });
  return select;
}

function removeButton(team, member, redraw) {
  const button = h("button", { type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Remove ${member.name}` }, "Remove");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog({
      title: `Remove ${member.name} from ${team.name}?`,
      message: "They stop being able to use the team's configurations at once.",
      confirmLabel: "Remove",
    });
    if (!ok) return;
    try {
      await teams.removeMember(team.id, member.user_id);
      toast(`Removed ${member.name} from ${team.name}.`, "success");
    } catch (error) {
      toast(`Could not remove ${member.name}: ${error.message}`, "error");
    }
    await redraw();
  });
  return button;
}

// A role change or a removal may be the caller's own: the whole page is drawn again from the API, roles included.
function memberRow(team, member, owner, redraw) {
  return h("tr", { dataset: { member: member.name } },
    h("th", { scope: "row", class: "cell-name" }, member.name),
    h("td", { class: "cell-role", dataset: { label: "Role" } }, owner ? roleSelect(team, member, redraw) : member.role),
    owner ? h("td", { class: "col-actions" }, removeButton(team, member, redraw)) : null);
}

function addMemberForm(team, reload) {
  const user = h("input", { type: "text", name: "user", required: true, autocomplete: "off", spellcheck: "false" });
  const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const generalError = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "member-form", novalidate: true, "aria-label": "Invite a member" },
    field("User name", user, { name: "user" }), field("Role", role, { name: "role" }),
    h("button", { type: "submit", class: "btn btn-primary" }, "Invite"), generalError);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (!user.value.trim()) {
      showError(form, { param: "user", message: "Type the user's name." }, generalError);
      return;
    }
    try {
      await teams.addMember(team.id, user.value.trim(), role.value);
      // The API answers alike whether or not the user exists: so does the page.
      toast(`Invited ${user.value.trim()} to ${team.name}: they join when they accept.`, "success");
      user.value = "";
      await reload();
    } catch (error) {
      showError(form, error, generalError);
    }
  });
  return form;
}

function deleteTeamButton(team, navigate) {
  const button = h("button", { type: "button", class: "btn btn-danger-quiet" }, "Delete team");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog({
      title: `Delete team ${team.name}?`,
      message: "Its configurations and their keys are destroyed for every member and cannot be recovered.",
      confirmLabel: "Delete team",
    });
    if (!ok) return;
    try {
      await teams.remove(team.id);
      toast(`Deleted team ${team.name}.`, "success");
      navigate("/ui/", { replace: true });
    } catch (error) {
      toast(`Could not delete ${team.name}: ${error.message}`, "error");
    }
  });
  return button;
}

/** The members table of `team`, loaded into `body`; returns a function that reloads it. */
function membersTable(team, owner, slot, redraw) {
  const body = h("tbody");
  const reload = async () => {
    try {
      const { items } = await teams.members(team.id);
      clear(body).append(...items.map((m) => memberRow(team, m, owner, redraw)));
      slot.hidden = true;
    } catch (error) {
      slot.textContent = error.message;
      slot.hidden = false;
    }
  };
  const head = h("tr", {}, h("th", { scope: "col" }, "Member"), h("th", { scope: "col" }, "Role"),
    owner ? h("th", { scope: "col", class: "col-actions" }, "Actions") : null);
  const table = h("div", { class: "table-wrap" },
    h("table", { class: "table members" }, h("caption", { class: "sr-only" }, `Members of ${team.name}`), h("thead", {}, head), body));
  return { table, reload };
}

/** The team's card: who is in it and, for owners, the controls to change that. */
export async function teamPanel(team, navigate) {
  const owner = team.role === "owner";
  const headingId = uniqueId("team-title");
  const slot = h("p", { class: "form-error", role: "alert", hidden: true });
  const redraw = async () => navigate(window.location.pathname + window.location.search, { replace: true });
  const { table, reload } = membersTable(team, owner, slot, redraw);
  const words = owner
    ? "You own this team: invite members by user name, change roles, and manage its configurations."
    : "You are a member: use the team's configurations (keys stay hidden), test them, or make one your default.";
  const panel = h("section", { class: "card team-panel", "aria-labelledby": headingId, dataset: { team: team.name } },
    h("div", { class: "team-head" },
      h("div", {}, h("h2", { id: headingId }, `Team ${team.name}`), h("p", { class: "muted" }, words)),
      owner ? deleteTeamButton(team, navigate) : null),
    slot, table, owner ? addMemberForm(team, reload) : null);
  await reload();
  return panel;
}
