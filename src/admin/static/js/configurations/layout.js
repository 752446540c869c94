// The configurations page's fixed parts: heading and actions, summary, search toolbar, the table and its pager.

import { h, uniqueId } from "../dom.js";

const COLUMNS = ["Name", "Provider", "Model", "Status", "Default", "Last used"];

/** The controls and slots the page fills and listens to. */
export function pageParts() {
  const parts = {
    statsBox: h("dl", { class: "stats", "aria-label": "Summary" }),
    listError: h("p", { class: "form-error", role: "alert", hidden: true }),
    search: h("input", { type: "search", name: "q", placeholder: "Name or model", autocomplete: "off" }),
    filter: h("select", { name: "provider" }, h("option", { value: "" }, "All providers")),
    bulkButton: h("button", { type: "button", class: "btn btn-danger-quiet", disabled: true }, "Delete selected"),
    testAllButton: h("button", { type: "button", class: "btn" }, "Test all"),
    addButton: h("button", { type: "button", class: "btn btn-primary" }, "Add configuration"),
    newTeamButton: h("button", { type: "button", class: "btn" }, "New team"),
    teamSlot: h("div", { class: "team-slot" }),
    switcher: null,
    selectAll: h("input", { type: "checkbox", "aria-label": "Select all configurations on this page" }),
    body: h("tbody"),
    pager: h("div", { class: "pager" }),
  };
  parts.search.id = uniqueId("search");
  parts.filter.id = uniqueId("filter");
  return parts;
}

function table(parts) {
  return h(
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
          h("th", { scope: "col", class: "col-select" }, parts.selectAll),
          COLUMNS.map((t) => h("th", { scope: "col" }, t)),
          h("th", { scope: "col", class: "col-actions" }, "Actions"),
        ),
      ),
      parts.body,
    ),
  );
}

/** The page's top-level nodes, in order, around `parts`. */
export function pageNodes(parts) {
  return [
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Configurations"), h("p", { class: "muted" }, "Each one is a provider, a model and an encrypted API key. Requests use the default unless they name another.")),
      h("div", { class: "page-actions" }, parts.switcher ? parts.newTeamButton : null, parts.testAllButton, parts.addButton),
    ),
    parts.statsBox,
    parts.teamSlot,
    h(
      "div",
      { class: "toolbar", role: "search" },
      parts.switcher ? h("div", { class: "toolbar-field" }, h("label", { htmlFor: parts.switcher.id }, "Show"), parts.switcher) : null,
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: parts.search.id }, "Search"), parts.search),
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: parts.filter.id }, "Provider"), parts.filter),
      h("div", { class: "toolbar-spacer" }),
      parts.bulkButton,
    ),
    parts.listError,
    table(parts),
    parts.pager,
  ];
}
