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
int), lists and tuples whose leaves are torch tensors, NumPy arrays, NumPy
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

Restoring onto any world size: restore(target=...) fills a target's
tensors in place; a cairn.Shard in the target restores exactly that slice
of the saved tensor, whatever partitioning it was saved with.
"""

import collections
import collections.abc
import json
import os
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import (Error, _error, _input_errors, _into, _is_torch_tensor, _metrics,
               _torch, _torch_dtype_name, _torch_view, connect)

STRUCTURE_TENSOR = "_cairn/structure"
_FORMAT = 1

__all__ = ["CheckpointManager", "Shard", "STRUCTURE_TENSOR"]


class Shard:
    """One rank's slice of a partitioned tensor: `local` (a torch tensor or
    NumPy array, C-contiguous) holds the elements of the whole tensor of
    `full_shape` that start at `offsets` (one per dimension) and extend
    local.shape. In a save's state it saves that slice; in a restore's
    target it asks for that slice and is filled in place."""

    __slots__ = ("local", "full_shape", "offsets")

    @_input_errors
    def __init__(self, local, full_shape: Sequence[int], offsets: Sequence[int]):
        self.local = local
        self.full_shape = [int(d) for d in full_shape]
        self.offsets = [int(o) for o in offsets]
        shape = list(local.shape)
        if len(self.full_shape) != len(shape) or len(self.offsets) != len(shape):
            raise ValueError(f"Shard: local shape {shape}, full_shape {self.full_shape} and "
                             f"offsets {self.offsets} must have the same number of dimensions")
        for d, (o, n, full) in enumerate(zip(self.offsets, shape, self.full_shape)):
            if o < 0 or o + n > full:
                raise ValueError(f"Shard: dimension {d}: offset {o} + length {n} exceeds {full}")

    @property
    def slice(self) -> str:
        """TensorFlow's slice text ("0,500:-")."""
        return ":".join("-" if (o == 0 and n == full) else f"{o},{n}"
                        for o, n, full in zip(self.offsets, self.local.shape, self.full_shape))

    def __repr__(self):
        return f"cairn.Shard(shape={list(self.local.shape)}, full_shape={self.full_shape}, offsets={self.offsets})"


# ---------------------------------------------------------------- flatten

def _escape(key: str) -> str:
    return key.replace("%", "%25").replace("/", "%2F")


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


class _Flattener:
    """Walks a state: builds the JSON structure and the named leaves."""

    def __init__(self):
        self.leaves: Dict[str, Any] = {}   # name -> what to save (buffer / Shard / string list)
        torch = _torch()
        self.tensor_type = torch.Tensor if torch is not None else np.ndarray

    def add(self, name, value):
        if name in self.leaves or name == STRUCTURE_TENSOR:
            raise _error("INVALID_ARGUMENT", f'two leaves of the state are both named "{name}" '
                         "(e.g. the keys 0 and \"0\" in one dict)")
        self.leaves[name] = value

    def node(self, value, path):
        name = path or "state"
        # Tensors first: they are most of the leaves (a 10,000-tensor
        # state_dict must cost little more than its bytes).
        if type(value) is self.tensor_type or type(value) is np.ndarray:
            self.add(name, value)
            return self.tensor_leaf(value, name)
        if type(value) is dict or type(value) is collections.OrderedDict or \
                isinstance(value, collections.abc.Mapping):
            entries = []
            for k, v in value.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise _error("INVALID_ARGUMENT", f'state "{name}": dict key {k!r} is not a str '
                                 "or int")
                kind = "s" if isinstance(k, str) else "i"
                entries.append([kind, k, self.node(v, _join(path, _escape(str(k))))])
            node = {"dict": entries}
            if isinstance(value, collections.OrderedDict):
                node["ordered"] = True  # a module's state_dict()
            return node
        if isinstance(value, (list, tuple)):
            kind = "tuple" if isinstance(value, tuple) else "list"
            if value and all(type(v) is int for v in value) and \
                    all(-2**63 <= v < 2**63 for v in value):
                self.add(name, np.array(value, dtype=np.int64))
                return {"ints": name, "seq": kind}
            if value and all(type(v) is float for v in value):
                self.add(name, np.array(value, dtype=np.float64))
                return {"floats": name, "seq": kind}
            return {kind: [self.node(v, _join(path, str(i))) for i, v in enumerate(value)]}
        if value is None:
            return {"none": True}
        if isinstance(value, bool):
            self.add(name, np.array(value))
            return {"bool": name}
        if isinstance(value, int):
            if not -2**63 <= value < 2**63:
                return {"bigint": str(value)}
            self.add(name, np.array(value, dtype=np.int64))
            return {"int": name}
        if isinstance(value, float):
            self.add(name, np.array(value, dtype=np.float64))
            return {"float": name}
        if isinstance(value, str):
            self.add(name, ("string", [value]))
            return {"str": name}
        if isinstance(value, bytes):
            self.add(name, ("string", [value]))
            return {"bytes": name}
        if isinstance(value, Shard):
            leaf = self.tensor_leaf(value.local, name)
            leaf["full_shape"] = value.full_shape
            self.add(name, value)
            return leaf
        if isinstance(value, np.generic):
            self.add(name, np.asarray(value))
            return {"npscalar": name, "dtype": value.dtype.str}
        if _is_torch_tensor(value) or isinstance(value, np.ndarray):
            leaf = self.tensor_leaf(value, name)
            self.add(name, value)
            return leaf
        raise _error("INVALID_ARGUMENT", f'state "{name}": cannot save a {type(value).__name__} '
                     "(leaves are tensors, arrays, numbers, strings, bytes or None)")

    @staticmethod
    def tensor_leaf(value, name):
        if _is_torch_tensor(value):
            return {"tensor": name, "torch": _torch_dtype_name(value), "shape": list(value.shape)}
        if isinstance(value, np.ndarray):
            return {"tensor": name, "numpy": value.dtype.str, "shape": list(value.shape)}
        raise _error("INVALID_ARGUMENT", f'state "{name}": a Shard holds a torch tensor or a NumPy '
                     f"array, not a {type(value).__name__}")


def _owner(name: str, world_size: int) -> int:
    """The rank that writes a whole tensor: the same on every rank."""
    return zlib.crc32(name.encode()) % world_size


# ---------------------------------------------------------------- rebuild

def _to_torch(array, dtype_name):
    torch = _torch()
    if torch is None:
        import torch  # noqa: F811 - the state was saved from torch tensors
    if dtype_name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _scalar(arrays, name):
    return arrays[name][()]


class _Rebuilder:
    """Rebuilds a saved structure from restored arrays, reusing the target's
    containers and tensors where it has them."""

    def __init__(self, arrays):
        self.arrays = arrays

    def node(self, spec, target):
        if "dict" in spec:
            out = target if isinstance(target, dict) else (
                collections.OrderedDict() if spec.get("ordered") else {})
            for kind, key, child in spec["dict"]:
                key = int(key) if kind == "i" else key
                out[key] = self.node(child, out.get(key) if out is target else None)
            return out
        for kind in ("list", "tuple"):
            if kind in spec:
                items = [self.node(child, target[i] if isinstance(target, (list, tuple)) and
                                   i < len(target) else None)
                         for i, child in enumerate(spec[kind])]
                if kind == "list" and isinstance(target, list):
                    target[:] = items
                    return target
                return items if kind == "list" else tuple(items)
        if "ints" in spec or "floats" in spec:
            values = self.arrays[spec.get("ints", spec.get("floats"))].tolist()
            return tuple(values) if spec["seq"] == "tuple" else values
        if "none" in spec:
            return None
        if "bool" in spec:
            return bool(_scalar(self.arrays, spec["bool"]))
        if "int" in spec:
            return int(_scalar(self.arrays, spec["int"]))
        if "bigint" in spec:
            return int(spec["bigint"])
        if "float" in spec:
            return float(_scalar(self.arrays, spec["float"]))
        if "str" in spec:
            return _scalar(self.arrays, spec["str"]).decode("utf-8")
        if "bytes" in spec:
            return bytes(_scalar(self.arrays, spec["bytes"]))
        if "npscalar" in spec:
            return self.arrays[spec["npscalar"]].view(np.dtype(spec["dtype"]))[()]
        if "tensor" in spec:
            value = self.arrays[spec["tensor"]]
            if value is _FILLED:
                return target.local if isinstance(target, Shard) else target
            if "torch" in spec:
                return _to_torch(value, spec["torch"])
            return value.view(np.dtype(spec["numpy"]))
        raise _error("DATA_LOSS", f"unknown node in the checkpoint's structure: {sorted(spec)}")


_FILLED = object()  # restored into the target's own tensor


def _is_tensor(value):
    return isinstance(value, (Shard, np.ndarray)) or _is_torch_tensor(value)


def _first_tensor_path(value, path):
    """The path of a tensor somewhere in `value`, or None."""
    if _is_tensor(value):
        return path or "state"
    items = value.items() if isinstance(value, Mapping) else \
        enumerate(value) if isinstance(value, (list, tuple)) else ()
    for k, v in items:
        found = _first_tensor_path(v, _join(path, _escape(str(k))))
        if found:
            return found
    return None


def _target_tensors(spec, target, out, path=""):
    """{name: destination} for every tensor leaf of `spec` that `target` has
    a tensor (or Shard) for. Refuses a target tensor where the checkpoint
    has a Python value, or none (it would silently keep its old values)."""
    if target is None:
        return
    if "dict" in spec:
        if isinstance(target, Mapping):
            saved = set()
            for kind, key, child in spec["dict"]:
                key = int(key) if kind == "i" else key
                saved.add(key)
                if key in target:
                    _target_tensors(child, target[key], out, _join(path, _escape(str(key))))
            for key, value in target.items():
                if key not in saved:
                    _no_tensor_in(value, _join(path, _escape(str(key))))
        else:
            _no_tensor_in(target, path)
        return
    for kind in ("list", "tuple"):
        if kind in spec:
            if isinstance(target, (list, tuple)):
                for i, (child, t) in enumerate(zip(spec[kind], target)):
                    _target_tensors(child, t, out, _join(path, str(i)))
                for i in range(len(spec[kind]), len(target)):
                    _no_tensor_in(target[i], _join(path, str(i)))
            else:
                _no_tensor_in(target, path)
            return
    if not _is_tensor(target):
        _no_tensor_in(target, path)  # e.g. a list of tensors where one was saved
        return
    if "tensor" not in spec:
        name = next((v for v in spec.values() if isinstance(v, str)), "?")
        raise _error("INVALID_ARGUMENT", f'target has a tensor for "{name}", which the '
                     "checkpoint holds as a Python value")
    out[spec["tensor"]] = target


def _no_tensor_in(value, path):
    found = _first_tensor_path(value, path)
    if found:
        raise _error("NOT_FOUND", f'target has a tensor at "{found}", which the checkpoint '
                     "does not hold")


def _leaf_names(spec, out):
    if "dict" in spec:
        for _, _, child in spec["dict"]:
            _leaf_names(child, out)
        return
    for kind in ("list", "tuple"):
        if kind in spec:
            for child in spec[kind]:
                _leaf_names(child, out)
            return
    for key in ("tensor", "ints", "floats", "bool", "int", "float", "str", "bytes", "npscalar"):
        if key in spec:
            out.append(spec[key])


# ---------------------------------------------------------------- manager

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
      (training may change it at once); wait_until_finished() waits.
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
        flat = _Flattener()
        structure = flat.node(state, "")
        items = []
        for name, value in flat.leaves.items():
            if isinstance(value, Shard):
                buffer, dtype = _leaf_buffer(name, value.local)
                items.append((name, buffer, dtype, value.full_shape, value.slice))
            elif _owner(name, self.world_size) == self.rank:
                if isinstance(value, tuple):  # ("string", [values])
                    items.append((name, value[1], "string", [], None))
                else:
                    buffer, dtype = _leaf_buffer(name, value)
                    items.append((name, buffer, dtype, None, None))
        if self.rank == 0:
            doc = json.dumps({"format": _FORMAT, "root": structure}, separators=(",", ":"))
            items.append((STRUCTURE_TENSOR, [doc], "string", [], None))
        self._wait_pending()
        if self.async_save:
            handle = self._client._c.save_async(self.job, step, self.rank, self.world_size, items,
                                                metrics)
            self._pending = (step, handle)
        else:
            self._client._c.save(self.job, step, self.rank, self.world_size, items, metrics)
        self._last_step = step
        return True

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

    def delete(self, step: int) -> None:
        """Deletes committed `step` (refused for the newest, a pinned or a
        leased one)."""
        self._check_open()
        native_delete = getattr(self._client._c, "delete", None)
        if native_delete is None:
            raise _error("UNIMPLEMENTED", f"delete step {step}: this coordinator client has no "
                         "delete call yet (issue 17); use retention or rollback")
        native_delete(self.job, int(step))

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


def _leaf_buffer(name, value):
    """(buffer, dtype name or None) of a tensor leaf, no copy for CPU data."""
    if _is_torch_tensor(value):
        return _torch_view(name, value)
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        return value, None
    raise _error("INVALID_ARGUMENT", f'state "{name}": {type(value).__name__} is not a tensor')
