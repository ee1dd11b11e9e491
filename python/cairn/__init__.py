"""Cairn: save and restore sharded TensorFlow-format checkpoints from Python.

    import cairn, numpy as np
    client = cairn.connect("127.0.0.1:7070")            # token=..., tls_ca=...
    client.save("job", 100, {"w": w, "emb": (rows, [1000, 64], "0,500:-")},
                shard=0, num_shards=2, metrics={"loss": 0.25})
    handle = client.save_async("job", 105, {...}, shard=0, num_shards=2)
    ...                                                  # arrays may change now
    handle.wait()
    client.list("job")                                   # [Checkpoint, ...] by step
    client.latest("job")                                 # newest Checkpoint or None
    arrays = client.restore("job")                       # {name: numpy.ndarray}
    part = client.restore("job", 100, tensors=["emb"], slices={"emb": "0,250:-"})
    cairn.restore_from("/data/ckpts/job/ckpt-100/variables")   # no coordinator

Tensors to save are anything exposing the buffer protocol (NumPy arrays,
memoryviews, bytes, ...) and must be C-contiguous; objects with `__array__`
only (e.g. CPU torch tensors) go through `numpy.asarray`, which does not copy
contiguous data. A value is an array (a whole tensor), a tuple
`(array, full_shape, slice)` (one slice of a partitioned tensor, in
TensorFlow's slice syntax such as "0,500:-"), or a `cairn.Tensor` that can
also name the dtype.

dtypes: numpy float16/32/64, int8..int64, uint8..uint64, bool, complex64/128
map to the TensorFlow dtypes of the same name. bfloat16 has no NumPy dtype:
save it as uint16 storage with `cairn.Tensor(bits, dtype="bfloat16")`; it is
restored as a uint16 array holding the raw bfloat16 bits (as are the float8
types as uint8). Restored arrays own the memory the library read into (no copy).

Errors from the service or the library raise `cairn.Error` (a RuntimeError)
whose message is the library's ("NOT_FOUND: ...") and whose `code` is the
status code name ("NOT_FOUND", "INVALID_ARGUMENT", ...).

The save and restore calls release the GIL, so several worker threads can
save or restore at once.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as _np

from . import _cairn

Error = _cairn.Error

__all__ = ["connect", "restore_from", "Client", "SaveHandle", "Checkpoint", "Tensor", "Error"]


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A tensor to save, with optional explicit dtype and slice.

    data: C-contiguous buffer (numpy array, ...) holding the tensor, or the
      slice's elements if `slice` is set.
    dtype: TensorFlow dtype name ("bfloat16", "float32", ...); default: from
      the buffer's element type. Its element size must match the buffer's.
    full_shape, slice: for one slice of a partitioned tensor, the whole
      tensor's shape and the slice text ("0,500:-"), given together.
    """

    data: Any
    dtype: Optional[str] = None
    full_shape: Optional[Sequence[int]] = None
    slice: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint, as listed by the coordinator."""

    job: str
    step: int
    state: str
    num_shards: int
    created_at_micros: int
    committed_at_micros: int
    bytes: int
    metrics: Dict[str, float]
    pinned: bool
    kept_by: List[str]
    prefix_uri: str
    files: List[Dict[str, Any]]


def _as_buffer(name, data):
    if isinstance(data, (bytes, bytearray, memoryview, _np.ndarray)):
        return data
    if hasattr(data, "__array__") and not _supports_buffer(data):
        # e.g. a CPU torch tensor: a view, no copy when contiguous.
        return _np.asarray(data)
    return data


def _supports_buffer(obj):
    try:
        memoryview(obj)
        return True
    except TypeError:
        return False


def _tensor_items(tensors: Mapping[str, Any]):
    if not isinstance(tensors, Mapping):
        raise TypeError("tensors must be a mapping name -> array | (array, full_shape, slice) | cairn.Tensor")
    items = []
    for name, value in tensors.items():
        if isinstance(value, Tensor):
            t = value
        elif isinstance(value, tuple):
            if len(value) != 3:
                raise ValueError(
                    f'tensor "{name}": a tuple must be (array, full_shape, slice), got {len(value)} items')
            t = Tensor(value[0], None, value[1], value[2])
        else:
            t = Tensor(value)
        if (t.full_shape is None) != (t.slice is None):
            raise ValueError(f'tensor "{name}": full_shape and slice go together')
        full_shape = None if t.full_shape is None else [int(d) for d in t.full_shape]
        items.append((str(name), _as_buffer(name, t.data), t.dtype, full_shape, t.slice))
    return items


def _arrays(restored):
    return {name: value[0] for name, value in restored.items()}


class SaveHandle:
    """A save running in the background (Client.save_async)."""

    def __init__(self, handle):
        self._handle = handle

    def wait(self) -> Dict[str, Any]:
        """Blocks until the shard is durable (or, for the last shard, the
        checkpoint committed); returns {"committed", "bytes", "num_tensors"}
        or raises cairn.Error. May be called more than once."""
        return self._handle.wait()

    def done(self) -> bool:
        """True once wait() would not block."""
        return self._handle.done()

    @property
    def durable_after_micros(self) -> int:
        return self._handle.durable_after_micros


class Client:
    """A connection to a Cairn coordinator (thread-safe). Use cairn.connect."""

    def __init__(self, native):
        self._c = native

    def save(self, job: str, step: int, tensors: Mapping[str, Any], shard: int = 0,
             num_shards: int = 1, metrics: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
        """Saves this worker's tensors as shard `shard` of `num_shards` of
        `step`. Returns once the shard is durable; the call completing the last
        shard returns once the checkpoint is committed. The arrays must not be
        modified until it returns. Returns {"committed", "bytes", "num_tensors"}."""
        return self._c.save(job, int(step), int(shard), int(num_shards), _tensor_items(tensors),
                            dict(metrics or {}))

    def save_async(self, job: str, step: int, tensors: Mapping[str, Any], shard: int = 0,
                   num_shards: int = 1, metrics: Optional[Mapping[str, float]] = None) -> SaveHandle:
        """Like save, but returns once the tensors are copied into staging
        buffers: the arrays may be modified right away. One async save per
        client runs at a time (the next waits for it); an earlier failed one
        that nobody waited for makes this raise."""
        return SaveHandle(self._c.save_async(job, int(step), int(shard), int(num_shards),
                                             _tensor_items(tensors), dict(metrics or {})))

    def list(self, job: str) -> List[Checkpoint]:
        """Committed checkpoints of `job`, ascending by step."""
        return [Checkpoint(**d) for d in self._c.list(job)]

    def get(self, job: str, step: Optional[int] = None) -> Checkpoint:
        """One committed checkpoint (default: the newest); cairn.Error
        with code NOT_FOUND if there is none."""
        return Checkpoint(**self._c.get(job, None if step is None else int(step)))

    def latest(self, job: str) -> Optional[Checkpoint]:
        """The newest committed checkpoint of `job`, or None."""
        try:
            return self.get(job)
        except Error as e:
            if getattr(e, "code", "") == "NOT_FOUND":
                return None
            raise

    def restore(self, job: str, step: Optional[int] = None, tensors: Optional[Sequence[str]] = None,
                slices: Optional[Mapping[str, str]] = None,
                map_files: bool = False, into: Optional[Mapping[str, Any]] = None) -> Dict[str, _np.ndarray]:
        """Restores `step` (default: the newest) into NumPy arrays, without
        copies: every tensor, or those named in `tensors`; a tensor named in
        `slices` ({name: "0,250:-"}) is restored as that slice of its full
        shape, whatever partitioning it was saved with. map_files=True (local
        checkpoints): arrays are copy-on-write views of the files' pages, the
        fastest restore, every checksum still verified; the files must not be
        rewritten in place while the arrays live (Cairn never does).
        into={name: array}: restores those tensors into the given writable,
        C-contiguous buffers (e.g. a model's parameters via .numpy()) and
        returns them; every size is checked before anything is written."""
        return _arrays(self._c.restore(job, None if step is None else int(step),
                                       None if tensors is None else list(tensors),
                                       None if slices is None else dict(slices), bool(map_files),
                                       None if into is None else dict(into)))

    def restore_from(self, prefix_uri: str, tensors: Optional[Sequence[str]] = None,
                     slices: Optional[Mapping[str, str]] = None,
                     map_files: bool = False, into: Optional[Mapping[str, Any]] = None) -> Dict[str, _np.ndarray]:
        """restore_from (the module function), for convenience."""
        return restore_from(prefix_uri, tensors, slices, map_files=map_files, into=into)

    def pin(self, job: str, step: int, pinned: bool = True) -> None:
        self._c.pin(job, int(step), bool(pinned))

    def set_policy(self, job: str, keep_last: int = 0, keep_every_steps: int = 0,
                   keep_every_hours: float = 0.0, keep_best: int = 0, metric: str = "",
                   maximize: bool = False) -> None:
        self._c.set_policy(job, keep_last, keep_every_steps, keep_every_hours, keep_best, metric,
                           maximize)

    def gc(self, job: str, dry_run: bool = False) -> Dict[str, Any]:
        return self._c.gc(job, dry_run)

    def rollback(self, job: str, to_step: int, dry_run: bool = False) -> Dict[str, List[int]]:
        """Makes committed step `to_step` the newest of `job`, so training can
        resume from it: deletes every committed checkpoint above it and aborts
        every pending one (the TensorFlow `checkpoint` file then names
        `to_step`). Raises if a checkpoint above is pinned or leased. Saves
        move forward: a step below the newest committed one is refused until
        a rollback makes room. Returns {"deleted_steps": [...],
        "aborted_steps": [...]} (with dry_run, what it would do)."""
        return self._c.rollback(job, int(to_step), bool(dry_run))


def connect(addr: str, token: Optional[str] = None, tls_ca: Optional[str] = None,
            tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
            rpc_timeout_ms: int = 60000, save_timeout_ms: int = 3600000,
            restore_threads: int = 4) -> Client:
    """Connects to the coordinator at HOST:PORT. token: from `cairn token`
    (default: $CAIRN_TOKEN if set). tls_ca (and tls_cert/tls_key for mutual
    TLS): PEM files; any of them makes the connection TLS."""
    if token is None:
        import os
        token = os.environ.get("CAIRN_TOKEN", "")
    return Client(_cairn.Client.connect(addr, token or "", tls_ca or "", tls_cert or "",
                                        tls_key or "", int(rpc_timeout_ms), int(save_timeout_ms),
                                        int(restore_threads)))


def restore_from(prefix_uri: str, tensors: Optional[Sequence[str]] = None,
                 slices: Optional[Mapping[str, str]] = None, threads: int = 4,
                 map_files: bool = False, into: Optional[Mapping[str, Any]] = None) -> Dict[str, _np.ndarray]:
    """Restores straight from a checkpoint prefix (no coordinator), e.g.
    "/data/job/ckpt-100/variables" or a file:// / s3:// URI. map_files, into:
    see Client.restore."""
    return _arrays(_cairn.restore_from_prefix(prefix_uri,
                                              None if tensors is None else list(tensors),
                                              None if slices is None else dict(slices), int(threads),
                                              bool(map_files), None if into is None else dict(into)))
