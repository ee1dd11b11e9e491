#!/usr/bin/env python3
"""Orbax side by side: the same JAX pytree saved and restored with Orbax's
CheckpointManager (local disk, its defaults, async) and with
cairn.CheckpointManager (a local cluster: coordinator + 2 writers, async).

For --rounds rounds (plus a warm-up round), in alternating order, each side:
  save:    manager.save(step, state) returns (the async stall: what training
           waits for; neither copies: jax arrays are immutable, so Cairn's
           manager streams from them on a thread, as Orbax keeps references
           to them), then wait_until_finished() (durable: Orbax's
           finalized step directory; Cairn's committed checkpoint, every
           byte CRC32C'd by the writers, fsynced).
  restore: the step just saved, back into host memory (Orbax: jax arrays
           from StandardRestore; Cairn: NumPy arrays, every CRC checked).
Prints medians, and for each figure the median over rounds of orbax/cairn
(each pair timed back to back), against the target cairn >= 1.5x faster.
Both sides restore from the page cache (the files were just written).

What Orbax verifies by default (orbax-checkpoint 0.12.8 source,
serialization/tensorstore_utils.py): OCDBT + zarr v2 arrays compressed with
zstd level 1; no checksum over the array bytes (zarr v3, not the default,
adds a CRC32C over each shard's index only). Cairn checks a CRC32C per
tensor on every restore.

Needs the test environment's python (scripts/pyenv.sh: jax, orbax) and a
build (build/python, build/bin). Not a test, not in CI:
  bench/orbax_bench.sh [--gib=2] [--rounds=3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cairn  # before jax/tensorflow (see cairn/__init__.py on symbol scopes)
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def make_state(gib):
    """A transformer-ish pytree: float32 weights and bfloat16 copies,
    ~gib GiB in 8-64 MiB leaves."""
    import jax.numpy as jnp
    total = int(gib * (1 << 30))
    rng = np.random.default_rng(0)
    state = {"params": {}, "bf16": {}}
    i, used = 0, 0
    while used < total:
        n = (64 << 20) // 4 if i % 2 == 0 else (8 << 20) // 4
        if i % 4 == 3:   # a quarter of the leaves bfloat16
            a = jnp.asarray(rng.standard_normal(n * 2, dtype=np.float32), dtype=jnp.bfloat16)
            state["bf16"][f"layer{i}"] = a.reshape(-1, 1024)
            used += n * 4
        else:
            a = jnp.asarray(rng.standard_normal(n, dtype=np.float32))
            state["params"][f"layer{i}"] = {"w": a.reshape(-1, 1024)}
            used += n * 4
        i += 1
    for leaf in _leaves(state):
        leaf.block_until_ready()
    return state, used


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="scratch folder (default: a temp dir under /tmp)")
    args = p.parse_args()
    import jax
    import orbax.checkpoint as ocp

    scratch = tempfile.mkdtemp(prefix="cairn-orbax-bench-", dir=args.dir)
    cluster = os.path.join(scratch, "cluster")
    env = dict(os.environ, CAIRN_BIN_DIR=os.environ.get("CAIRN_BIN_DIR", os.path.join(ROOT, "build", "bin")))
    cluster_sh = os.path.join(ROOT, "deploy", "local", "cluster.sh")
    addr = subprocess.run([cluster_sh, "start", cluster, "2"], env=env, check=True,
                          stdout=subprocess.PIPE, text=True).stdout.split()[-1]
    t_start = time.perf_counter()
    try:
        state, nbytes = make_state(args.gib)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        orbax = ocp.CheckpointManager(
            os.path.join(scratch, "orbax"),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=True))
        mgr = cairn.CheckpointManager(addr, job="orbax-bench", max_to_keep=1, async_save=True)

        def orbax_round(step):
            t0 = time.perf_counter()
            orbax.save(step, args=ocp.args.StandardSave(state))
            stall = time.perf_counter() - t0
            orbax.wait_until_finished()
            durable = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = orbax.restore(step, args=ocp.args.StandardRestore(abstract))
            for leaf in _leaves(out):
                leaf.block_until_ready()
            restore = time.perf_counter() - t0
            del out
            return stall, durable, restore

        def cairn_round(step):
            t0 = time.perf_counter()
            mgr.save(step, state, force=True)   # jax arrays: immutable, no staging copy
            stall = time.perf_counter() - t0
            mgr.wait_until_finished()
            durable = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = mgr.restore(step)
            restore = time.perf_counter() - t0
            del out
            return stall, durable, restore

        figures = ("stall", "durable", "restore")
        times = {side: {f: [] for f in figures} for side in ("orbax", "cairn")}
        ratios = {f: [] for f in figures}
        for r in range(args.rounds + 1):   # round 0 warms up (page cache, allocators, jit)
            order = [("orbax", orbax_round), ("cairn", cairn_round)]
            if r % 2:
                order.reverse()
            took = {side: fn(r + 1) for side, fn in order}
            print(f"[orbax_bench] round {r}{' (warm-up)' if r == 0 else ''}: " + ", ".join(
                f"{side} " + "/".join(f"{x:.2f}" for x in took[side]) for side in took),
                file=sys.stderr)
            if r == 0:
                continue
            for side in took:
                for f, x in zip(figures, took[side]):
                    times[side][f].append(x)
            for i, f in enumerate(figures):
                ratios[f].append(took["orbax"][i] / took["cairn"][i])
        mgr.close()
        orbax.close()

        gb = nbytes / 1e9
        label = {"stall": "async save stall", "durable": "save until durable",
                 "restore": "restore to host memory"}
        print(f"| figure ({nbytes / (1 << 30):.2f} GiB JAX pytree, float32 + bfloat16) | cairn | "
              f"orbax {ocp.__version__} | ratio (orbax/cairn) | target | met? |")
        print("|---|---|---|---|---|---|")
        for f in figures:
            c, o = statistics.median(times["cairn"][f]), statistics.median(times["orbax"][f])
            show = (lambda s: f"{s * 1e3:.1f} ms") if f == "stall" else \
                (lambda s: f"{s:.2f} s ({gb / s:.2f} GB/s)")
            ratio = statistics.median(ratios[f])
            print(f"| {label[f]} | {show(c)} | {show(o)} | {ratio:.2f} | >= 1.5 | "
                  f"{'yes' if ratio >= 1.5 else 'NO'} |")
        print(f"medians of {args.rounds} rounds after a warm-up; ratios: median of per-round pairs "
              f"timed back to back; jax {jax.__version__}, {os.cpu_count()} CPUs; "
              f"benchmark time {time.perf_counter() - t_start:.0f} s")
        print("Orbax by default (OCDBT, zarr v2, zstd level 1) writes no checksum over the array "
              "bytes; Cairn checks a CRC32C per tensor on every restore and the writers keep a "
              "CRC32C per file (and a SHA-256 with --inventory-sha256=true).")
    finally:
        subprocess.run([cluster_sh, "stop", cluster], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
