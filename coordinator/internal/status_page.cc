#include "coordinator/internal/status_page.h"

namespace cairn {
namespace internal {

const char kStatusPageHtml[] = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Cairn status</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 24px; color: #1d2433; }
  h1 { font-size: 20px; margin: 0 0 12px; }
  table { border-collapse: collapse; margin: 8px 0 20px; }
  th, td { padding: 4px 10px; border-bottom: 1px solid #e2e6ee; text-align: left; font-size: 13px; }
  th { background: #f4f6fa; }
  a { color: #2457c5; cursor: pointer; }
  .committed { fill: #2e8b57; } .pending, .committing { fill: #e0a100; }
  .aborted { fill: #c0392b; } .deleting { fill: #999; }
  .pinned { stroke: #1d2433; stroke-width: 2.5; }
  #timeline { border: 1px solid #e2e6ee; background: #fbfcfe; }
  .legend span { margin-right: 14px; font-size: 12px; }
</style>
</head>
<body>
<h1>Cairn checkpoints</h1>
<table id="jobs"><thead><tr><th>job</th><th>committed</th><th>pending</th><th>aborted</th>
<th>bytes</th><th>newest step</th></tr></thead><tbody></tbody></table>
<div id="job" hidden>
  <h1 id="job-title"></h1>
  <div id="policy"></div>
  <svg id="timeline" width="900" height="260"></svg>
  <div class="legend"><span>● committed</span><span style="color:#e0a100">● pending</span>
  <span style="color:#c0392b">● aborted</span><span>◯ outlined: pinned</span>
  <span>size: bytes</span></div>
  <table id="checkpoints"><thead><tr><th>step</th><th>state</th><th>committed</th><th>bytes</th>
  <th>shards</th><th>pinned</th><th>kept by</th><th>metrics</th></tr></thead><tbody></tbody></table>
</div>
<script>
function human(b) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + u[i];
}
function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
// With authorization on, the page is opened as /?token=TOKEN; its API calls
// carry the token as a bearer header.
const TOKEN = new URLSearchParams(location.search).get("token");
function api(path) {
  return fetch(path, TOKEN ? {headers: {"Authorization": "Bearer " + TOKEN}} : {});
}
async function loadJobs() {
  const data = await (await api("/api/jobs")).json();
  const body = document.querySelector("#jobs tbody");
  body.innerHTML = "";
  for (const j of data.jobs) {
    const tr = document.createElement("tr");
    tr.className = "job-row";
    const a = document.createElement("a"); a.textContent = j.job; a.onclick = () => showJob(j.job);
    cell(tr, "").appendChild(a);
    cell(tr, j.committed); cell(tr, j.pending); cell(tr, j.aborted); cell(tr, human(j.bytes));
    cell(tr, j.newest_step === null ? "-" : j.newest_step);
    body.appendChild(tr);
  }
  const wanted = new URLSearchParams(location.search).get("job");
  if (wanted) await showJob(wanted);
  document.body.dataset.ready = "1";
}
async function showJob(job) {
  const data = await (await api("/api/jobs/" + encodeURIComponent(job))).json();
  document.getElementById("job").hidden = false;
  document.getElementById("job-title").textContent = "Job " + data.job;
  document.getElementById("policy").textContent = "retention policy: " + data.policy;
  const body = document.querySelector("#checkpoints tbody");
  body.innerHTML = "";
  for (const c of data.checkpoints) {
    const tr = document.createElement("tr");
    tr.className = "ckpt-row " + c.state; tr.dataset.step = c.step;
    cell(tr, c.step); cell(tr, c.state);
    cell(tr, c.committed_at ? new Date(c.committed_at * 1000).toISOString().replace(".000", "") : "-");
    cell(tr, human(c.bytes)); cell(tr, c.num_shards); cell(tr, c.pinned ? "pinned" : "");
    cell(tr, c.kept_by.join(", ")).className = "kept-by";
    cell(tr, Object.entries(c.metrics).map(([k, v]) => k + "=" + v).join(" "));
    body.appendChild(tr);
  }
  drawTimeline(data.checkpoints);
}
function drawTimeline(ckpts) {
  const svg = document.getElementById("timeline");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const ns = "http://www.w3.org/2000/svg";
  const W = 900, H = 260, L = 60, R = 20, T = 20, B = 40;
  const time = c => c.committed_at || c.created_at;
  if (!ckpts.length) return;
  const t0 = Math.min(...ckpts.map(time)), t1 = Math.max(...ckpts.map(time)) || t0 + 1;
  const s0 = Math.min(...ckpts.map(c => c.step)), s1 = Math.max(...ckpts.map(c => c.step));
  const x = t => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L - R);
  const y = s => H - B - (s1 > s0 ? (s - s0) / (s1 - s0) : 0.5) * (H - T - B);
  const maxBytes = Math.max(1, ...ckpts.map(c => c.bytes));
  const axis = (x1, y1, x2, y2) => { const l = document.createElementNS(ns, "line");
    l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
    l.setAttribute("stroke", "#98a2b3"); svg.appendChild(l); };
  axis(L, H - B, W - R, H - B); axis(L, T, L, H - B);
  const label = (text, px, py, anchor) => { const t = document.createElementNS(ns, "text");
    t.setAttribute("x", px); t.setAttribute("y", py); t.setAttribute("font-size", "11");
    t.setAttribute("text-anchor", anchor || "start"); t.textContent = text; svg.appendChild(t); };
  label("time →", W - R, H - 10, "end"); label("step", 10, T + 10);
  label(String(s0), L - 6, H - B, "end"); label(String(s1), L - 6, T + 8, "end");
  for (const c of ckpts) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(time(c))); dot.setAttribute("cy", y(c.step));
    dot.setAttribute("r", 4 + 8 * Math.sqrt(c.bytes / maxBytes));
    dot.setAttribute("class", "point " + c.state + (c.pinned ? " pinned" : ""));
    dot.dataset.step = c.step;
    const title = document.createElementNS(ns, "title");
    title.textContent = "step " + c.step + " — " + c.state + ", " + human(c.bytes) +
        (c.kept_by.length ? ", kept by " + c.kept_by.join(", ") : "");
    dot.appendChild(title);
    svg.appendChild(dot);
  }
}
loadJobs();
</script>
</body>
</html>
)HTML";

}  // namespace internal
}  // namespace cairn
