// Small DOM helpers. Text always goes in through textContent: nothing from the API is ever parsed as HTML.

const BOOLEAN_PROPS = new Set(["hidden", "disabled", "checked", "required", "selected", "multiple", "open", "readOnly"]);
const VALUE_PROPS = new Set(["value", "type", "name", "id", "htmlFor", "placeholder", "tabIndex"]);

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (BOOLEAN_PROPS.has(key)) node[key] = Boolean(value);
    else if (VALUE_PROPS.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("button", {class: "btn", onclick}, "Save") */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = value;
    else if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

let uid = 0;
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled field: label, control (inside `wrap` when given), hint and an error slot wired with aria-describedby. */
export function field(label, control, { hint, name, wrap } = {}) {
  const id = control.id || uniqueId("f");
  control.id = id;
  const errorId = `${id}-error`;
  const described = [errorId];
  const hintNode = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintNode) described.push(hintNode.id);
  control.setAttribute("aria-describedby", described.join(" "));
  return h(
    "div",
    { class: "field", dataset: { field: name || control.name || "" } },
    h("label", { htmlFor: id }, label),
    wrap || control,
    hintNode,
    h("p", { class: "field-error", id: errorId, dataset: { errorFor: name || control.name || "" } }),
  );
}

/** Show an API error next to the field it names (param), or in the form's general error slot. */
export function showError(container, error, generalSlot) {
  clearErrors(container);
  const param = error && error.param ? String(error.param) : "";
  const root = param.replace(/^body\./, "").split(/[.[]/)[0];
  const slot = root ? container.querySelector(`[data-error-for="${CSS.escape(root)}"]`) : null;
  if (slot) {
    slot.textContent = error.message;
    const control = slot.closest(".field")?.querySelector("input, select, textarea");
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    }
    return;
  }
  const target = generalSlot || container.querySelector(".form-error");
  if (target) {
    target.textContent = error.message || String(error);
    target.hidden = false;
  } else {
    toast(error.message || String(error), "error");
  }
}

export function clearErrors(container) {
  for (const slot of container.querySelectorAll(".field-error")) slot.textContent = "";
  for (const control of container.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const slot of container.querySelectorAll(".form-error")) {
    slot.textContent = "";
    slot.hidden = true;
  }
}

/** A short message in the live region; errors stay until dismissed. */
export function toast(message, kind = "info") {
  const area = document.getElementById("toasts");
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const node = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, h("span", {}, message), close);
  close.addEventListener("click", () => node.remove());
  area.append(node);
  // Keep the newest few: a long session should not bury the page under old notes.
  while (area.children.length > 4) area.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => node.remove(), 5000);
  return node;
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
const STEPS = [
  ["year", 31536000],
  ["month", 2592000],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

export function relativeTime(iso) {
  if (!iso) return "Never";
  const then = new Date(iso);
  const seconds = Math.round((then.getTime() - Date.now()) / 1000);
  for (const [unit, size] of STEPS) {
    if (Math.abs(seconds) >= size) return RELATIVE.format(Math.round(seconds / size), unit);
  }
  return "Just now";
}

export function fullTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

const NUMBER = new Intl.NumberFormat("en");
export const formatNumber = (value) => NUMBER.format(Number(value) || 0);
export function formatCost(value) {
  const amount = Number(value) || 0;
  return `$${amount.toFixed(amount > 0 && amount < 0.01 ? 4 : 2)}`;
}

/** Show a modal <dialog>; on close it runs `onClose`, leaves the page and gives focus back to `returnFocus`. */
export function showDialog(dialog, { onClose, returnFocus } = {}) {
  dialog.addEventListener("close", () => {
    if (onClose) onClose();
    dialog.remove();
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** A modal confirmation built on <dialog>; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = "Delete", danger = true }) {
  return new Promise((resolve) => {
    const titleId = uniqueId("confirm-title");
    const cancel = h("button", { type: "button", class: "btn", value: "cancel" }, "Cancel");
    const ok = h("button", { type: "button", class: danger ? "btn btn-danger" : "btn btn-primary" }, confirmLabel);
    const dialog = h(
      "dialog",
      { class: "dialog dialog-small", "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("p", {}, message),
      h("div", { class: "dialog-actions" }, cancel, ok),
    );
    let answer = false;
    cancel.addEventListener("click", () => dialog.close());
    ok.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    showDialog(dialog, { onClose: () => resolve(answer) });
    cancel.focus();
  });
}

export function spinner(label = "Working") {
  return h("span", { class: "spinner", role: "progressbar", "aria-label": label });
}
