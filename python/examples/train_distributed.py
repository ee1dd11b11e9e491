#!/usr/bin/env python3
"""Distributed PyTorch training checkpointed by cairn.CheckpointManager; resume on any world size.

A small model — an embedding table (a bag of ids -> mean row) followed by a
2-layer MLP — is trained by WORLD_SIZE processes in a torch.distributed gloo
group. The embedding table is row-partitioned: rank r owns rows
[r*N/W, (r+1)*N/W) and their Adam state; the MLP is replicated. Each step
the ranks all-gather the table, every rank computes the same loss and
gradients on the same minibatch, and each applies Adam to the MLP and to
its own rows only (Adam is elementwise, so the result does not depend on
the partitioning: the run is bit-identical on any world size).

Every --every steps the ranks save one checkpoint together, asynchronously:
the MLP and its Adam state are written once (whole tensors, by the rank the
manager picks), the table and its Adam moments as cairn.Shard slices by
every rank. On start, the ranks resume from the newest committed step:
each restores exactly its own rows — whatever world size saved them.

  # 2 processes on this machine (torchrun sets the same variables):
  for r in 0 1; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \\
      python3 train_distributed.py --coordinator=127.0.0.1:7070 --job=demo --out=r$r.npz & done
  python3 train_distributed.py --reference --out=ref.npz     # 1 process, no Cairn, no interruption

Training is bit-reproducible on CPU: one thread, deterministic algorithms,
fixed seeds, minibatches drawn from a generator seeded by the step number.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

ROWS, DIM = 24, 4
STEPS, EVERY = 30, 5


def row_range(rank, world_size):
    return rank * ROWS // world_size, (rank + 1) * ROWS // world_size


def make_mlp():
    torch.manual_seed(1234)
    return torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def initial_table():
    return torch.randn(ROWS, DIM, generator=torch.Generator().manual_seed(99))


def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, ROWS, (32, 3), generator=g)
    y = torch.sin(ids.float().sum(dim=1, keepdim=True)) + 0.1 * torch.randn(32, 1, generator=g)
    return ids, y


class Trainer:
    """One rank's part of the model and optimizer."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size
        self.lo, self.hi = row_range(rank, world_size)
        self.mlp = make_mlp()
        self.rows = torch.nn.Parameter(initial_table()[self.lo:self.hi].clone())
        # foreach=False: the per-tensor elementwise update (bit-identical for
        # a row whichever slice of the table it is in).
        self.opt = torch.optim.Adam(list(self.mlp.parameters()) + [self.rows], lr=0.05,
                                    foreach=False)
        self.rows_index = len(list(self.mlp.parameters()))  # the table's index in opt state

    def full_table(self):
        if self.world_size == 1:
            return self.rows.detach().clone()
        # all_gather needs equal sizes: pad every part to the largest.
        most = max(hi - lo for lo, hi in (row_range(r, self.world_size) for r in range(self.world_size)))
        mine = torch.zeros(most, DIM)
        mine[:self.hi - self.lo] = self.rows.detach()
        parts = [torch.zeros(most, DIM) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        return torch.cat([parts[r][:hi - lo] for r, (lo, hi) in
                          enumerate(row_range(r, self.world_size) for r in range(self.world_size))])

    def step(self, step):
        table = self.full_table().requires_grad_()
        ids, y = batch(step)
        self.opt.zero_grad()
        loss = torch.nn.functional.mse_loss(self.mlp(table[ids].mean(dim=1)), y)
        loss.backward()
        self.rows.grad = table.grad[self.lo:self.hi].clone()
        self.opt.step()
        return float(loss)

    def shard(self, local):
        return cairn.Shard(local, [ROWS, DIM], [self.lo, 0])

    def state(self, step, loss):
        """What a checkpoint holds: this rank's view, the table as slices."""
        optimizer = self.opt.state_dict()
        rows_state = optimizer["state"].get(self.rows_index)
        if rows_state is not None:  # the table's Adam moments: slices too
            optimizer["state"][self.rows_index] = dict(
                rows_state, exp_avg=self.shard(rows_state["exp_avg"]),
                exp_avg_sq=self.shard(rows_state["exp_avg_sq"]))
        return {"mlp": self.mlp.state_dict(), "table": self.shard(self.rows.data),
                "optimizer": optimizer, "step": step, "loss": loss}

    def load(self, restored):
        """Loads what CheckpointManager.restore gave for this rank's target."""
        with torch.no_grad():
            self.rows.copy_(restored["table"])
        self.opt.load_state_dict(restored["optimizer"])

    def restore_target(self):
        """This rank's rows (and their Adam moments) as slices to fill."""
        empty = lambda: self.shard(torch.zeros(self.hi - self.lo, DIM))  # noqa: E731
        return {"mlp": self.mlp.state_dict(), "table": empty(),
                "optimizer": {"state": {self.rows_index: {"exp_avg": empty(), "exp_avg_sq": empty()}}}}

    def final(self, loss):
        """Everything a run ends with, gathered (for bit-for-bit comparison)."""
        out = {f"mlp/{k}": v.detach().numpy().copy() for k, v in self.mlp.state_dict().items()}
        out["table"] = self.full_table().numpy()
        for idx, st in self.opt.state_dict()["state"].items():
            for key, value in st.items():
                if idx == self.rows_index and key != "step":
                    value = self.gather_rows(value)
                out[f"opt/{idx}/{key}"] = value.detach().numpy().copy()
        out["loss"] = np.array(loss)
        return out

    def gather_rows(self, local):
        saved = self.rows.data
        self.rows.data = local
        try:
            return self.full_table()
        finally:
            self.rows.data = saved


def resume_step(mgr, rank):
    """The newest committed step, the same on every rank (rank 0 decides).
    Rank 0 also rolls the job back to it: that aborts the saves a killed
    run left pending above it (they were begun with the old world size, and
    would refuse this run's shards of the same step)."""
    decided = [None]
    if rank == 0:
        for _ in range(100):
            step = mgr.latest_step()
            if step is None:
                break
            try:
                mgr.rollback(step)
                break
            except cairn.Error as e:
                if e.code != "UNAVAILABLE":  # a commit under way: wait for it
                    raise
                time.sleep(0.1)
        decided = [step]
    if dist.is_initialized():
        dist.broadcast_object_list(decided, src=0)
    return decided[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator")
    p.add_argument("--job", default="torch-dist-demo")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--every", type=int, default=EVERY)
    p.add_argument("--step-delay", type=float, default=0.0,
                   help="seconds to sleep per step (lets a test kill us mid-run)")
    p.add_argument("--reference", action="store_true", help="1 process, no Cairn, uninterrupted")
    p.add_argument("--out", required=True, help="final state (.npz), written by every rank")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    world_size = 1 if args.reference else int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        dist.init_process_group("gloo")  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank = dist.get_rank() if dist.is_initialized() else 0
    trainer = Trainer(rank, world_size)

    mgr = None
    start = 0
    if not args.reference:
        global cairn
        import cairn
        # rank / world_size come from torch.distributed.
        mgr = cairn.CheckpointManager(args.coordinator, job=args.job, max_to_keep=3,
                                      save_interval_steps=args.every, async_save=True)
        step = resume_step(mgr, rank)
        if step is not None:
            trainer.load(mgr.restore(step, trainer.restore_target()))
            start = step
            print(f"rank {rank}/{world_size}: resumed from step {start}", flush=True)

    loss = None
    for step in range(start + 1, args.steps + 1):
        loss = trainer.step(step)
        print(f"rank {rank}: step {step} loss {loss:.6f}", flush=True)
        if mgr is not None and mgr.should_save(step):
            mgr.save(step, trainer.state(step, loss), metrics={"loss": loss})
        if args.step_delay:
            time.sleep(args.step_delay)
    if mgr is not None:
        mgr.close()  # waits for the last save
    final = trainer.final(loss)
    np.savez(args.out, **final)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    print(f"rank {rank}: done, final loss {loss:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
