// Usage: requests, tokens and cost per configuration over the last 7 or 30 days, with a bar chart.

import { getOptional } from "./api.js";
import { clear, formatCost, formatNumber, h, s, uniqueId } from "./dom.js";

const PERIODS = [7, 30];
const METRICS = {
  requests: { label: "Requests", format: formatNumber },
  tokens: { label: "Tokens", format: formatNumber },
  cost_usd: { label: "Cost (USD)", format: formatCost },
};

/** Accept the usage report's rows whatever their envelope ({items}, {groups}, a bare list). */
function rowsOf(report) {
  const list = Array.isArray(report) ? report : report.items || report.groups || report.data || [];
  return list.map((row) => {
    const prompt = Number(row.prompt_tokens) || 0;
    const completion = Number(row.completion_tokens) || 0;
    return {
      name: row.configuration_name || row.name || "(deleted configuration)",
      requests: Number(row.requests ?? row.request_count ?? row.count) || 0,
      errors: Number(row.errors ?? row.error_count) || 0,
      tokens: Number(row.total_tokens ?? row.tokens) || prompt + completion,
      cost_usd: Number(row.cost_usd ?? row.cost) || 0,
    };
  });
}

function barChart(rows, metric) {
  const { label, format } = METRICS[metric];
  const max = Math.max(...rows.map((r) => r[metric]), 0) || 1;
  const rowHeight = 30;
  const height = rows.length * rowHeight + 8;
  const titleId = uniqueId("chart");
  const chart = s("svg", {
    class: "chart", viewBox: `0 0 600 ${height}`, role: "img", "aria-labelledby": titleId, preserveAspectRatio: "xMinYMin meet",
  }, s("title", { id: titleId, text: `${label} per configuration` }));
  rows.forEach((row, index) => {
    const y = index * rowHeight + 4;
    const width = Math.max(2, Math.round((row[metric] / max) * 330));
    chart.append(
      s("text", { x: 0, y: y + 17, class: "chart-label", text: row.name.length > 22 ? `${row.name.slice(0, 21)}…` : row.name }),
      s("rect", { x: 180, y: y + 4, width, height: 18, rx: 3, class: "chart-bar" }),
      s("text", { x: 180 + width + 8, y: y + 17, class: "chart-value", text: format(row[metric]) }),
    );
  });
  return chart;
}

export async function renderUsage(main, { isCurrent }) {
  const periodId = uniqueId("period");
  const metricId = uniqueId("metric");
  const period = h("select", { id: periodId, name: "days" }, PERIODS.map((d) => h("option", { value: String(d) }, `Last ${d} days`)));
  const metric = h("select", { id: metricId, name: "metric" }, Object.entries(METRICS).map(([k, m]) => h("option", { value: k }, m.label)));
  const output = h("div", { class: "usage-output", "aria-live": "polite" });
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Usage"), h("p", { class: "muted" }, "What each configuration served through this gateway."))),
    h("div", { class: "toolbar" },
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: periodId }, "Period"), period),
      h("div", { class: "toolbar-field" }, h("label", { htmlFor: metricId }, "Chart"), metric)),
    output,
  );
  let rows = [];

  function render() {
    clear(output);
    if (!rows.length) {
      output.append(h("p", { class: "notice" }, "No requests in this period."));
      return;
    }
    const totals = rows.reduce((t, r) => ({ requests: t.requests + r.requests, tokens: t.tokens + r.tokens, cost_usd: t.cost_usd + r.cost_usd }), { requests: 0, tokens: 0, cost_usd: 0 });
    output.append(
      h("dl", { class: "stats" }, Object.entries(METRICS).map(([k, m]) => h("div", { class: "stat" }, h("dt", {}, m.label), h("dd", {}, m.format(totals[k]))))),
      h("section", { class: "card" }, barChart(rows, metric.value)),
      h("div", { class: "table-wrap" }, h("table", { class: "table table-usage" },
        h("caption", { class: "sr-only" }, "Usage per configuration"),
        h("thead", {}, h("tr", {}, ["Configuration", "Requests", "Errors", "Tokens", "Cost"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((r) => h("tr", {},
          h("th", { scope: "row", dataset: { label: "Configuration" } }, r.name),
          h("td", { class: "num", dataset: { label: "Requests" } }, formatNumber(r.requests)),
          h("td", { class: "num", dataset: { label: "Errors" } }, formatNumber(r.errors)),
          h("td", { class: "num", dataset: { label: "Tokens" } }, formatNumber(r.tokens)),
          h("td", { class: "num", dataset: { label: "Cost" } }, formatCost(r.cost_usd))))))),
    );
  }

  async function load() {
    clear(output).append(h("p", { class: "muted" }, "Loading…"));
    const since = new Date(Date.now() - Number(period.value) * 86400000).toISOString();
    try {
      const report = await getOptional("/api/usage", { since, group_by: "configuration" });
      if (!isCurrent()) return;
      if (report === null) {
        clear(output).append(h("p", { class: "notice" }, "This gateway does not report usage yet."));
        return;
      }
      rows = rowsOf(report).sort((a, b) => b.requests - a.requests);
      render();
    } catch (error) {
      clear(output).append(h("p", { class: "notice notice-error", role: "alert" }, `Could not load usage: ${error.message}`));
    }
  }

  period.addEventListener("change", load);
  metric.addEventListener("change", render);
  await load();
}
