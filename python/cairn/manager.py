"""cairn.CheckpointManager: save and restore a training job's nested state.

    mgr = cairn.CheckpointManager("127.0.0.1:7070", job="llm", max_to_keep=3,
                                  save_interval_steps=100)
    step = mgr.restore_or_initialize(target) or 0   # None: no checkpoint yet
    for step in range(step + 1, steps + 1):
        ...
        mgr.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch}, metrics={"loss": loss})
    mgr.close()                                       # waits for the last save

How state is stored. A state is a nested structure of dicts (keys str or
int), lists and tuples whose leaves are torch tensors, NumPy arrays (bfloat16
of ml_dtypes included), jax arrays (restored as NumPy arrays), NumPy
scalars, Python bool / int / float / str / bytes, None, or cairn.Shard (one
rank's slice of a partitioned tensor). It is flattened to TensorFlow-style
names, the path of keys joined by "/" ("model/layers.0/weight",
"optimizer/state/0/exp_avg", "optimizer/param_groups/0/lr"; a "/" or "%" in
a key is written %2F / %25):

- tensors and arrays are tensors of their dtype (torch bfloat16 included);
- a Python number, bool or string is a scalar tensor (int64, float64, bool,
  string); a list or tuple holding only ints, or only floats, is one 1-D
  int64 / float64 tensor (e.g. "optimizer/param_groups/0/params");
- the structure itself (containers, their types, the types of dict keys,
  None, which leaves were torch and which NumPy) is one JSON string tensor,
  STRUCTURE_TENSOR. restore() rebuilds exactly what save() was given: an
  optimizer's `state` comes back keyed by int, `betas` as a tuple.

Ranks. Each of the job's `world_size` ranks calls save(step, ...) with its
own state; together they write one checkpoint (rank i is shard i of
world_size). A whole tensor (or Python leaf) is written once, by the rank
`zlib.crc32(name) % world_size` (every rank computes the same owner, so each
rank may pass the full replicated state); a cairn.Shard leaf is written by
every rank (its own slice). The structure is written by rank 0.

Saving. With async_save (the default) save() returns once the state is
copied, and the copy is sent in the background; without it, save() returns
once this rank's part is durable, its tensors sent to the shard writer while
the rest of the state is still being walked (a save that fails part-way, on
a bad leaf say, commits nothing).

Restoring onto any world size: restore(target=...) fills a target's
tensors in place; a cairn.Shard in the target restores exactly that slice
of the saved tensor, whatever partitioning it was saved with.
"""

import contextlib
import gc
import json
import os
import threading

import numpy as np
from typing import Any, Dict, List, Mapping, Optional

from . import Error, _cairn, _error, _input_errors, _into, _metrics, connect
from ._torch_interop import _add_torch, _torch
from ._state import (_FILLED, STRUCTURE_TENSOR, Shard, _Flattener, _leaf_item, _leaf_names,
                     _owner, _Rebuilder, _target_tensors)

_FORMAT = 1

__all__ = ["CheckpointManager", "Shard", "STRUCTURE_TENSOR"]


def _json_text(value):
    """json.dumps's `default`: the entries tensor_dict_entries wrote as JSON."""
    if isinstance(value, _cairn.JsonText):
        return json.loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _detect_rank(rank, world_size):
    """(rank, world_size): the given ones; else torch.distributed's when it
    is initialized; else $RANK / $WORLD_SIZE; else 0 / 1."""
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    torch = _torch()
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        detected = dist.get_rank(), dist.get_world_size()
    elif "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        try:
            detected = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        except ValueError:
            raise _error("INVALID_ARGUMENT", f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE="
                         f"{os.environ.get('WORLD_SIZE')!r} are not integers") from None
    else:
        detected = 0, 1
    return (detected[0] if rank is None else int(rank),
            detected[1] if world_size is None else int(world_size))


class _ThreadSave:
    """An async save of immutable state: the synchronous save on a thread;
    wait() returns its result or raises its error (once)."""

    def __init__(self, fn):
        self._result, self._error = None, None

        def run():
            try:
                self._result = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised by wait()
                self._error = e

        self._thread = threading.Thread(target=run, name="cairn-save", daemon=True)
        self._thread.start()

    def wait(self):
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._result

    def done(self):
        return not self._thread.is_alive()


@contextlib.contextmanager
def _gc_paused():
    """No garbage collection inside: flattening a state of 10,000 tensors
    makes ~30,000 containers, enough to trigger collections that walk the
    whole heap (a model's), and none of them is garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class CheckpointManager:
    """Saves and restores a job's nested training state through a Cairn
    coordinator, on every rank of the job. Not thread-safe: one manager per
    rank, used from one thread.

    coordinator: HOST:PORT, or a cairn.Client from cairn.connect (TLS,
      tokens, ...). job: the job's name.
    Retention, applied by the coordinator after each commit (the union of
    the rules: a checkpoint any rule keeps is kept; the newest is always
    kept). Given any of them, rank 0 sets the job's policy (replacing it);
    given none, the job's policy is left as it is (no policy = keep all):
      max_to_keep: the N newest; keep_every_n_steps: steps divisible by S;
      keep_every_n_hours: one per H hours; best_metric / best_mode ("min" or
      "max") / keep_best (default 1 when best_metric is set): the K best by
      the metric given to save(metrics=...).
    save_interval_steps: should_save(step) is true for multiples of it (and
      save() without force=True skips other steps); None = every step.
    async_save: save() returns once the state is copied to staging buffers
      (training may change it at once); wait_until_finished() waits. A
      state with no torch tensor or NumPy array (jax arrays, which cannot
      change, and Python values) is not copied: save() returns at once and
      the save reads the arrays themselves (do not donate their buffers to
      a jitted call before wait_until_finished()).
    rank, world_size: default torch.distributed's (when initialized), else
      $RANK / $WORLD_SIZE, else 0 / 1.
    """

    @_input_errors
    def __init__(self, coordinator, job: str, *, max_to_keep: Optional[int] = None,
                 keep_every_n_steps: Optional[int] = None,
                 keep_every_n_hours: Optional[float] = None, best_metric: Optional[str] = None,
                 best_mode: str = "min", keep_best: Optional[int] = None,
                 save_interval_steps: Optional[int] = None, async_save: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None, **connect_kwargs):
        self.job = job
        self.rank, self.world_size = _detect_rank(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise _error("INVALID_ARGUMENT", f"rank {self.rank} is not in [0, {self.world_size})")
        if save_interval_steps is not None and int(save_interval_steps) <= 0:
            raise _error("INVALID_ARGUMENT", f"save_interval_steps must be > 0, not {save_interval_steps}")
        if best_mode not in ("min", "max"):
            raise _error("INVALID_ARGUMENT", f'best_mode must be "min" or "max", not {best_mode!r}')
        self.save_interval_steps = None if save_interval_steps is None else int(save_interval_steps)
        self.async_save = bool(async_save)
        from . import Client
        self._client = coordinator if isinstance(coordinator, Client) else \
            connect(coordinator, **connect_kwargs)
        self._pending = None        # (step, SaveHandle) of the async save in flight
        self._last_step = None      # newest step saved or known committed; None = not asked yet
        self._closed = False
        if keep_best is None and best_metric:
            keep_best = 1
        rules = (max_to_keep, keep_every_n_steps, keep_every_n_hours, best_metric, keep_best)
        if any(r is not None for r in rules) and self.rank == 0:
            self._client.set_policy(job, keep_last=max_to_keep or 0,
                                    keep_every_steps=keep_every_n_steps or 0,
                                    keep_every_hours=keep_every_n_hours or 0.0,
                                    keep_best=keep_best or 0, metric=best_metric or "",
                                    mode=best_mode)

    # ------------------------------------------------------------ save

    def _newest(self):
        if self._last_step is None:
            self._last_step = self.latest_step()
        return self._last_step

    @_input_errors
    def should_save(self, step: int) -> bool:
        """True if save(step) would save: step is a multiple of
        save_interval_steps and above every step saved or committed."""
        step = int(step)
        newest = self._newest()
        if newest is not None and step <= newest:
            return False
        return self.save_interval_steps is None or step % self.save_interval_steps == 0

    @_input_errors
    def save(self, step: int, state: Any, metrics: Optional[Mapping[str, float]] = None,
             force: bool = False) -> bool:
        """Saves this rank's part of `step`; False (nothing saved) unless
        should_save(step) or force. force=True saves any step above the
        newest. With async_save, returns once `state` is copied (the error
        of a failed save is raised by wait_until_finished, or by the next
        save); otherwise once this rank's part is durable (the last rank's,
        once the checkpoint is committed)."""
        self._check_open()
        step = int(step)
        if not (self.should_save(step) or (force and not self._below_newest(step))):
            return False
        metrics = _metrics(metrics)
        if not self.async_save:
            self._wait_pending()
            self._save_streaming(step, state, metrics)
            self._last_step = step
            return True
        with _gc_paused():
            items, mutable = self._items(state)
        self._wait_pending()
        if not mutable:
            # Nothing the caller can change (jax arrays, Python values): no
            # staging copy; the save streams from the arrays themselves on a
            # thread (the native call releases the GIL). The arrays are kept
            # alive by `items` until it ends.
            handle = _ThreadSave(lambda: self._client._c.save(
                self.job, step, self.rank, self.world_size, items, metrics))
            self._pending = (step, handle)
        else:
            handle = self._client._c.save_async(self.job, step, self.rank, self.world_size, items,
                                                metrics)
            self._pending = (step, handle)
        self._last_step = step
        return True

    def _save_streaming(self, step, state, metrics):
        """A synchronous save whose tensors go to the shard writer while the
        state is still being walked (python/save_stream.h): a state_dict of
        many small tensors costs its walk once, overlapped with the
        transfer, not before it."""
        stream = self._client._c.save_stream(self.job, step, self.rank, self.world_size, metrics)
        try:
            with _gc_paused():
                items, _ = self._items(state, stream)
            stream.add(items)
            stream.finish()
        finally:
            stream.close()  # abandons the save unless it finished

    def _items(self, state, stream=None):
        """The save items (convert.cc ToSaveTensors) of this rank's part of
        `state`, with the structure entry on rank 0; and whether the caller
        may change any of them (see save). With a `stream` (a
        _cairn.SaveStream), the plain torch tensors of dicts are sent to it
        as they are found instead."""
        flat = _Flattener(self.world_size, self.rank)
        if stream is not None and flat.block is not None:
            stream.attach(flat.block)
        structure = flat.node(state, "")
        items = []
        whole = self.world_size == 1
        tensor_type = flat.tensor_type
        torch_names, torch_tensors = [], []
        for name, value in flat.leaves.items():
            if isinstance(value, Shard):
                items.append(_leaf_item(name, value.local, value.full_shape, value.slice))
            elif not (whole or _owner(name, self.world_size) == self.rank):
                continue  # another rank writes it
            elif type(value) is tensor_type and tensor_type is not np.ndarray:
                torch_names.append(name)
                torch_tensors.append(value)
            elif isinstance(value, tuple):  # ("string", [values])
                items.append((name, value[1], "string", [], None))
            else:
                items.append(_leaf_item(name, value))
        if torch_tensors:
            items += _add_torch(flat.block, torch_names, torch_tensors)
        if flat.block is not None and len(flat.block):
            items.append(flat.block)
        if self.rank == 0:
            doc = {"format": _FORMAT, "root": structure}
            # json.dumps's document, natively (python/structure.h); the
            # structure is built fresh here, with no cycles to look for.
            doc = _cairn.structure_json(doc) or json.dumps(doc, separators=(",", ":"),
                                                          check_circular=False, default=_json_text)
            items.append((STRUCTURE_TENSOR, [doc], "string", [], None))
        return items, flat.mutable

    def _below_newest(self, step):
        newest = self._newest()
        return newest is not None and step <= newest

    def _wait_pending(self):
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].wait()  # raises the save's error, once

    def wait_until_finished(self) -> None:
        """Waits for the async save in flight (this rank's part durable; the
        last rank's, the checkpoint committed); raises its error if it
        failed."""
        self._wait_pending()

    # ------------------------------------------------------------ queries

    def latest_step(self) -> Optional[int]:
        """The newest committed step, or None."""
        latest = self._client.latest(self.job)
        return None if latest is None else latest.step

    def all_steps(self) -> List[int]:
        """Every committed step, ascending."""
        return [c.step for c in self._client.list(self.job)]

    @_input_errors
    def metrics(self, step: int) -> Dict[str, float]:
        """The metrics saved with committed `step`."""
        return dict(self._client.get(self.job, int(step)).metrics)

    # ------------------------------------------------------------ restore

    @_input_errors
    def restore(self, step: Optional[int] = None, target: Any = None) -> Any:
        """Restores committed `step` (default: the newest; cairn.Error
        NOT_FOUND if there is none) as saved: the same nesting, container,
        key and leaf types (torch tensors come back as torch tensors of their
        dtype, bfloat16 included). A checkpoint not written by a
        CheckpointManager comes back as {name: NumPy array}.

        target: a structure like the saved one. Its tensors and arrays are
        filled in place (a cairn.Shard: that slice of the saved tensor, and
        its local tensor is what comes back), after every destination's
        shape and dtype is checked against the checkpoint, before anything
        is written. Its dicts and lists are
        updated in place with the saved values of every other leaf (and
        entries the target lacks), so the returned structure is the target's
        own where it can be."""
        self._check_open()
        c = self._client._c
        if step is None:
            step = self.latest_step()
            if step is None:
                raise _error("NOT_FOUND", f"job {self.job} has no committed checkpoint")
        step = int(step)
        try:
            raw = c.restore(self.job, step, [STRUCTURE_TENSOR], None, False, None)
        except Error as e:
            if getattr(e, "code", "") != "NOT_FOUND" or STRUCTURE_TENSOR not in str(e):
                raise
            return {name: v[0] for name, v in c.restore(self.job, step, None, None, False,
                                                         None).items()}
        try:
            doc = json.loads(raw[STRUCTURE_TENSOR][0][()].decode("utf-8"))
        except ValueError as e:
            raise _error("DATA_LOSS", f"checkpoint {self.job} step {step}: {STRUCTURE_TENSOR} is "
                         f"not valid JSON ({e})") from None
        if doc.get("format") != _FORMAT:
            raise _error("FAILED_PRECONDITION", f"checkpoint {self.job} step {step}: structure "
                         f"format {doc.get('format')} is not {_FORMAT} (a newer cairn wrote it?)")
        root = doc["root"]
        dests = {}
        _target_tensors(root, target, dests)
        names = []
        _leaf_names(root, names)
        slices = {n: d.slice for n, d in dests.items() if isinstance(d, Shard)}
        into = {n: (d.local if isinstance(d, Shard) else d) for n, d in dests.items()}
        arrays = {name: v[0] for name, v in c.restore(self.job, step, names, slices or None, False,
                                                      _into(into) or None).items()}
        for name in dests:
            arrays[name] = _FILLED
        self._last_step = max(step, self._last_step or step)
        return _Rebuilder(arrays).node(root, target)

    def restore_or_initialize(self, target: Any) -> Optional[int]:
        """Restores the newest committed step into `target` (see restore)
        and returns the step; None, leaving `target` as it is, if the job
        has no checkpoint yet. On several ranks, a commit landing between
        their calls would give them different steps: there, let one rank
        pick the step (latest_step) and share it, and call restore(step,
        target) on every rank (python/examples/train_distributed.py)."""
        step = self.latest_step()
        if step is None:
            return None
        self.restore(step, target)
        return step

    # ------------------------------------------------------------ lifecycle

    def delete(self, step: int, force: bool = False) -> None:
        """Deletes committed `step` (see Client.delete): refused for the
        newest, a pinned or a leased one unless force=True."""
        self._check_open()
        self.wait_until_finished()
        self._client.delete(self.job, int(step), force=bool(force))

    def rollback(self, step: int) -> Dict[str, List[int]]:
        """Makes committed `step` the newest: deletes every checkpoint above
        it (see Client.rollback), so saves may continue from step + 1."""
        self._check_open()
        self.wait_until_finished()
        result = self._client.rollback(self.job, int(step))
        self._last_step = int(step)
        return result

    def close(self) -> None:
        """Waits for the save in flight (raising its error); the manager is
        unusable afterwards. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wait_pending()

    def _check_open(self):
        if self._closed:
            raise _error("FAILED_PRECONDITION", f"CheckpointManager for job {self.job} is closed")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except Error:
                pass  # the exception already propagating is the one to see
        return False
