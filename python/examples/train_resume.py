#!/usr/bin/env python3
"""Train a small PyTorch model, checkpointing through Cairn; resume after a crash.

Two worker processes train the same model (data-parallel replicas: after the
gradient all-reduce every replica holds the same state, so here each simply
computes the full step). Every --every steps each worker saves its shard of
the checkpoint with an async save (training continues while it streams):

  worker 0: the model's state_dict        -> "model/<name>"
  worker 1: the optimizer's state_dict    -> "optim/<param index>/<key>"

On start a worker restores the newest committed checkpoint of the job (if
any) — both shards, model and optimizer — and continues from that step (a
step already committed meanwhile is not saved again); after the last step it
writes the final weights to --out (numpy .npz).

  python3 train_resume.py --coordinator=127.0.0.1:7070 --job=demo --worker=0 --out=w0.npz &
  python3 train_resume.py --coordinator=127.0.0.1:7070 --job=demo --worker=1 --out=w1.npz
  python3 train_resume.py --reference --out=ref.npz      # no Cairn, no interruption

Training is bit-reproducible on CPU: one thread, deterministic algorithms,
fixed seeds, and minibatches drawn from a generator seeded by the step number
(so there is no RNG state to checkpoint).
"""

import argparse
import sys
import time

import numpy as np
import torch

STEPS = 30
EVERY = 5


def make_model():
    torch.manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    return model, optimizer


def dataset():
    g = torch.Generator().manual_seed(42)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, :1] * 0.5 - x[:, 1:2] + 0.1 * torch.randn(256, 1, generator=g))
    return x, y


def train_step(model, optimizer, x, y, step):
    g = torch.Generator().manual_seed(1000 + step)
    idx = torch.randint(0, x.shape[0], (32,), generator=g)
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
    loss.backward()
    optimizer.step()
    return float(loss)


def model_tensors(model):
    # .numpy() shares the parameter's memory: no copy until save_async's own.
    return {f"model/{k}": v.detach().numpy() for k, v in model.state_dict().items()}


def optimizer_tensors(optimizer):
    out = {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"optim/{idx}/{key}"] = t.detach().contiguous().numpy()
    return out


def load(model, optimizer, arrays):
    model.load_state_dict({k[len("model/"):]: torch.from_numpy(v)
                           for k, v in arrays.items() if k.startswith("model/")})
    state = {}
    for k, v in arrays.items():
        if not k.startswith("optim/"):
            continue
        _, idx, key = k.split("/", 2)
        state.setdefault(int(idx), {})[key] = torch.from_numpy(v)
    sd = optimizer.state_dict()
    sd["state"] = state
    optimizer.load_state_dict(sd)


def final_weights(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator")
    p.add_argument("--job", default="torch-demo")
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--every", type=int, default=EVERY)
    p.add_argument("--step-delay", type=float, default=0.0,
                   help="seconds to sleep per step (lets a test kill us mid-run)")
    p.add_argument("--reference", action="store_true", help="train without Cairn, uninterrupted")
    p.add_argument("--out", required=True, help="final weights (.npz)")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model, optimizer = make_model()
    x, y = dataset()

    client = None
    start = 0
    if not args.reference:
        global cairn
        import cairn
        client = cairn.connect(args.coordinator)
        latest = client.latest(args.job)
        if latest is not None:
            load(model, optimizer, client.restore(args.job, latest.step))
            start = latest.step
            print(f"worker {args.worker}: resumed from step {start}", flush=True)

    def committed(step):
        try:
            client.get(args.job, step)
            return True
        except cairn.Error as e:
            if e.code == "NOT_FOUND":
                return False
            raise

    def finish(pending):
        """Waits for a checkpoint save. After a crash, workers may resume from
        different steps (a checkpoint can commit, with shards saved before the
        crash, while they restart): a step another run already committed is
        refused, and that is fine — its contents are the same."""
        if pending is None:
            return
        step, handle = pending
        try:
            handle.wait()  # raises if the checkpoint failed
        except cairn.Error:
            if not committed(step):
                raise

    pending = None
    for step in range(start + 1, args.steps + 1):
        loss = train_step(model, optimizer, x, y, step)
        print(f"worker {args.worker}: step {step} loss {loss:.6f}", flush=True)
        if client is not None and step % args.every == 0:
            finish(pending)
            pending = None
            if not committed(step):
                tensors = model_tensors(model) if args.worker == 0 else optimizer_tensors(optimizer)
                pending = (step, client.save_async(args.job, step, tensors, shard=args.worker,
                                                   num_shards=args.num_workers, metrics={"loss": loss}))
        if args.step_delay:
            time.sleep(args.step_delay)
    if client is not None:
        finish(pending)
    np.savez(args.out, **final_weights(model))
    print(f"worker {args.worker}: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
