"""Nested training state <-> flat named tensors, for cairn.CheckpointManager.

_Flattener turns a nested state (dicts, lists, tuples; tensors, arrays,
Python leaves, cairn.Shard) into TensorFlow-style names and a JSON
description of the structure; _Rebuilder puts it back together, with the
same containers, key types and tensor kinds. The helpers below them find a
restore target's tensors and check them against what was saved. The format
is described in cairn/manager.py.
"""

import collections
import collections.abc
import zlib
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from . import _cairn, _error, _input_errors
from ._torch_interop import (_TORCH_DTYPE_NAMES, _is_torch_tensor, _torch, _torch_dtype_name,
                             _torch_item, _torch_tables, _torch_view)

STRUCTURE_TENSOR = "_cairn/structure"


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
    """Walks a state: builds the JSON structure and names its leaves. The
    plain CPU torch tensors in dicts (most of a state_dict) that this rank
    writes go straight into `block`, a _cairn.TorchBlock (None without
    torch); every other leaf this rank may write is in `leaves`."""

    def __init__(self, world_size=1, rank=0):
        self.names = set()  # every leaf's name
        self.leaves: Dict[str, Any] = {}   # name -> what to save (buffer / Shard / string list)
        # Whether a leaf may change while a save reads it (a torch tensor or
        # NumPy array of the caller's); jax arrays and the arrays made here
        # for Python values cannot.
        self.mutable = False
        self.inside = set()  # ids of the containers around the node being walked
        self.world_size, self.rank = world_size, rank
        torch = _torch()
        self.tensor_type = torch.Tensor if torch is not None else np.ndarray
        self.block = _cairn.TorchBlock(*_torch_tables()["block"]) if torch is not None else None

    def enter(self, container, name):
        """Notes that the walk is inside `container` (at `name`); refuses a
        container that holds itself, which would recurse forever."""
        if id(container) in self.inside:
            raise _error("INVALID_ARGUMENT", f'state "{name}" contains itself (a cycle)')
        self.inside.add(id(container))

    def add(self, name, value):
        if name in self.names or name == STRUCTURE_TENSOR:
            raise _error("INVALID_ARGUMENT", f'two leaves of the state are both named "{name}" '
                         "(e.g. the keys 0 and \"0\" in one dict)")
        self.names.add(name)
        self.leaves[name] = value

    def node(self, value, path):
        name = path or "state"
        # Tensors first: they are most of the leaves (a 10,000-tensor
        # state_dict must cost little more than its bytes).
        if type(value) is self.tensor_type or type(value) is np.ndarray:
            self.add(name, value)
            self.mutable = True
            return self.tensor_leaf(value, name)
        if type(value) is dict or type(value) is collections.OrderedDict or \
                isinstance(value, collections.abc.Mapping):
            self.enter(value, name)
            # The torch tensors, most of a state_dict's values, natively
            # (python/structure.h); the rest below. `entries` is a
            # _cairn.JsonText when nothing is pending.
            entries, pending = _cairn.tensor_dict_entries(
                value, path, self.names, self.leaves, self.tensor_type, _TORCH_DTYPE_NAMES,
                STRUCTURE_TENSOR, self.block, self.world_size, self.rank)
            if len(pending) < len(entries):
                self.mutable = True
            for i in pending:
                entry = entries[i]
                k = entry[1]
                if type(k) is str:
                    entry[0] = "s"
                elif isinstance(k, bool) or not isinstance(k, int):
                    raise _error("INVALID_ARGUMENT", f'state "{name}": dict key {k!r} is not a str '
                                 "or int")
                else:
                    entry[0] = "i"
                entry[2] = self.node(entry[2], _join(path, _escape(str(k))))
            self.inside.discard(id(value))
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
            self.enter(value, name)
            node = {kind: [self.node(v, _join(path, str(i))) for i, v in enumerate(value)]}
            self.inside.discard(id(value))
            return node
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
            self.mutable = True
            return leaf
        if isinstance(value, np.generic):
            self.add(name, np.asarray(value))
            return {"npscalar": name, "dtype": value.dtype.str}
        if _is_torch_tensor(value) or isinstance(value, np.ndarray):
            leaf = self.tensor_leaf(value, name)
            self.add(name, value)
            self.mutable = True
            return leaf
        if _is_jax_array(value):
            # Immutable: saved from its own buffer (np.asarray is no copy on
            # the CPU), and restored as a NumPy array.
            array = np.asarray(value)
            self.add(name, array)
            return self.tensor_leaf(array, name)
        raise _error("INVALID_ARGUMENT", f'state "{name}": cannot save a {type(value).__name__} '
                     "(leaves are tensors, arrays, numbers, strings, bytes or None)")

    def tensor_leaf(self, value, name):
        # (Format 1 also had "shape", unused: the saved tensor has it.)
        if type(value) is not np.ndarray and (type(value) is self.tensor_type or
                                              _is_torch_tensor(value)):
            return {"tensor": name, "torch": _torch_dtype_name(value)}
        if isinstance(value, np.ndarray):
            dtype = "bfloat16" if value.dtype.name == "bfloat16" else value.dtype.str
            return {"tensor": name, "numpy": dtype}
        raise _error("INVALID_ARGUMENT", f'state "{name}": a Shard holds a torch tensor or a NumPy '
                     f"array, not a {type(value).__name__}")


def _is_jax_array(value) -> bool:
    jax = __import__("sys").modules.get("jax")
    return jax is not None and isinstance(value, getattr(jax, "Array", ()))


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
            if spec["numpy"] == "bfloat16":   # ml_dtypes' (JAX, TensorFlow), else its raw bits
                try:
                    import ml_dtypes
                except ImportError:
                    return value
                return value.view(ml_dtypes.bfloat16)
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

def _leaf_item(name, value, full_shape=None, slice_spec=None):
    """The save item (convert.cc ToSaveTensors) of a tensor leaf."""
    if type(value) is not np.ndarray and _is_torch_tensor(value):
        return _torch_item(name, value, full_shape, slice_spec)
    buffer, dtype = _leaf_buffer(name, value)
    return (name, buffer, dtype, full_shape, slice_spec)


def _leaf_buffer(name, value):
    """(buffer, dtype name or None) of a tensor leaf, no copy for CPU data."""
    if _is_torch_tensor(value):
        return _torch_view(name, value)
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            value = np.ascontiguousarray(value)
        if value.dtype.name == "bfloat16":  # ml_dtypes' (TensorFlow's, JAX's): saved as bfloat16
            return value.view(np.uint16), "bfloat16"
        return value, None
    raise _error("INVALID_ARGUMENT", f'state "{name}": {type(value).__name__} is not a tensor')
