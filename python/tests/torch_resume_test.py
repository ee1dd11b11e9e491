#!/usr/bin/env python3
"""Kill-and-resume test of python/examples/train_resume.py (ctest: python_torch_resume_test).

Starts a local cluster, runs 2 worker processes that checkpoint every 5 steps
through Cairn, SIGKILLs both at a seeded random step after the first
committed checkpoint, restarts them (they restore the newest committed step),
lets them finish step 30, and checks their final weights — and the step-30
checkpoint restored through Cairn — are bit-identical to an uninterrupted run.

Exit 77 (ctest: skipped) if /usr/bin/python3 cannot import torch.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import torch  # noqa: F401
except ImportError as e:
    print(f"missing dependency: torch ({sys.executable} cannot import it: {e}; install python3-torch)",
          flush=True)
    sys.exit(77)

import numpy as np

import cairn
from cluster_util import SOURCE_DIR, Cluster, check

EXAMPLE = os.path.join(SOURCE_DIR, "python", "examples", "train_resume.py")
SEED = int(os.environ.get("CAIRN_TEST_SEED", "20261122"))
STEPS, EVERY = 30, 5


SPAWNED = []  # worker processes, killed on the way out if still running


def start_worker(cluster, job, worker, out, delay):
    p = subprocess.Popen(
        [sys.executable, EXAMPLE, f"--coordinator={cluster.addr}", f"--job={job}",
         f"--worker={worker}", "--num-workers=2", f"--steps={STEPS}", f"--every={EVERY}",
         f"--step-delay={delay}", f"--out={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    SPAWNED.append(p)
    return p


def finish(procs, timeout=180):
    logs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        logs.append(out)
        check(p.returncode == 0, f"worker exited {p.returncode}:\n{out}")
    return logs


def main():
    rng = random.Random(SEED)
    kill_at = rng.randint(EVERY + 1, STEPS - 8)  # worker 0's step when we kill
    print(f"seed {SEED}: kill both workers once worker 0 reached step {kill_at} "
          f"and a checkpoint is committed", flush=True)
    tmp = tempfile.mkdtemp(prefix="cairn-torch-")
    try:
        return run(tmp, kill_at)
    finally:
        for p in SPAWNED:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, kill_at):
    ref = os.path.join(tmp, "ref.npz")
    subprocess.run([sys.executable, EXAMPLE, "--reference", f"--out={ref}"], check=True,
                   stdout=subprocess.DEVNULL)
    reference = dict(np.load(ref))

    with Cluster(writers=2, prefix="cairn-torch-cluster-") as cluster:
        client = cairn.connect(cluster.addr)
        job = "torch-resume"
        outs = [os.path.join(tmp, f"w{i}.npz") for i in range(2)]

        # Run 1: killed mid-training.
        procs = [start_worker(cluster, job, i, outs[i], 0.3) for i in range(2)]
        deadline = time.time() + 120
        for line in procs[0].stdout:
            sys.stdout.write("  run1 " + line)
            if line.startswith("worker 0: step "):
                step = int(line.split()[3])
                if step >= kill_at and client.latest(job) is not None:
                    break
            check(time.time() < deadline, "run 1 too slow")
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
            p.stdout.close()
        check(all(p.returncode == -signal.SIGKILL for p in procs), "workers were not killed")
        check(not any(os.path.exists(o) for o in outs), "a worker finished before the kill")
        # A commit whose shards were all durable may still be finishing:
        # wait until the newest committed step is stable.
        latest = client.latest(job).step
        while True:
            time.sleep(0.5)
            now = client.latest(job).step
            if now == latest:
                break
            latest = now
        print(f"killed at worker 0 step >= {kill_at}; newest committed step {latest}", flush=True)
        check(EVERY <= latest < STEPS, f"unexpected newest step {latest}")

        # Run 2: resume from the newest committed step, finish.
        procs = [start_worker(cluster, job, i, outs[i], 0.0) for i in range(2)]
        logs = finish(procs)
        for i, log in enumerate(logs):
            sys.stdout.write("".join("  run2 " + l + "\n" for l in log.splitlines()[:2]))
            # From the newest committed step — or a newer one, if the other
            # worker's restart completed a checkpoint whose other shard was
            # saved before the kill.
            first = log.splitlines()[0] if log else ""
            check(first.startswith(f"worker {i}: resumed from step "), f"worker {i} did not resume:\n{log}")
            resumed = int(first.split()[-1])
            check(resumed >= latest and resumed % EVERY == 0, f"worker {i} resumed from {resumed}")

        steps = [c.step for c in client.list(job)]
        check(steps[-1] == STEPS and all(s % EVERY == 0 for s in steps), f"steps {steps}")
        restored = client.restore(job, STEPS)

    for i, out in enumerate(outs):
        got = dict(np.load(out))
        check(got.keys() == reference.keys(), f"worker {i}: tensors {sorted(got)}")
        for name, want in reference.items():
            check(got[name].dtype == want.dtype and got[name].tobytes() == want.tobytes(),
                  f"worker {i}: {name} differs from the uninterrupted run")
            check(restored[f"model/{name}"].tobytes() == want.tobytes(),
                  f"checkpoint step {STEPS}: model/{name} differs")
    check(any(k.startswith("optim/") for k in restored), "no optimizer state in the checkpoint")
    print(f"OK: resumed from step {latest}; final weights of both workers and of checkpoint "
          f"{STEPS} are bit-identical to the uninterrupted run ({len(reference)} tensors)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
