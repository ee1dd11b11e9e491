#!/usr/bin/env python3
"""deploy/prometheus/ and deploy/grafana/: the alert rules pass `promtool
check rules` and their unit tests (`promtool test rules`: each alert fires on
the series that should trigger it), the scrape config passes `promtool check
config`, the Grafana dashboard parses, and every PromQL expression in rules
and dashboard names only series a live coordinator and writer export after
a save (with the label names they carry).

Skips ("missing dependency: promtool", exit 77) when promtool is absent,
unless CI=true. Prints 'N passed, N failed'; exit 1 on any failure."""
import json, os, re, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "testing"))
from cairn_cluster import ROOT, Checks, Cluster, promtool as find_promtool  # noqa: E402
import yaml  # noqa: E402

PROMTOOL = find_promtool()
PROM = os.path.join(ROOT, "deploy", "prometheus")
RULES = os.path.join(PROM, "cairn-alerts.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "cairn-dashboard.json")

check = Checks()


def promtool(*args):
    r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=PROM)
    check(r.returncode == 0, "promtool " + " ".join(args), r.stdout + r.stderr)


# PromQL words that are not series names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and",
            "or", "unless", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "group", "inf", "nan", "atan2"}


def series_in(expr):
    """[(name, {label names in its matcher})] of every series an expression
    selects. Grafana's $__rate_interval style variables count as durations."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)                  # string literals
    e = re.sub(r"\[[^\]]*\]", "", e)                               # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    found = []
    for m in re.finditer(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", e):
        name, matcher, call = m.group(1), m.group(2), m.group(3)
        if call and not matcher or name.lower() in KEYWORDS:
            continue                                               # a function or an operator
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matcher or ""))
        found.append((name, labels))
    return found


def grouping_labels(expr):
    out = set()
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        out |= {l.strip() for l in m.group(1).split(",") if l.strip()}
    return out


# The checker itself: it must see a misspelt series and a missing label.
check(series_in('sum by (le) (rate(cairn_bogus_seconds_bucket{job="x"}[5m])) > 3 * 3600') ==
      [("cairn_bogus_seconds_bucket", {"job"})], "series_in finds a series inside functions",
      str(series_in('sum by (le) (rate(cairn_bogus_seconds_bucket{job="x"}[5m])) > 3 * 3600')))
check(series_in("time() - cairn_job_last_commit_timestamp_seconds > 6 * 3600") ==
      [("cairn_job_last_commit_timestamp_seconds", set())], "series_in skips functions and numbers")

# --- promtool on the rules, their unit tests and the scrape config.
promtool("check", "rules", RULES)
promtool("test", "rules", "cairn-alerts.test.yml")
promtool("check", "config", "prometheus.yml")

# --- every expression.
rules = yaml.safe_load(open(RULES))
exprs = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
check(len(exprs) >= 5, "the rules file has its alerts")
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
for want, series in (("CairnNoRecentCheckpoint", "cairn_job_last_commit_timestamp_seconds"),
                     ("CairnCheckpointAbortsRising", "cairn_aborts_total"),
                     ("CairnWriterDown", "cairn_writer_heartbeat_age_seconds"),
                     ("CairnStorageErrors", "cairn_storage_errors_total")):
    rule = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == want]
    check(rule and series in rule[0]["expr"], f"alert {want} reads {series}")

dashboard = json.load(open(DASHBOARD))
check(dashboard.get("title") and dashboard.get("uid"), "the dashboard has a title and uid")
panels = [p for p in dashboard["panels"] if p["type"] != "row"]
check(len(panels) >= 8, "the dashboard has its panels")
ids = [p["id"] for p in dashboard["panels"]]
check(len(ids) == len(set(ids)), "panel ids are unique")
for p in panels:
    check(p.get("targets"), f"panel {p['title']!r} has queries")
    for t in p.get("targets", []):
        exprs.append((f"panel {p['title']!r}", t["expr"]))

with tempfile.TemporaryDirectory() as tmp, Cluster(tmp, writers=1) as c:
    f = c.tensor_file(4096)
    c.cairn("save", "--job=dash", "--step=1", "--from=" + f)
    c.cairn("save", "--job=dash", "--step=2", "--from=" + f, "--shard=0/2")
    c.cairn("rollback", "--job=dash", "--to=1")
    # A refused call: cairn_rpc_errors_total{method,code} exists from the first error.
    c.cairn("save", "--job=dash", "--step=0", "--from=" + f, check=False)
    exported = {}   # series name -> label names seen
    for url in (c.coordinator_http, c.writers[0].http):
        text = c.get(url + "/metrics")
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
            exported.setdefault(m.group(1), set()).update(re.findall(r'([a-zA-Z_]\w*)="', m.group(3) or ""))
# Prometheus adds these to every scraped series.
TARGET_LABELS = {"instance", "job", "le"}
for where, expr in exprs:
    found = series_in(expr)
    check(found, f"{where}: the expression names a series: {expr}")
    names = {n for n, _ in found}
    for name, labels in found:
        check(name in exported, f"{where}: {name} is a series Cairn exports ({expr})")
        missing = labels - exported.get(name, set()) - TARGET_LABELS
        check(not missing, f"{where}: {name} has the labels {sorted(missing)} ({expr})")
    have = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS
    check(grouping_labels(expr) <= have, f"{where}: grouped by labels the series carry ({expr})")

check.finish()
