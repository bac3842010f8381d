// llmroute dashboard: reads /api/* and draws tables and inline SVG charts. No dependencies.
// Every value from the API reaches the page through textContent or an SVG attribute, never
// as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { offset: 0, limit: 50, openId: null, timer: null };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

const fmt = {
  int: (n) => (n == null ? "-" : Math.round(n).toLocaleString("en-US")),
  pct: (x) => (x == null ? "-" : (100 * x).toFixed(x < 0.1 ? 2 : 1) + "%"),
  usd: (x) => (x == null ? "-" : "$" + (x >= 100 ? x.toFixed(2) : x.toFixed(4))),
  s: (x) => (x == null ? "-" : x < 1 ? (1000 * x).toFixed(0) + " ms" : x.toFixed(2) + " s"),
  time: (t) => new Date(t * 1000).toLocaleString(undefined, { hour12: false }),
  short: (t, width) => {
    const d = new Date(t * 1000);
    const pad = (v) => String(v).padStart(2, "0");
    return width >= 86400 ? `${d.getMonth() + 1}/${d.getDate()}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  },
};
const bucketName = (s) => (s >= 86400 ? `${s / 86400} d` : s >= 3600 ? `${s / 3600} h` : `${s / 60} min`);

// ---------------------------------------------------------------- the API

function params(extra) {
  const form = new FormData($("controls"));
  const query = new URLSearchParams();
  for (const [name, value] of form.entries()) {
    const text = String(value).trim();
    if (!text) continue;
    if (name === "property") {
      const [prop, ...rest] = text.split("=");
      if (prop && rest.length) query.set(`property.${prop.trim()}`, rest.join("=").trim());
    } else {
      query.set(name, text);
    }
  }
  for (const [name, value] of Object.entries(extra || {})) if (value !== "" && value != null) query.set(name, value);
  return query;
}

class NeedKey extends Error {}

async function api(path, extra, only) {
  const headers = {};
  const key = sessionStorage.getItem("llmroute-key");
  if (key) headers.authorization = `Bearer ${key}`;
  let query = extra === null ? "" : "?" + params(extra).toString();
  if (only) {  // a view that takes only these parameters
    const all = params(extra), kept = new URLSearchParams();
    for (const name of only) if (all.has(name)) kept.set(name, all.get(name));
    query = "?" + kept.toString();
  }
  const response = await fetch(`/api/${path}${query}`, { headers });
  const body = await response.json();
  if (response.status === 401 || (response.status === 403 && body.error && body.error.code === "admin_key_required")) {
    throw new NeedKey(body.error.message);
  }
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

// ---------------------------------------------------------------- building blocks

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function table(id, columns, rows, onRow) {
  const node = $(id);
  for (const child of [...node.children]) if (child.tagName !== "CAPTION") child.remove();
  const head = el("thead");
  const tr = el("tr");
  for (const c of columns) {
    const th = el("th", c.label, c.num ? "num" : "");
    th.scope = "col";
    tr.append(th);
  }
  head.append(tr);
  const body = el("tbody");
  if (!rows.length) {
    const empty = el("td", "nothing in this range", "empty");
    empty.colSpan = columns.length;
    const line = el("tr");
    line.append(empty);
    body.append(line);
  }
  for (const row of rows) {
    const line = el("tr");
    for (const c of columns) {
      const value = c.get(row);
      const cell = el("td", value, c.num ? "num" : c.cls ? c.cls(row) : "");
      line.append(cell);
    }
    if (onRow) {
      line.tabIndex = 0;
      line.addEventListener("click", () => onRow(row, line));
      line.addEventListener("keydown", (e) => { if (e.key === "Enter") onRow(row, line); });
    }
    body.append(line);
  }
  node.append(head, body);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text != null) node.textContent = text;
  return node;
}

// A chart of one or more series over time buckets: bars (stacked from 0) or lines.
function chart(id, buckets, width, series, kind, label) {
  const box = $(id);
  box.replaceChildren();
  const W = 600, H = 180, L = 52, B = 22, T = 8, R = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  const values = series.flatMap((s) => buckets.map((b) => s.get(b) || 0));
  const max = Math.max(...values, 0) || 1;
  const t0 = buckets.length ? buckets[0].start : 0;
  const t1 = buckets.length ? buckets[buckets.length - 1].start + width : 1;
  const x = (t) => L + ((t - t0) / Math.max(t1 - t0, 1)) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - B - T);
  root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    const text = series[0].fmt ? series[0].fmt(v) : fmt.int(v);
    root.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, text));
  }
  if (buckets.length) {
    root.append(svg("text", { x: L, y: H - 6 }, fmt.short(t0, width)));
    root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmt.short(t1, width)));
  }
  const barW = Math.max(((W - L - R) * width) / Math.max(t1 - t0, 1) - 1, 1);
  series.forEach((s, i) => {
    if (kind === "bars") {
      for (const b of buckets) {
        const v = s.get(b) || 0;
        if (!v) continue;
        const rect = svg("rect", { x: x(b.start), y: y(v), width: barW, height: H - B - y(v), class: `s${i}` });
        rect.append(svg("title", {}, `${fmt.short(b.start, width)} ${s.name}: ${s.fmt ? s.fmt(v) : fmt.int(v)}`));
        root.append(rect);
      }
    } else {
      const points = buckets.filter((b) => s.get(b) != null).map((b) => `${x(b.start + width / 2)},${y(s.get(b))}`);
      if (points.length) root.append(svg("polyline", { points: points.join(" "), class: `line s${i}` }));
    }
  });
  box.append(root);
  const legend = el("ul", null, "legend");
  series.forEach((s, i) => legend.append(el("li", s.name, `k${i}`)));
  box.append(legend);
}

// ---------------------------------------------------------------- the sections

async function overview() {
  const data = await api("overview");
  const t = data.totals;
  $("total-requests").textContent = fmt.int(t.requests);
  $("total-error-rate").textContent = fmt.pct(t.error_rate);
  $("total-tokens").textContent = `${fmt.int(t.input_tokens)} / ${fmt.int(t.output_tokens)}`;
  $("total-cost").textContent = fmt.usd(t.cost_usd);
  $("total-cache").textContent = fmt.pct(t.cache_hit_rate);
  $("total-saved").textContent = fmt.usd(t.saved_usd);
  for (const span of document.querySelectorAll(".bucket")) span.textContent = bucketName(data.bucket_s);
  const w = data.bucket_s, s = data.series;
  chart("chart-requests", s, w, [{ name: "requests", get: (b) => b.requests }, { name: "errors", get: (b) => b.errors }], "bars", "Requests and errors over time");
  chart("chart-cost", s, w, [{ name: "cost", get: (b) => b.cost_usd, fmt: fmt.usd }], "bars", "Cost over time");
  chart("chart-tokens", s, w, [{ name: "input", get: (b) => b.input_tokens }, { name: "output", get: (b) => b.output_tokens }], "lines", "Tokens over time");
}

async function latency() {
  const data = await api("latency");
  const p = (name, q) => (b) => (b[name][q] == null ? null : b[name][q]);
  chart("chart-latency", data.series, data.bucket_s, [
    { name: "p50", get: p("latency", "p50"), fmt: fmt.s },
    { name: "p95", get: p("latency", "p95"), fmt: fmt.s },
    { name: "p99", get: p("latency", "p99"), fmt: fmt.s },
  ], "lines", "Latency percentiles over time");
  table("latency-table", [
    { label: "provider", get: (r) => r.provider || "-" },
    { label: "model", get: (r) => r.model || "-" },
    { label: "requests", get: (r) => fmt.int(r.requests), num: true },
    { label: "p50", get: (r) => fmt.s(r.latency.p50), num: true },
    { label: "p95", get: (r) => fmt.s(r.latency.p95), num: true },
    { label: "p99", get: (r) => fmt.s(r.latency.p99), num: true },
    { label: "TTFT p50", get: (r) => fmt.s(r.ttft.p50), num: true },
    { label: "TTFT p95", get: (r) => fmt.s(r.ttft.p95), num: true },
  ], data.groups);
  $("latency-method").textContent = data.exact
    ? "Exact percentiles, from every request's latency."
    : `From the rollups' histograms: each percentile within ${fmt.pct(data.relative_error)} of the exact value.`;
}

async function errors() {
  const data = await api("errors");
  table("errors-requests", [
    { label: "error", get: (r) => r.error_type || "-" },
    { label: "limit", get: (r) => r.limit || "-" },
    { label: "requests", get: (r) => fmt.int(r.count), num: true },
  ], data.requests);
  table("errors-attempts", [
    { label: "target", get: (r) => r.target },
    { label: "error", get: (r) => r.error_type },
    { label: "count", get: (r) => fmt.int(r.count), num: true },
    { label: "of attempts", get: (r) => fmt.pct(r.rate), num: true },
  ], data.attempts);
}

async function cost() {
  const data = await api("cost", { by: $("cost-by").value, limit: 10 });
  table("cost-table", [
    { label: data.by, get: (r) => r.value ?? "(none)" },
    { label: "requests", get: (r) => fmt.int(r.requests), num: true },
    { label: "input", get: (r) => fmt.int(r.input_tokens), num: true },
    { label: "output", get: (r) => fmt.int(r.output_tokens), num: true },
    { label: "cached", get: (r) => fmt.int(r.cache_read_tokens), num: true },
    { label: "reasoning", get: (r) => fmt.int(r.reasoning_tokens), num: true },
    { label: "cost", get: (r) => fmt.usd(r.cost_usd), num: true },
  ], data.rows);
}

async function cache() {
  const data = await api("cache", { by: "route", limit: 10 });
  table("cache-table", [
    { label: "route", get: (r) => r.value ?? "(direct)" },
    { label: "requests", get: (r) => fmt.int(r.requests), num: true },
    { label: "hits", get: (r) => fmt.int(r.cache_hits), num: true },
    { label: "hit rate", get: (r) => fmt.pct(r.cache_hit_rate), num: true },
    { label: "saved", get: (r) => fmt.usd(r.saved_usd), num: true },
  ], data.rows);
}

async function health() {
  const data = await api("health", null);
  $("health").hidden = !data.live;
  if (!data.live) return;
  const worker = data.worker || { workers: 1 };
  $("health-worker").hidden = worker.workers <= 1;
  $("health-worker").textContent = worker.workers > 1
    ? `Worker process ${worker.pid}, one of ${worker.workers}: each gateway worker keeps its own health, statistics and counters, so these are this worker's alone (a refresh may reach another).`
    : "";
  table("health-table", [
    { label: "target", get: (r) => r.target },
    { label: "circuit", get: (r) => r.state.replace("_", "-"), cls: (r) => `state-${r.state}` },
    { label: "error ratio", get: (r) => fmt.pct(r.error_ratio), num: true },
    { label: "cooldown", get: (r) => (r.cooldown_remaining_s ? fmt.s(r.cooldown_remaining_s) : "-"), num: true },
    { label: "in flight", get: (r) => fmt.int(r.in_flight), num: true },
    { label: "p50", get: (r) => fmt.s(r.latency_p50_s), num: true },
    { label: "TTFT EWMA", get: (r) => fmt.s(r.ewma_ttft_s), num: true },
    { label: "last error", get: (r) => r.last_error || "-" },
  ], data.targets);
  const limits = data.limits || {};
  $("redis-failures").textContent = fmt.int(limits.redis_failures || 0);
  const stages = [["rate limits", limits.rate_limits], ["budgets", limits.budgets]];
  table("limits-table", [
    { label: "stage", get: (r) => r[0] },
    { label: "allowed", get: (r) => (r[1] ? fmt.int(r[1].allowed) : "not configured"), num: true },
    { label: "refused", get: (r) => (r[1] ? fmt.int(r[1].refused) : "-"), num: true },
    { label: "refused share", get: (r) => (r[1] && r[1].allowed + r[1].refused ? fmt.pct(r[1].refused / (r[1].allowed + r[1].refused)) : "-"), num: true },
    { label: "unchecked (Redis down)", get: (r) => (r[1] ? fmt.int(r[1].allowed_unavailable) : "-"), num: true },
    { label: "refused (Redis down)", get: (r) => (r[1] ? fmt.int(r[1].refused_unavailable) : "-"), num: true },
    { label: "lost updates", get: (r) => (r[1] ? fmt.int(r[1].lost_updates) : "-"), num: true },
    { label: "unpriced", get: (r) => (r[1] ? fmt.int(r[1].unpriced) : "-"), num: true },
  ], stages);
}

async function requests() {
  const data = await api("requests", { search: $("search").value.trim(), limit: state.limit, offset: state.offset });
  const last = Math.min(data.offset + data.requests.length, data.total);
  $("requests-count").textContent = data.total ? `${data.offset + 1}-${last} of ${fmt.int(data.total)}` : "none";
  $("prev-page").disabled = data.offset === 0;
  $("next-page").disabled = last >= data.total;
  table("requests-table", [
    { label: "started", get: (r) => fmt.time(r.started_at) },
    { label: "route", get: (r) => r.route || r.request_model },
    { label: "target", get: (r) => (r.provider ? `${r.provider}/${r.model}` : "-") },
    { label: "status", get: (r) => r.status, cls: (r) => `tag-${r.status}` },
    { label: "error", get: (r) => r.error_type || "" },
    { label: "latency", get: (r) => fmt.s(r.latency_s), num: true },
    { label: "tokens", get: (r) => (r.input_tokens == null ? "-" : `${r.input_tokens}/${r.output_tokens}`), num: true },
    { label: "cost", get: (r) => fmt.usd(r.cost_usd), num: true },
    { label: "cache", get: (r) => r.cache || "-" },
    { label: "user", get: (r) => r.user || "-" },
    { label: "id", get: (r) => r.request_id },
  ], data.requests, (row, line) => openRequest(row.request_id, line));
}

async function openRequest(id, line) {
  for (const open of document.querySelectorAll("#requests-table tr.open")) open.classList.remove("open");
  if (line) line.classList.add("open");
  const r = await api(`requests/${encodeURIComponent(id)}`, null);
  state.openId = id;
  $("detail-id").textContent = r.request_id;
  const fields = $("detail-fields");
  fields.replaceChildren();
  const shown = [
    ["started", fmt.time(r.started_at)], ["status", r.status], ["route", r.route || "-"],
    ["target", r.target || "-"], ["latency", fmt.s(r.latency_s)], ["TTFT", fmt.s(r.ttft_s)],
    ["tokens in/out", r.input_tokens == null ? "-" : `${r.input_tokens} / ${r.output_tokens}`],
    ["cached / reasoning", r.input_tokens == null ? "-" : `${r.cache_read_tokens} / ${r.reasoning_tokens}`],
    ["cost", fmt.usd(r.cost_usd)], ["cache", r.cache || "-"], ["limit", r.limit || "-"],
    ["error", r.error_type ? `${r.error_type}: ${r.error || ""}` : "-"], ["user", r.user || "-"],
    ["key", r.key || "-"], ["team", r.team || "-"],
    ["properties", Object.entries(r.properties).map(([k, v]) => `${k}=${v}`).join(", ") || "-"],
  ];
  for (const [name, value] of shown) {
    const pair = el("div");
    pair.append(el("dt", name), el("dd", value));
    fields.append(pair);
  }
  timeline(r);
  table("attempts-table", [
    { label: "#", get: (a) => String(a.idx + 1) },
    { label: "target", get: (a) => a.target },
    { label: "kind", get: (a) => a.kind },
    { label: "outcome", get: (a) => a.outcome, cls: (a) => `tag-${a.outcome}` },
    { label: "HTTP", get: (a) => (a.status == null ? "-" : String(a.status)) },
    { label: "started", get: (a) => fmt.s(a.started_s), num: true },
    { label: "took", get: (a) => fmt.s(a.latency_s), num: true },
    { label: "error", get: (a) => (a.error_type ? `${a.error_type}: ${a.error || ""}` : "") },
  ], r.attempts);
  const content = r.prompt || r.completion ? JSON.stringify({ prompt: r.prompt, completion: r.completion }, null, 2) : null;
  $("detail-content").hidden = content == null;
  $("detail-content-text").textContent = content || "";
  $("request-detail").hidden = false;
}

function timeline(r) {
  const box = $("attempts-timeline");
  box.replaceChildren();
  const attempts = r.attempts;
  const end = Math.max(r.latency_s || 0, ...attempts.map((a) => a.started_s + a.latency_s), 0.001);
  const W = 600, L = 120, R = 10, row = 22, H = Math.max(attempts.length, 1) * row + 24;
  const x = (t) => L + (t / end) * (W - L - R);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${attempts.length} attempts over ${fmt.s(end)}` });
  root.append(svg("title", {}, `Attempts of ${r.request_id}`));
  if (!attempts.length) root.append(svg("text", { x: L, y: 16 }, "no attempt: answered before any target (cache, refusal)"));
  attempts.forEach((a, i) => {
    const y = 4 + i * row;
    root.append(svg("text", { x: 0, y: y + 13 }, `${a.kind} ${a.target}`.slice(0, 24)));
    const bar = svg("rect", { x: x(a.started_s), y, width: Math.max(x(a.started_s + a.latency_s) - x(a.started_s), 2), height: row - 6, class: `attempt ${a.outcome}` });
    bar.append(svg("title", {}, `${a.target}: ${a.outcome}, ${fmt.s(a.latency_s)} from ${fmt.s(a.started_s)}`));
    root.append(bar);
  });
  const axis = H - 14;
  root.append(svg("line", { x1: L, x2: W - R, y1: axis, y2: axis, class: "axis" }));
  root.append(svg("text", { x: L, y: H - 2 }, "0"));
  root.append(svg("text", { x: W - R, y: H - 2, "text-anchor": "end" }, fmt.s(end)));
  box.append(root);
}

// ---------------------------------------------------------------- experiments

// A metric's value: rates as percentages, times in seconds, costs in dollars.
function metricValue(metric, x) {
  if (x == null) return "-";
  if (metric === "error_rate") return fmt.pct(x);
  if (metric === "latency_p50" || metric === "ttft_p50") return fmt.s(x);
  if (metric === "cost_per_request") return fmt.usd(x);
  return Number(x).toPrecision(3);
}

// A comparison's estimate and interval: "x0.812 [0.70, 0.94]" or "+0.0123 [-0.01, 0.03]".
function estimate(c) {
  const i = c.interval;
  if (!i) return "too little data";
  const num = (x) => (i.kind === "ratio" ? x.toFixed(3) : (x > 0 ? "+" : "") + x.toPrecision(3));
  return `${i.kind === "ratio" ? "\u00d7" : ""}${num(i.estimate)} [${num(i.low)}, ${num(i.high)}] at ${fmt.pct(i.confidence)}`;
}

async function experiments() {
  const data = await api("experiments", {}, ["since", "until"]);
  const list = $("experiments-list");
  list.replaceChildren();
  $("experiments-note").textContent = data.count
    ? `${data.count} experiment${data.count === 1 ? "" : "s"} in this range` + (data.count > data.experiments.length ? ` (the ${data.experiments.length} with the most requests shown)` : "")
    : "No experiment's requests in this range.";
  data.experiments.forEach((exp, n) => {
    const r = exp.report;
    const part = el("article", null, "experiment");
    part.dataset.name = exp.name;
    const title = el("h3", exp.name);
    const stopped = r.stopped ? `; stopped ${fmt.time(r.stopped.stopped_at)}, winner ${r.stopped.winner}` : "";
    title.append(el("span", ` ${fmt.int(exp.requests)} requests${stopped}`, "note"));
    const variants = el("table");
    variants.id = `experiment-${n}-variants`;
    variants.append(el("caption", `${exp.name}: each variant's requests compared`));
    const comparisons = el("table");
    comparisons.id = `experiment-${n}-comparisons`;
    comparisons.append(el("caption", `Against control; intervals hold together at ${fmt.pct(r.confidence)}`));
    const sentences = el("ul", null, "sentences");
    for (const text of r.sentences) sentences.append(el("li", text));
    const wrap = (t) => { const d = el("div", null, "scroll"); d.append(t); return d; };
    part.append(title, wrap(variants), wrap(comparisons), sentences);
    list.append(part);
    table(variants.id, [
      { label: "variant", get: (v) => v.variant },
      { label: "requests", get: (v) => fmt.int(v.requests), num: true },
      { label: "error rate", get: (v) => fmt.pct(v.error_rate), num: true },
      { label: "latency p50", get: (v) => fmt.s(v.latency_p50), num: true },
      { label: "latency p95", get: (v) => fmt.s(v.latency_p95), num: true },
      { label: "TTFT p50", get: (v) => fmt.s(v.ttft_p50), num: true },
      { label: "cost / request", get: (v) => fmt.usd(v.cost_per_request), num: true },
      { label: "feedback", get: (v) => v.feedback.map((f) => `${f.name} ${f.kind === "boolean" ? fmt.pct(f.mean) : f.mean.toPrecision(3)} (n=${f.n})`).join(", ") || "-" },
    ], r.variants);
    table(comparisons.id, [
      { label: "candidate", get: (c) => c.variant },
      { label: "metric", get: (c) => c.metric },
      { label: "control", get: (c) => metricValue(c.metric, c.control_value), num: true },
      { label: "candidate value", get: (c) => metricValue(c.metric, c.candidate_value), num: true },
      { label: "estimate [interval]", get: estimate },
      { label: "more requests", get: (c) => (c.more_requests == null ? "-" : c.more_requests > 1e9 ? "over a billion" : fmt.int(c.more_requests)), num: true },
    ], r.comparisons);
  });
}

// ---------------------------------------------------------------- refreshing

async function refresh() {
  const status = $("status");
  status.classList.remove("error");
  status.textContent = "loading…";
  const parts = [overview, latency, errors, cost, cache, health, experiments, requests];
  const results = await Promise.allSettled(parts.map((part) => part()));
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
  if (failed.some((e) => e instanceof NeedKey)) {
    $("key-form").hidden = false;
    status.textContent = failed[0].message;
    status.classList.add("error");
    return;
  }
  if (failed.length) {
    status.textContent = failed[0].message;
    status.classList.add("error");
    return;
  }
  status.textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

function schedule() {
  clearInterval(state.timer);
  if ($("auto-refresh").checked) state.timer = setInterval(refresh, 30000);
}

function start() {
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; refresh(); });
  $("range").addEventListener("change", () => { state.offset = 0; refresh(); });
  $("auto-refresh").addEventListener("change", schedule);
  $("cost-by").addEventListener("change", () => cost().catch(report));
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; requests().catch(report); });
  $("prev-page").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); requests().catch(report); });
  $("next-page").addEventListener("click", () => { state.offset += state.limit; requests().catch(report); });
  $("close-detail").addEventListener("click", () => { $("request-detail").hidden = true; });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("llmroute-key", $("key-input").value.trim());
    $("key-form").hidden = true;
    refresh();
  });
  schedule();
  refresh();
}

function report(error) {
  $("status").textContent = error.message;
  $("status").classList.add("error");
}

document.addEventListener("DOMContentLoaded", start);
