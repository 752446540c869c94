// How a configuration's test result looks: an icon with words, and a tooltip with the message and latency.

import { h, spinner } from "./dom.js";

const LOOKS = {
  success: { icon: "✓", label: "Working", kind: "ok" },
  failed: { icon: "✗", label: "Failed", kind: "bad" },
  rate_limited: { icon: "!", label: "Rate limited", kind: "warn" },
  timeout: { icon: "✗", label: "Timed out", kind: "bad" },
  unreachable: { icon: "✗", label: "Unreachable", kind: "bad" },
  untested: { icon: "–", label: "Not tested", kind: "none" },
};

/** The words of a test result: "Invalid API key - please check your key (120 ms)". */
export function describeResult(message, latency) {
  const parts = [];
  if (message) parts.push(message);
  const ms = latency === null || latency === undefined ? null : `${Math.round(latency)} ms`;
  if (ms && !(message || "").includes(ms)) parts.push(`(${ms})`);
  return parts.join(" ");
}

/** `config` with a test result's verdict, as statusBadge and describeResult read it. */
export function withResult(config, result) {
  return { ...config, test_status: result.status, test_message: result.message, test_latency_ms: result.latency_ms };
}

export function statusBadge(config, { running = false } = {}) {
  if (running) {
    return h("span", { class: "status status-running" }, spinner(`Testing ${config.name}`), h("span", {}, "Testing…"));
  }
  const look = LOOKS[config.test_status] || LOOKS.untested;
  const detail = describeResult(config.test_message, config.test_latency_ms);
  const badge = h(
    "span",
    { class: `status status-${look.kind}`, title: detail || look.label, dataset: { status: config.test_status || "untested" } },
    h("span", { class: "status-icon", "aria-hidden": "true" }, look.icon),
    h("span", { class: "status-label" }, look.label),
  );
  if (detail) badge.append(h("span", { class: "sr-only" }, `: ${detail}`));
  return badge;
}
