#!/usr/bin/env python3
"""2 -> 3 process kill-and-resume of python/examples/train_distributed.py
(ctest: python_torch_distributed_resume_test).

Starts a local cluster, runs the example on 2 processes (a gloo group on
127.0.0.1) that checkpoint every 5 steps through cairn.CheckpointManager
(async; the embedding table row-partitioned across the ranks), SIGKILLs
both at a seeded random step after the first committed checkpoint, resumes
on 3 processes from the newest committed step, and checks:
- every rank of the resumed run ends with model, embedding table, Adam state
  and final loss bit-identical to an uninterrupted 1-process run;
- the final checkpoint, restored whole through the manager, holds the same
  table and moments as that run.

Exit 77 (ctest: skipped) if /usr/bin/python3 cannot import torch.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import torch  # noqa: F401
    import torch.distributed  # noqa: F401
except ImportError as e:
    print(f"missing dependency: torch ({sys.executable} cannot import it: {e}; install python3-torch)",
          flush=True)
    sys.exit(77)

import numpy as np

import cairn
from cluster_util import SOURCE_DIR, Cluster, check

EXAMPLE = os.path.join(SOURCE_DIR, "python", "examples", "train_distributed.py")
SEED = int(os.environ.get("CAIRN_TEST_SEED", "20261206"))
STEPS, EVERY = 30, 5
SPAWNED = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(cluster, job, world_size, outs, delay):
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        p = subprocess.Popen(
            [sys.executable, EXAMPLE, f"--coordinator={cluster.addr}", f"--job={job}",
             f"--steps={STEPS}", f"--every={EVERY}", f"--step-delay={delay}", f"--out={outs[rank]}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        SPAWNED.append(p)
        procs.append(p)
    return procs


def main():
    rng = random.Random(SEED)
    kill_at = rng.randint(EVERY + 1, STEPS - 8)
    print(f"seed {SEED}: kill both ranks once rank 0 reached step {kill_at} and a checkpoint "
          "is committed; resume on 3", flush=True)
    tmp = tempfile.mkdtemp(prefix="cairn-torch-dist-")
    try:
        return run(tmp, kill_at)
    finally:
        for p in SPAWNED:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, kill_at):
    ref_path = os.path.join(tmp, "ref.npz")
    subprocess.run([sys.executable, EXAMPLE, "--reference", f"--steps={STEPS}", f"--out={ref_path}"],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    reference = dict(np.load(ref_path))

    with Cluster(writers=2, prefix="cairn-torch-dist-cluster-") as cluster:
        client = cairn.connect(cluster.addr)
        job = "torch-dist"

        # Run 1: 2 ranks, killed mid-training.
        outs2 = [os.path.join(tmp, f"two-{r}.npz") for r in range(2)]
        procs = start_ranks(cluster, job, 2, outs2, 0.3)
        deadline = time.time() + 180
        for line in procs[0].stdout:
            sys.stdout.write("  run1 " + line)
            if line.startswith("rank 0: step "):
                if int(line.split()[3]) >= kill_at and client.latest(job) is not None:
                    break
            check(time.time() < deadline, "run 1 too slow")
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
            p.stdout.close()
        check(all(p.returncode == -signal.SIGKILL for p in procs), "ranks were not killed")
        check(not any(os.path.exists(o) for o in outs2), "a rank finished before the kill")
        killed_latest = client.latest(job).step
        print(f"killed; newest committed step {killed_latest}", flush=True)
        check(EVERY <= killed_latest < STEPS, f"unexpected newest step {killed_latest}")
        check(client.get(job, killed_latest).num_shards == 2, "run 1 saved with 2 shards")

        # Run 2: 3 ranks resume from the newest committed step.
        outs3 = [os.path.join(tmp, f"three-{r}.npz") for r in range(3)]
        procs = start_ranks(cluster, job, 3, outs3, 0.0)
        resumed = set()
        logs = [p.communicate(timeout=300)[0] for p in procs]  # every rank's, for a failure
        for rank, p in enumerate(procs):
            log = logs[rank]
            sys.stdout.write("".join("  run2 " + l + "\n" for l in log.splitlines()[:2]))
            others = "".join(f"\n--- rank {r} (exit {q.returncode}):\n{logs[r]}"
                             for r, q in enumerate(procs) if r != rank)
            check(p.returncode == 0, f"rank {rank} exited {p.returncode}:\n{log}{others}")
            first = log.splitlines()[0] if log else ""
            check(first.startswith(f"rank {rank}/3: resumed from step "), f"rank {rank} did not resume:\n{log}")
            resumed.add(int(first.split()[-1]))
        check(len(resumed) == 1, f"ranks resumed from different steps {resumed}")
        step = resumed.pop()
        check(step >= killed_latest and step % EVERY == 0, f"resumed from {step}")
        final = client.get(job, STEPS)
        check(final.num_shards == 3, f"the final checkpoint has {final.num_shards} shards")
        steps = [c.step for c in client.list(job)]
        check(steps[-1] == STEPS and len(steps) <= 3, f"steps {steps} (max_to_keep=3)")

        # The final checkpoint, restored whole (world size 1, no target).
        mgr = cairn.CheckpointManager(cluster.addr, job=job, rank=0, world_size=1)
        saved = mgr.restore(STEPS)
        mgr.close()

    for rank, out in enumerate(outs3):
        got = dict(np.load(out))
        check(got.keys() == reference.keys(), f"rank {rank}: arrays {sorted(got)} vs {sorted(reference)}")
        for name, want in reference.items():
            check(got[name].dtype == want.dtype and got[name].shape == want.shape and
                  got[name].tobytes() == want.tobytes(),
                  f"rank {rank}: {name} differs from the uninterrupted run")
    check(saved["table"].numpy().tobytes() == reference["table"].tobytes(), "checkpoint: table differs")
    rows_index = max(saved["optimizer"]["state"])
    for key in ("exp_avg", "exp_avg_sq"):
        check(saved["optimizer"]["state"][rows_index][key].numpy().tobytes() ==
              reference[f"opt/{rows_index}/{key}"].tobytes(), f"checkpoint: table {key} differs")
    for name, value in saved["mlp"].items():
        check(value.numpy().tobytes() == reference[f"mlp/{name}"].tobytes(), f"checkpoint: mlp/{name}")
    check(isinstance(saved["step"], int) and saved["step"] == STEPS, f"checkpoint step {saved['step']!r}")
    check(saved["loss"] == float(reference["loss"]), "checkpoint: loss differs")
    print(f"OK: 2 ranks killed at step >= {kill_at}, resumed on 3 from step {step}; every rank's "
          f"final state ({len(reference)} arrays, loss {float(reference['loss']):.6f}) and the "
          f"step-{STEPS} checkpoint are bit-identical to the uninterrupted run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
