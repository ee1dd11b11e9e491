#!/usr/bin/python3
"""PyTorch baseline for the checkpoint benchmark (figure 3), as a coprocess.

checkpoint_bench starts this with the tensor sizes it saves (lines
"WORKER NAME BYTES") and drives it over stdin/stdout, so torch runs take turns
with Cairn's runs inside the same minutes (this machine's disk drifts by a
factor of 5 between minutes; baselines timed in another window mean nothing).

  /usr/bin/python3 bench/torch_baseline.py SIZES_FILE DIR

Creates the same float32 tensors with torch, prints "ready TORCH_VERSION",
then answers each command line with one line:
  save   torch.save of each worker's dict to its own new file + flush + fsync,
         one worker after the other (as 4 ranks calling torch.save would
         write), every page of the state touched first -> "SECONDS". New
         files, as a job saving ckpt-STEP.pt writes: on this VM writing new
         blocks costs 2.5x overwriting an existing file's (thin disk, ext4
         with discard), which Cairn's and the plain baseline's new files pay.
  load   torch.load of the files the last save wrote -> "SECONDS"
  quit   removes the files and exits.
"""
import os
import sys
import time

import torch


def main():
    sizes_file, out_dir = sys.argv[1], sys.argv[2]
    workers = {}
    for line in open(sizes_file):
        w, name, nbytes = line.split()
        workers.setdefault(int(w), []).append((name, int(nbytes)))
    torch.manual_seed(0)
    state = {}
    total = 0
    for w, tensors in sorted(workers.items()):
        d = {}
        for name, nbytes in tensors:
            d[name] = torch.rand(nbytes // 4, dtype=torch.float32)
            total += nbytes
        state[w] = d
    os.makedirs(out_dir, exist_ok=True)
    saves = [0]

    def paths(n):  # a new file per save, as a job saving ckpt-STEP.pt writes
        return {w: os.path.join(out_dir, "step%d-worker%d.pt" % (n, w)) for w in state}

    def touch():  # every page resident again before timing
        s = 0.0
        for d in state.values():
            for t in d.values():
                s += float(t[::1024].sum())
        return s

    def save():
        os.sync()
        touch()
        saves[0] += 1
        t0 = time.perf_counter()
        for w, d in state.items():
            with open(paths(saves[0])[w], "wb") as f:
                torch.save(d, f)
                f.flush()
                os.fsync(f.fileno())
        secs = time.perf_counter() - t0
        if saves[0] > 1:  # the previous save's files go, after the timing
            for p in paths(saves[0] - 1).values():
                os.remove(p)
        return secs

    def load():
        t0 = time.perf_counter()
        out = [torch.load(p) for p in paths(saves[0]).values()]
        secs = time.perf_counter() - t0
        n = sum(t.numel() * 4 for d in out for t in d.values())
        assert n == total, (n, total)
        return secs

    print("[torch] %d tensors, %d MiB, torch %s" % (sum(len(d) for d in state.values()),
          total >> 20, torch.__version__), file=sys.stderr)
    print("ready %s" % torch.__version__, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "save":
            print("%.6f" % save(), flush=True)
        elif cmd == "load":
            print("%.6f" % load(), flush=True)
        elif cmd == "quit":
            break
        else:
            print("error unknown command %r" % cmd, flush=True)
    for p in paths(saves[0]).values():
        if os.path.exists(p):
            os.remove(p)


if __name__ == "__main__":
    main()
