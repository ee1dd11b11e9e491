#!/usr/bin/python3
"""PyTorch baseline for bench/run.sh (figure 3).

Reads the tensor sizes checkpoint_bench wrote (lines "WORKER NAME BYTES"),
creates the same float32 tensors with torch, and times, per repeat:
  save: torch.save of each worker's dict to its own file + flush + fsync,
        one worker after the other (as 4 ranks calling torch.save would write);
  load: torch.load of those files back into memory.
Prints one JSON object (medians and all runs, in seconds) on stdout.

  /usr/bin/python3 bench/torch_baseline.py SIZES_FILE DIR [REPEATS]
"""
import json
import os
import statistics
import sys
import time

import torch


def main():
    sizes_file, out_dir = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
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
    paths = {w: os.path.join(out_dir, "worker%d.pt" % w) for w in state}

    def touch():  # every page resident again before timing
        s = 0.0
        for d in state.values():
            for t in d.values():
                s += float(t[:: 1024].sum())
        return s

    def save():
        t0 = time.perf_counter()
        for w, d in state.items():
            with open(paths[w], "wb") as f:
                torch.save(d, f)
                f.flush()
                os.fsync(f.fileno())
        return time.perf_counter() - t0

    def plain():  # the same bytes with plain write + fsync, same window as torch
        t0 = time.perf_counter()
        for w, d in state.items():
            with open(paths[w] + ".raw", "wb") as f:
                for t in d.values():
                    f.write(memoryview(t.numpy()))
                f.flush()
                os.fsync(f.fileno())
        secs = time.perf_counter() - t0
        for w in state:
            os.remove(paths[w] + ".raw")
        return secs

    def load():
        t0 = time.perf_counter()
        out = [torch.load(paths[w]) for w in state]
        secs = time.perf_counter() - t0
        n = sum(t.numel() * 4 for d in out for t in d.values())
        assert n == total, (n, total)
        return secs

    print("[torch] %d tensors, %d MiB, torch %s" % (sum(len(d) for d in state.values()),
          total >> 20, torch.__version__), file=sys.stderr)
    touch()
    save()  # warm-up
    load()
    saves, loads, plains = [], [], []
    for r in range(repeats):
        os.sync()
        touch()
        saves.append(save())
        loads.append(load())
        os.sync()
        touch()
        plains.append(plain())
        print("[torch] run %d: save %.3f s, load %.3f s, plain write+fsync %.3f s"
              % (r + 1, saves[-1], loads[-1], plains[-1]), file=sys.stderr)
    for p in paths.values():
        os.remove(p)
    print(json.dumps({"torch_version": torch.__version__, "bytes": total,
                      "save_s": statistics.median(saves), "load_s": statistics.median(loads),
                      "plain_write_s": statistics.median(plains), "plain_write_runs": plains,
                      "save_runs": saves, "load_runs": loads}))


if __name__ == "__main__":
    main()
