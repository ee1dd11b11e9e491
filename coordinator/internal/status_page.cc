#include "coordinator/internal/status_page.h"

namespace cairn {
namespace internal {

// One document, no build step and nothing fetched from elsewhere (no CDN):
// the page must work on an air-gapped cluster. The script is plain ES2017.
const char kStatusPageHtml[] = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cairn status</title>
<style>
  :root {
    --ink: #1d2433; --muted: #667085; --line: #e4e7ec; --panel: #ffffff; --bg: #f5f7fa;
    --committed: #2e9e5b; --pending: #e3a008; --aborted: #d64545; --deleting: #98a2b3;
    --pin: #1d2433; --link: #2457c5; --stale: #d64545;
  }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
         color: var(--ink); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap;
           padding: 12px 24px; background: #1d2433; color: #fff; }
  header h1 { font-size: 18px; margin: 0; font-weight: 600; }
  header h1 a { color: #fff; text-decoration: none; }
  header .meta { font-size: 12px; color: #c6cbd6; }
  header .meta b { color: #fff; font-weight: 600; }
  header .right { margin-left: auto; }
  main { padding: 16px 24px 32px; max-width: 1280px; }
  .error { background: #fdecec; border: 1px solid #f3b7b7; color: #8a1f1f; padding: 10px 14px;
           border-radius: 6px; margin-bottom: 14px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
  .card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
          padding: 10px 16px; min-width: 130px; }
  .card .v { font-size: 22px; font-weight: 600; }
  .card .k { font-size: 12px; color: var(--muted); }
  .card.bad .v { color: var(--stale); }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
            padding: 12px 16px; margin-bottom: 16px; }
  section h2 { font-size: 15px; margin: 0 0 8px; }
  section h2 .sub { font-weight: 400; color: var(--muted); font-size: 12px; margin-left: 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
           font-size: 13px; vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr:last-child td { border-bottom: none; }
  tr.job-row { cursor: pointer; }
  tr.job-row:hover, tr.ckpt-row:hover { background: #f0f4fb; }
  a { color: var(--link); text-decoration: none; }
  a:hover { text-decoration: underline; }
  .empty { color: var(--muted); font-style: italic; padding: 8px 0; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
           font-weight: 600; color: #fff; }
  .badge.committed { background: var(--committed); } .badge.aborted, .badge.aborting { background: var(--aborted); }
  .badge.pending, .badge.merging, .badge.committing { background: var(--pending); }
  .badge.deleting { background: var(--deleting); }
  .badge.live { background: var(--committed); } .badge.down { background: var(--aborted); }
  .badge.idle { background: var(--deleting); }
  .stale { color: var(--stale); font-weight: 600; }
  .muted { color: var(--muted); }
  .reason { color: #8a1f1f; }
  .tag { display: inline-block; border: 1px solid var(--line); border-radius: 4px; padding: 0 6px;
         margin: 0 4px 2px 0; font-size: 12px; background: #f8f9fb; }
  .tag.pin { border-color: var(--pin); font-weight: 600; }
  .strip { display: inline-flex; gap: 2px; vertical-align: middle; }
  .strip i { width: 7px; height: 14px; border-radius: 2px; display: inline-block; }
  .strip i.committed { background: var(--committed); } .strip i.pending { background: var(--pending); }
  .strip i.aborted { background: var(--aborted); } .strip i.deleting { background: var(--deleting); }
  .progress { display: inline-flex; gap: 3px; vertical-align: middle; margin-right: 8px; }
  .progress i { width: 14px; height: 14px; border-radius: 3px; background: #eef0f4;
                border: 1px solid #d0d5dd; display: inline-block; }
  .progress i.done { background: var(--committed); border-color: var(--committed); }
  .bar { height: 6px; background: #eef0f4; border-radius: 3px; width: 160px; display: inline-block;
         vertical-align: middle; margin-right: 8px; overflow: hidden; }
  .bar span { display: block; height: 100%; background: var(--committed); }
  #timeline { width: 100%; height: auto; display: block; }
  #timeline .grid { stroke: #eef0f4; }
  #timeline .axis { stroke: #98a2b3; }
  #timeline text { font-size: 11px; fill: #475467; }
  #timeline text.title { font-size: 12px; fill: var(--ink); font-weight: 600; }
  #timeline .trail { fill: none; stroke: var(--committed); stroke-opacity: .35; stroke-width: 1.5; }
  #timeline .now { stroke: #475467; stroke-dasharray: 4 3; }
  #timeline .stale-gap { fill: #fdecec; }
  .point { stroke: #fff; stroke-width: 1.5; cursor: pointer; }
  .point.committed { fill: var(--committed); } .point.pending, .point.merging, .point.committing { fill: var(--pending); }
  .point.aborted, .point.aborting { fill: var(--aborted); } .point.deleting { fill: var(--deleting); }
  .point.pinned { stroke: var(--pin); stroke-width: 2.5; }
  .point.hot { stroke: var(--link); stroke-width: 3; }
  .legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: #475467; margin: 4px 0 0; }
  .legend svg { vertical-align: middle; margin-right: 4px; }
  #tip { position: fixed; pointer-events: none; background: #1d2433; color: #fff; font-size: 12px;
         padding: 8px 10px; border-radius: 6px; max-width: 360px; box-shadow: 0 4px 14px rgba(0,0,0,.2);
         z-index: 10; }
  #tip b { color: #fff; } #tip .k { color: #c6cbd6; }
  .crumbs { margin-bottom: 10px; font-size: 13px; }
  .job-head { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; margin-bottom: 10px; }
  .job-head h2 { font-size: 20px; margin: 0; }
  .two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
  .two section { margin-bottom: 0; }
  @media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1><a href="#" id="home">Cairn status</a></h1>
  <span class="meta" id="server-meta"></span>
  <span class="meta right" id="refresh-meta"></span>
</header>
<main>
<div id="error" class="error" hidden></div>

<div id="overview">
  <div class="cards" id="cards"></div>
  <section>
    <h2>Jobs <span class="sub" id="stale-note"></span></h2>
    <table id="jobs"><thead><tr><th>job</th><th>recent steps</th><th class="num">newest step</th><th>newest commit</th>
      <th class="num">committed</th><th class="num">pending</th><th class="num">aborted</th>
      <th class="num">pinned</th><th class="num">bytes</th></tr></thead><tbody></tbody></table>
  </section>
  <section id="writers-panel">
    <h2>Shard writers <span class="sub">live = heartbeat within the coordinator's writer timeout</span></h2>
    <table id="writers"><thead><tr><th>writer</th><th>id</th><th>state</th><th class="num">last heartbeat</th>
      <th class="num">active streams</th><th class="num">assigned shards</th><th class="num">bytes written</th>
      </tr></thead><tbody></tbody></table>
  </section>
</div>

<div id="job" hidden>
  <div class="crumbs"><a href="#" id="back">← all jobs</a></div>
  <div class="job-head"><h2 id="job-title"></h2><span class="muted" id="job-summary"></span></div>
  <div class="cards" id="job-cards"></div>
  <section>
    <h2>Timeline <span class="sub">each dot is a step: when it was committed (pending and aborted: when it began)</span></h2>
    <svg id="timeline" viewBox="0 0 1000 300" preserveAspectRatio="xMinYMin meet"></svg>
    <div class="legend" id="legend"></div>
  </section>
  <div class="two">
    <section id="pending-panel"><h2>Pending steps <span class="sub">shards durable so far</span></h2>
      <div id="pending"></div></section>
    <section id="aborted-panel"><h2>Aborted steps</h2><div id="aborted"></div></section>
  </div>
  <section style="margin-top:16px">
    <h2>Checkpoints <span class="sub" id="policy"></span></h2>
    <table id="checkpoints"><thead><tr><th class="num">step</th><th>state</th><th>time (UTC)</th>
      <th class="num">age</th><th class="num">bytes</th><th class="num">shards</th><th>kept by</th>
      <th>metrics</th></tr></thead><tbody></tbody></table>
  </section>
</div>
</main>
<div id="tip" hidden></div>
<script>
"use strict";
// ---- settings from the URL: ?token=T (authorization), ?stale=6h (a job
// whose newest commit is older is red), ?refresh=5 (seconds; 0 = off);
// #job=NAME opens a job (?job=NAME too).
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");
function parseDuration(text, fallback) {
  const m = /^\s*([0-9.]+)\s*([smhd]?)\s*$/.exec(text || "");
  if (!m) return fallback;
  return parseFloat(m[1]) * {s: 1, m: 60, h: 3600, d: 86400, "": 3600}[m[2]];
}
const STALE_SECONDS = parseDuration(params.get("stale"), 6 * 3600);
const REFRESH_SECONDS = params.has("refresh") ? Math.max(0, parseFloat(params.get("refresh")) || 0) : 5;
const STATE_COLOURS = [["committed", "committed"], ["pending", "pending"], ["aborted", "aborted"],
                       ["deleting", "deleting"]];

// ---- formatting
function human(b) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? (b >= 100 ? b.toFixed(0) : b.toFixed(1)) : b) + " " + u[i];
}
function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  seconds = Math.max(0, seconds);
  if (seconds < 1) return "just now";
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 2 * 86400) return (seconds / 3600).toFixed(seconds < 36000 ? 1 : 0) + " h ago";
  return (seconds / 86400).toFixed(1) + " d ago";
}
function span(seconds) { return age(seconds).replace(" ago", "").replace("just now", "<1 s"); }
function utc(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "") : "-"; }
// Metric values with sensible digits: 4 significant, no float noise.
function metricValue(v) {
  if (typeof v !== "number" || !isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
  return String(parseFloat(v.toPrecision(4)));
}
function metricsText(m) { return Object.entries(m || {}).map(([k, v]) => k + "=" + metricValue(v)).join("  "); }
function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function stateClass(s) { return s === "merging" || s === "committing" ? "pending" : s === "aborting" ? "aborted" : s; }

// ---- data
async function api(path) {
  const r = await fetch(path, TOKEN ? {headers: {"Authorization": "Bearer " + TOKEN}} : {});
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const why = body && body.error ? body.error : r.statusText;
    const hint = r.status === 401 || r.status === 403
        ? " (authorization is on: open this page as /?token=TOKEN with a read token" +
          (path === "/api/jobs" ? " for every job, --job='*')" : " for this job)")
        : "";
    throw new Error(path + ": " + r.status + " " + why + hint);
  }
  return body;
}
function showError(e) {
  const box = document.getElementById("error");
  box.hidden = !e; box.textContent = e ? String(e.message || e) : "";
}

// ---- routing: #job=NAME
function wantedJob() {
  const h = new URLSearchParams(location.hash.replace(/^#/, ""));
  return h.get("job") || (location.hash ? null : params.get("job"));
}
function jobHref(job) { return "#job=" + encodeURIComponent(job); }

// ---- overview
function card(value, key, bad) {
  return el("div", {class: "card" + (bad ? " bad" : "")}, el("div", {class: "v", text: value}),
            el("div", {class: "k", text: key}));
}
// A job's newest steps as a row of small squares, oldest first.
function strip(recent) {
  const s = el("span", {class: "strip"});
  for (const r of recent || []) s.append(el("i", {class: stateClass(r.state), title: "step " + r.step + ": " + r.state}));
  return s;
}
function renderOverview(data) {
  document.getElementById("server-meta").innerHTML = "";
  document.getElementById("server-meta").append(
      "version ", el("b", {text: data.version}), "  ·  up ", el("b", {text: span(data.uptime_seconds)}),
      "  ·  storage ", el("b", {text: data.storage}));
  const jobs = data.jobs, writers = data.writers;
  const staleJobs = jobs.filter(j => j.last_commit_at === null || data.now - j.last_commit_at > STALE_SECONDS);
  const live = writers.filter(w => w.live).length;
  const cards = document.getElementById("cards"); cards.innerHTML = "";
  cards.append(card(jobs.length, "jobs"),
               card(staleJobs.length, "jobs with no commit in " + span(STALE_SECONDS), staleJobs.length > 0),
               card(jobs.reduce((a, j) => a + j.committed, 0), "committed checkpoints"),
               card(jobs.reduce((a, j) => a + j.pending, 0), "pending steps"),
               card(jobs.reduce((a, j) => a + j.aborted, 0), "aborted steps"),
               card(live + " / " + writers.length, "writers live", live < writers.length || !writers.length),
               card(human(jobs.reduce((a, j) => a + j.bytes, 0)), "committed bytes"));
  document.getElementById("stale-note").textContent =
      "newest commit in red when older than " + span(STALE_SECONDS) + " (?stale=6h to change)";
  const body = document.querySelector("#jobs tbody"); body.innerHTML = "";
  if (!jobs.length) body.append(el("tr", {}, el("td", {colspan: 9, class: "empty", text: "No jobs yet."})));
  for (const j of jobs) {
    const since = j.last_commit_at === null ? null : data.now - j.last_commit_at;
    const stale = since === null || since > STALE_SECONDS;
    const tr = el("tr", {class: "job-row" + (stale ? " stale-job" : ""), "data-job": j.job},
        el("td", {}, el("a", {href: jobHref(j.job), class: "job-link", text: j.job})),
        el("td", {}, strip(j.recent)),
        el("td", {class: "num", text: j.newest_step === null ? "-" : j.newest_step}),
        el("td", {class: "last-commit" + (stale ? " stale" : ""),
                  title: j.last_commit_at ? utc(j.last_commit_at) + " UTC" : "no committed checkpoint",
                  text: since === null ? "none yet" : age(since)}),
        el("td", {class: "num", text: j.committed}),
        el("td", {class: "num", text: j.pending}),
        el("td", {class: "num" + (j.aborted ? " stale" : ""), text: j.aborted}),
        el("td", {class: "num", text: j.pinned}),
        el("td", {class: "num", text: human(j.bytes)}));
    tr.onclick = (ev) => { if (ev.target.tagName !== "A") location.hash = jobHref(j.job).slice(1); };
    body.append(tr);
  }
  const wbody = document.querySelector("#writers tbody"); wbody.innerHTML = "";
  if (!writers.length) wbody.append(el("tr", {}, el("td", {colspan: 7, class: "empty", text: "No shard writers registered."})));
  for (const w of writers) {
    const state = w.live ? "live" : "down";
    wbody.append(el("tr", {class: "writer-row " + state, "data-writer": w.address},
        el("td", {text: w.address}), el("td", {class: "muted", text: w.id}),
        el("td", {}, el("span", {class: "badge " + state, text: w.live ? "live" : "down"})),
        el("td", {class: "num heartbeat" + (w.live ? "" : " stale"), text: age(w.heartbeat_age_seconds)}),
        el("td", {class: "num", text: w.active_streams}),
        el("td", {class: "num", text: w.assigned_shards}),
        el("td", {class: "num", text: human(w.bytes_written)})));
  }
}

// ---- one job
function renderJob(data) {
  const now = data.now, ck = data.checkpoints;
  const by = s => ck.filter(c => stateClass(c.state) === s);
  const committed = by("committed"), pending = by("pending"), aborted = by("aborted");
  const newest = committed.length ? committed[committed.length - 1] : null;
  const newestAt = committed.reduce((a, c) => Math.max(a, c.committed_at), 0);
  const stale = !newest || now - newestAt > STALE_SECONDS;
  document.getElementById("job-title").textContent = "Job " + data.job;
  document.getElementById("job-summary").textContent = newest
      ? "newest step " + newest.step + ", committed " + age(now - newestAt) : "no committed checkpoint yet";
  document.getElementById("job-summary").className = stale ? "stale" : "muted";
  document.getElementById("policy").textContent = "retention policy: " + data.policy;
  const cards = document.getElementById("job-cards"); cards.innerHTML = "";
  cards.append(card(newest ? newest.step : "-", "newest committed step"),
               card(newest ? span(now - newestAt) : "-", "since the newest commit", stale),
               card(committed.length, "committed"), card(pending.length, "pending", false),
               card(aborted.length, "aborted", aborted.length > 0),
               card(ck.filter(c => c.pinned).length, "pinned"),
               card(human(committed.reduce((a, c) => a + c.bytes, 0)), "committed bytes"));

  const pbox = document.getElementById("pending"); pbox.innerHTML = "";
  if (!pending.length) pbox.append(el("div", {class: "empty", text: "None: every step begun was committed or aborted."}));
  const ptable = el("table", {class: "pending-table"});
  for (const c of pending) {
    const boxes = el("span", {class: "progress", title: "durable shards: " + (c.durable_shards || []).join(", ")});
    const done = new Set(c.durable_shards || []);
    if (c.num_shards <= 32) {
      for (let i = 0; i < c.num_shards; i++) boxes.append(el("i", {class: done.has(i) ? "done" : "", title: "shard " + i + (done.has(i) ? " durable" : " not yet")}));
    } else {
      const bar = el("span", {class: "bar"}); bar.append(el("span", {style: "width:" + (100 * c.shards_durable / c.num_shards) + "%"}));
      boxes.append(bar);
    }
    ptable.append(el("tr", {class: "pending-row", "data-step": c.step},
        el("td", {class: "num", text: "step " + c.step}),
        el("td", {}, boxes, el("span", {class: "shard-progress", text: c.shards_durable + " of " + c.num_shards + " shards durable"})),
        el("td", {class: "num muted", text: "begun " + age(now - c.created_at)}),
        el("td", {class: "num muted", text: human(c.bytes)})));
  }
  if (pending.length) pbox.append(ptable);

  const abox = document.getElementById("aborted"); abox.innerHTML = "";
  if (!aborted.length) abox.append(el("div", {class: "empty", text: "None."}));
  const atable = el("table", {class: "aborted-table"});
  for (const c of aborted) {
    atable.append(el("tr", {class: "aborted-row", "data-step": c.step},
        el("td", {class: "num", text: "step " + c.step}),
        el("td", {class: "reason abort-reason", text: c.abort_reason || "(no reason recorded)"}),
        el("td", {class: "num muted", text: age(now - c.created_at)})));
  }
  if (aborted.length) abox.append(atable);

  const body = document.querySelector("#checkpoints tbody"); body.innerHTML = "";
  for (const c of ck.slice().reverse()) {
    const t = c.committed_at || c.created_at;
    const kept = el("td", {class: "kept-by"});
    for (const k of c.kept_by) kept.append(el("span", {class: "tag" + (k === "pinned" ? " pin" : ""), text: k}));
    const s = stateClass(c.state);
    if (s === "committed" && !c.kept_by.length) {
      kept.append(el("span", {class: "muted", text: /^none/.test(data.policy) ? "no policy: kept"
                                                                             : "no rule: the next retention pass deletes it"}));
    }
    const tr = el("tr", {class: "ckpt-row " + c.state, "data-step": c.step},
        el("td", {class: "num", text: c.step}),
        el("td", {}, el("span", {class: "badge " + c.state, text: c.state})),
        el("td", {text: utc(t)}),
        el("td", {class: "num", text: age(now - t)}),
        el("td", {class: "num", text: s === "aborted" ? "-" : human(c.bytes)}),
        el("td", {class: "num", text: s === "aborted" ? "-" : c.shards_durable + "/" + c.num_shards}),
        kept,
        el("td", {}, s === "aborted" ? el("span", {class: "reason", text: c.abort_reason}) : metricsText(c.metrics)));
    tr.onmouseenter = () => highlight(c.step, true);
    tr.onmouseleave = () => highlight(c.step, false);
    body.append(tr);
  }
  drawTimeline(ck, now);
}
function highlight(step, on) {
  for (const d of document.querySelectorAll("#timeline .point")) {
    if (d.dataset.step === String(step)) d.classList.toggle("hot", on);
  }
}

// "Nice" tick steps for the axes.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                    43200, 86400, 172800, 604800, 2592000];
function niceStep(range, target) {
  const raw = range / target, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
function timeLabel(t, stepSeconds, spanSeconds) {
  const iso = new Date(t * 1000).toISOString();
  if (spanSeconds >= 2 * 86400) return iso.slice(5, 10) + (stepSeconds < 86400 ? " " + iso.slice(11, 16) : "");
  return stepSeconds < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
}
function drawTimeline(ckpts, now) {
  const svg = document.getElementById("timeline");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 1000, H = 300, L = 70, R = 24, T = 16, B = 48;
  const time = c => c.committed_at || c.created_at;
  if (!ckpts.length) {
    svg.append(Object.assign(svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}), {textContent: "no steps yet"}));
    return;
  }
  let t0 = Math.min(...ckpts.map(time)), t1 = Math.max(...ckpts.map(time));
  // Show the time since the newest step up to now, unless it would squash
  // the history into a corner.
  const showNow = now - t1 <= Math.max(3 * (t1 - t0), 60);
  if (showNow) t1 = Math.max(t1, now);
  if (t1 - t0 < 10) t1 = t0 + 10;
  const pad = (t1 - t0) * 0.03; t0 -= pad; t1 += pad;
  let s0 = Math.min(...ckpts.map(c => c.step)), s1 = Math.max(...ckpts.map(c => c.step));
  const sStep = niceStep(Math.max(s1 - s0, 1), 5);
  s0 = Math.floor(s0 / sStep) * sStep; s1 = Math.max(Math.ceil(s1 / sStep) * sStep, s0 + sStep);
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const YPAD = 10;  // keeps dots on the lowest and highest ticks off the frame
  const y = s => H - B - YPAD - (s - s0) / (s1 - s0) * (H - T - B - 2 * YPAD);
  const add = (tag, attrs, text) => { const e = svgEl(tag, attrs); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
  // Step axis: gridlines and labels.
  for (let s = s0; s <= s1 + 1e-9; s += sStep) {
    add("line", {class: "grid", x1: L, x2: W - R, y1: y(s), y2: y(s)});
    add("text", {class: "y-tick", x: L - 8, y: y(s) + 4, "text-anchor": "end"}, String(Math.round(s)));
  }
  // Time axis: ticks at round times.
  const spanS = t1 - t0;
  const tStep = TIME_STEPS.find(s => spanS / s <= 8) || TIME_STEPS[TIME_STEPS.length - 1];
  for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
    add("line", {class: "grid", x1: x(t), x2: x(t), y1: T, y2: H - B});
    add("line", {class: "axis", x1: x(t), x2: x(t), y1: H - B, y2: H - B + 5});
    add("text", {class: "x-tick", x: x(t), y: H - B + 18, "text-anchor": "middle"}, timeLabel(t, tStep, spanS));
  }
  add("line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B});
  add("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B});
  add("text", {class: "title", x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle"}, "time (UTC)");
  add("text", {class: "title", x: 16, y: (T + H - B) / 2, "text-anchor": "middle",
               transform: "rotate(-90 16 " + (T + H - B) / 2 + ")"}, "step");
  const committed = ckpts.filter(c => c.state === "committed").sort((a, b) => time(a) - time(b));
  if (showNow) {
    const last = committed.length ? time(committed[committed.length - 1]) : t0;
    if (now - last > STALE_SECONDS) add("rect", {class: "stale-gap", x: x(last), y: T, width: Math.max(0, x(now) - x(last)), height: H - T - B});
    add("line", {class: "now", x1: x(now), x2: x(now), y1: T, y2: H - B});
    add("text", {x: x(now) - 4, y: T + 10, "text-anchor": "end"}, "now");
  } else {
    add("text", {x: W - R, y: T + 10, "text-anchor": "end"}, "now: " + span(now - Math.max(...ckpts.map(time))) + " after the last step →");
  }
  if (committed.length > 1) {
    add("polyline", {class: "trail", points: committed.map(c => x(time(c)) + "," + y(c.step)).join(" ")});
  }
  const maxBytes = Math.max(1, ...ckpts.map(c => c.bytes));
  const tip = document.getElementById("tip");
  // Committed last, so they are drawn over pending and aborted ones.
  const order = {deleting: 0, aborted: 1, aborting: 1, pending: 2, merging: 2, committing: 2, committed: 3};
  for (const c of ckpts.slice().sort((a, b) => order[a.state] - order[b.state])) {
    const dot = add("circle", {cx: x(time(c)), cy: y(c.step), r: 4.5 + 6 * Math.sqrt(c.bytes / maxBytes),
                               class: "point " + c.state + (c.pinned ? " pinned" : ""), "data-step": c.step});
    dot.onmousemove = (ev) => {
      tip.hidden = false; tip.innerHTML = "";
      const row = (k, v, cls) => tip.append(el("div", {}, el("span", {class: "k", text: k + ": "}), el("span", {class: cls || "", text: v})));
      tip.append(el("div", {}, el("b", {text: "step " + c.step + " "}), el("span", {class: "badge " + c.state, text: c.state})));
      if (c.committed_at) row("committed", utc(c.committed_at) + " UTC (" + age(now - c.committed_at) + ")");
      else row("begun", utc(c.created_at) + " UTC (" + age(now - c.created_at) + ")");
      row("size", human(c.bytes) + " in " + plural(c.num_shards, "shard"));
      if (stateClass(c.state) === "pending") row("durable", c.shards_durable + " of " + c.num_shards + " shards");
      if (c.abort_reason) row("abort reason", c.abort_reason);
      if (c.kept_by.length) row("kept by", c.kept_by.join(", "));
      if (c.pinned) row("pinned", "yes: never deleted by retention");
      const m = metricsText(c.metrics); if (m) row("metrics", m);
      const px = Math.min(ev.clientX + 14, window.innerWidth - 370);
      tip.style.left = px + "px"; tip.style.top = (ev.clientY + 14) + "px";
      tip.dataset.step = c.step;
    };
    dot.onmouseleave = () => { tip.hidden = true; };
  }
  // The legend's swatches are drawn with the dots' own classes, so the
  // colours cannot drift apart.
  const legend = document.getElementById("legend"); legend.innerHTML = "";
  const swatch = (cls, label) => {
    const s = svgEl("svg", {width: 16, height: 16}); s.append(svgEl("circle", {cx: 8, cy: 8, r: 6, class: cls}));
    legend.append(el("span", {class: "legend-item"}, s, label));
  };
  for (const [cls, label] of STATE_COLOURS) swatch("point " + cls, label);
  swatch("point committed pinned", "pinned (dark ring)");
  legend.append(el("span", {}, "dot area: bytes"));
  legend.append(el("span", {}, "dashed line: now"));
}

// ---- the loop
let refreshTimer = null, lastShown = null;
async function refresh() {
  const job = wantedJob();
  try {
    showError(null);
    document.getElementById("overview").hidden = !!job;
    document.getElementById("job").hidden = !job;
    if (job) {
      const data = await api("/api/jobs/" + encodeURIComponent(job));
      renderJob(data);
      document.title = "Cairn: " + job;
      if (!document.getElementById("server-meta").textContent) {
        api("/api/jobs").then(renderOverview).catch(() => {});
      }
    } else {
      renderOverview(await api("/api/jobs"));
      document.title = "Cairn status";
    }
    document.getElementById("refresh-meta").textContent = "updated " + new Date().toISOString().slice(11, 19) +
        " UTC" + (REFRESH_SECONDS ? " · refreshes every " + REFRESH_SECONDS + " s" : "");
  } catch (e) {
    showError(e);
  }
  lastShown = job;
  document.body.dataset.view = job ? "job" : "overview";
  document.body.dataset.ready = "1";
}
function schedule() {
  if (refreshTimer) clearInterval(refreshTimer);
  if (REFRESH_SECONDS) refreshTimer = setInterval(refresh, REFRESH_SECONDS * 1000);
}
window.addEventListener("hashchange", () => { document.getElementById("tip").hidden = true; refresh(); schedule(); });
document.getElementById("home").onclick = document.getElementById("back").onclick = (ev) => {
  ev.preventDefault(); history.pushState(null, "", location.pathname + location.search);
  if (params.get("job")) { params.delete("job"); history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "")); }
  refresh(); schedule();
};
window.addEventListener("popstate", () => { refresh(); });
// A refresh redraws the dots, so the one under the mouse may never see its
// mouseleave: any movement off a dot hides the details.
document.addEventListener("mousemove", (ev) => {
  if (!(ev.target.classList && ev.target.classList.contains("point"))) document.getElementById("tip").hidden = true;
});
refresh(); schedule();
</script>
</body>
</html>
)HTML";

}  // namespace internal
}  // namespace cairn
