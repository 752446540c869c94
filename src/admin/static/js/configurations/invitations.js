// The caller's pending team invitations above its configurations: accept (join the team and switch to it) or
// decline. Membership is the invitee's choice; the API refuses anyone else's answer.

import { invitations } from "../api.js";
import { h, toast, uniqueId } from "../dom.js";

function answerButton(label, invitation, answer, done) {
  const team = invitation.team.name;
  const button = h("button", { type: "button", class: label === "Accept" ? "btn btn-small btn-primary" : "btn btn-small",
    "aria-label": `${label} the invitation to ${team}` }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await answer(invitation.id);
      await done(invitation);
    } catch (error) {
      toast(`Could not ${label.toLowerCase()} the invitation to ${team}: ${error.message}`, "error");
      button.disabled = false;
    }
  });
  return button;
}

function invitationRow(invitation, navigate) {
  const team = invitation.team.name;
  const joined = async () => {
    toast(`You joined ${team} as ${invitation.role}.`, "success");
    navigate(`/ui/?team=${encodeURIComponent(invitation.team.id)}`);
  };
  const declined = async () => {
    toast(`Declined the invitation to ${team}.`, "success");
    navigate(window.location.pathname + window.location.search, { replace: true });
  };
  return h("li", { class: "invitation", dataset: { team } },
    h("span", {}, `${invitation.invited_by} invites you to team `, h("strong", {}, team), ` as ${invitation.role}.`),
    h("span", { class: "invitation-actions" },
      answerButton("Accept", invitation, invitations.accept, joined),
      answerButton("Decline", invitation, invitations.decline, declined)));
}

/** The pending invitations as a card, or null when there are none (or the gateway has no teams). */
export async function invitationsPanel(navigate) {
  const result = await invitations.list();
  if (!result || !result.items.length) return null;
  const headingId = uniqueId("invitations-title");
  return h("section", { class: "card invitations", "aria-labelledby": headingId },
    h("h2", { id: headingId }, "Team invitations"),
    h("ul", { class: "invitation-list" }, result.items.map((i) => invitationRow(i, navigate))));
}
