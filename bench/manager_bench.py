#!/usr/bin/env python3
"""CheckpointManager figure: a state_dict of many small tensors vs the same
bytes as a few large ones (issue 15: at most 1.5x the time).

Starts a local cluster (deploy/local/cluster.sh, 2 writers) in a temp folder
unless --coordinator is given, then saves, through cairn.CheckpointManager
(synchronous saves: each returns once the checkpoint is committed), a
{name: torch tensor} state of --small tensors and one of --large tensors
holding the same total --mib, taking turns for --rounds rounds (order
alternating). Prints the median time of each and the median per-round ratio
small / large. A figure, not a test.

  PYTHONPATH=build/python /usr/bin/python3 bench/manager_bench.py [--mib=64] [--small=10000] [--large=10] [--rounds=6]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cairn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def state(n, total_bytes, torch):
    per = max(1, total_bytes // 4 // n)
    return {f"layers.{i}.weight": torch.full((per,), float(i)) for i in range(n)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator", help="HOST:PORT (default: start a local cluster)")
    p.add_argument("--mib", type=float, default=64)
    p.add_argument("--small", type=int, default=10000)
    p.add_argument("--large", type=int, default=10)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    import torch
    torch.set_num_threads(1)

    tmp = None
    addr = args.coordinator
    if addr is None:
        tmp = tempfile.mkdtemp(prefix="cairn-mgr-bench-")
        env = dict(os.environ, CAIRN_BIN_DIR=os.environ.get("CAIRN_BIN_DIR", os.path.join(ROOT, "build", "bin")))
        addr = subprocess.run([os.path.join(ROOT, "deploy", "local", "cluster.sh"), "start", tmp, "2"],
                              env=env, check=True, stdout=subprocess.PIPE, text=True).stdout.split()[-1]
    try:
        total = int(args.mib * (1 << 20))
        states = {"small": state(args.small, total, torch), "large": state(args.large, total, torch)}
        job = f"mgr-bench-{os.getpid()}"
        mgrs = {k: cairn.CheckpointManager(addr, job=f"{job}-{k}", async_save=False, max_to_keep=1)
                for k in states}
        times = {k: [] for k in states}
        ratios = []
        for r in range(args.rounds + 1):  # round 0 warms up
            order = ["small", "large"] if r % 2 == 0 else ["large", "small"]
            took = {}
            for k in order:
                t0 = time.perf_counter()
                mgrs[k].save(r + 1, {"model": states[k]}, force=True)
                took[k] = time.perf_counter() - t0
            if r > 0:
                for k in took:
                    times[k].append(took[k])
                ratios.append(took["small"] / took["large"])
        # The manager's own work before the native save, for the small
        # state (names, save items, the JSON structure: CheckpointManager._items),
        # with warm caches: between the saves above, the 64 MiB of data
        # evicts them.
        from cairn import manager
        python_s = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with manager._gc_paused():
                mgrs["small"]._items({"model": states["small"]})
            python_s.append(time.perf_counter() - t0)
        for m in mgrs.values():
            m.close()
        mib = total / (1 << 20)
        print(f"| figure | small ({args.small} tensors) | large ({args.large} tensors) | ratio | target | met? |")
        print("|---|---|---|---|---|---|")
        ratio = statistics.median(ratios)
        print(f"| manager save of a {mib:.0f} MiB state_dict, committed | "
              f"{statistics.median(times['small']):.3f} s | {statistics.median(times['large']):.3f} s | "
              f"{ratio:.2f}x | <= 1.5x | {'yes' if ratio <= 1.5 else 'no'} |")
        print(f"(of the small save, the manager's Python layer, warm: {statistics.median(python_s):.3f} s)")
    finally:
        if tmp is not None:
            subprocess.run([os.path.join(ROOT, "deploy", "local", "cluster.sh"), "stop", tmp], check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
