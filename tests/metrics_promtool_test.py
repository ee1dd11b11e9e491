#!/usr/bin/env python3
"""/metrics of a live coordinator and a live writer, after saves, an abort,
a refused save and a dead writer, passes `promtool check metrics` (the
Prometheus text-format parser and its naming lints: _total counters, base
units, HELP on every family), and carries the series operators alert on,
with values that are right.

Skips ("missing dependency: promtool", exit 77) when promtool is absent,
unless CI=true. Prints 'N passed, N failed'; exit 1 on any failure."""
import os, re, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "testing"))
from cairn_cluster import Checks, Cluster, promtool as find_promtool  # noqa: E402

PROMTOOL = find_promtool()

check = Checks()


def samples(text):
    """{series (name and labels as printed): value}"""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def promtool(text, what):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          f"promtool check metrics accepts the {what}'s /metrics without a lint",
          r.stdout + r.stderr)


with tempfile.TemporaryDirectory() as tmp, \
        Cluster(tmp, writers=2, coordinator_flags=["--writer-timeout=3", "--heartbeat-interval=0.5"]) as c:
    f = c.tensor_file(4096)
    for step in (1, 2):
        c.cairn("save", "--job=metered", f"--step={step}", "--from=" + f)
    c.cairn("save", "--job=metered", "--step=3", "--from=" + f, "--shard=0/2")
    c.cairn("rollback", "--job=metered", "--to=2")           # step 3 aborted: reason "rollback"
    refused = c.cairn("save", "--job=metered", "--step=1", "--from=" + f, check=False)
    check(refused.returncode != 0, "a save below the newest step is refused")
    # A writer that stops: its heartbeat age grows past the writer timeout.
    dead = c.add_writer()
    c.wait_for_live_writers(3)
    dead_address = dead.address
    dead.stop()
    time.sleep(3)

    coordinator = c.get(c.coordinator_http + "/metrics")
    promtool(coordinator, "coordinator")
    s = samples(coordinator)
    check(s.get("cairn_commits_total") == 2, "cairn_commits_total 2", coordinator)
    check(s.get('cairn_aborts_total{reason="rollback"}') == 1, "one abort by rollback", coordinator)
    check(abs(s.get('cairn_job_last_commit_timestamp_seconds{job="metered"}', 0) - time.time()) < 120,
          "the job's last commit time is recent")
    check(abs(s.get("process_start_time_seconds", 0) - time.time()) < 600, "process_start_time_seconds")
    check(any(k.startswith('cairn_build_info{component="coordinator"') for k in s), "coordinator build info")
    check(s.get('cairn_commit_seconds_bucket{le="0.004"}') is not None, 'le="0.004", as Prometheus prints it')
    ages = {re.search(r'writer="([^"]+)"', k).group(1): v for k, v in s.items()
            if k.startswith("cairn_writer_heartbeat_age_seconds{")}
    check(len(ages) == 3, "a heartbeat age for each of the 3 writers", coordinator)
    check(ages.get(dead_address, 0) >= 3, f"the stopped writer's heartbeat age grows ({ages})")
    live = [v for a, v in ages.items() if a != dead_address]
    check(live and max(live) < 2.5, f"the live writers' heartbeat ages stay near their 0.5 s interval ({ages})")
    check(s.get('cairn_storage_errors_total{component="coordinator",op="rename"}') == 0,
          "storage errors are exported at zero", coordinator)
    # Scrape-time: a second scrape later sees an older age.
    time.sleep(1.0)
    again = samples(c.get(c.coordinator_http + "/metrics"))
    check(again.get(f'cairn_writer_heartbeat_age_seconds{{writer="{dead_address}"}}', 0) >= ages.get(dead_address, 0) + 0.9,
          "the heartbeat age is computed at scrape time")
    # Every family follows Prometheus' naming: a counter ends in _total, a
    # time is in _seconds, a size in _bytes.
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", coordinator, re.M):
        name, kind = m.groups()
        if kind == "counter":
            check(name.endswith("_total"), f"counter {name} ends in _total")
        check(not re.search(r"_(ms|millis|micros|kb|mb|kib|mib)(_|$)", name), f"{name} uses base units")

    writer = c.get(c.writers[0].http + "/metrics")
    promtool(writer, "writer")
    w = samples(writer)
    check(any(k.startswith('cairn_build_info{component="writer"') for k in w), "writer build info", writer)
    for name in ("cairn_writer_bytes_received_total", "cairn_writer_bytes_written_total",
                 "cairn_writer_active_streams", "cairn_writer_shard_save_seconds_count",
                 "cairn_writer_batched_tensors_total",
                 'cairn_writer_errors_total{code="INVALID_ARGUMENT"}',
                 'cairn_storage_errors_total{component="writer",op="append"}'):
        check(name in w, f"the writer exports {name}", writer)
    # The writers' heartbeats carry their bytes written to the coordinator.
    jobs = c.get_json("/api/jobs")
    total = sum(x["bytes_written"] for x in jobs["writers"] if x["address"] != dead_address)
    on_writers = sum(samples(c.get(x.http + "/metrics"))["cairn_writer_bytes_written_total"] for x in c.writers)
    check(total == on_writers and total >= 3 * 4096,
          f"bytes written on the status page ({total}) match the writers' own counters ({on_writers})")

check.finish()
