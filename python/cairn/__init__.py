"""Cairn: save and restore sharded TensorFlow-format checkpoints from Python.

Training code usually wants the CheckpointManager (cairn/manager.py has
the details): nested state in, the same nested state out, on any number of
ranks.

    mgr = cairn.CheckpointManager("127.0.0.1:7070", job="llm", max_to_keep=3,
                                  keep_every_n_steps=1000, best_metric="loss",
                                  best_mode="min", save_interval_steps=100)
    state = mgr.restore()                             # newest step (or restore(step))
    model.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
    # or fill tensors in place: mgr.restore_or_initialize(target) -> step or None
    if mgr.should_save(step):
        mgr.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch}, metrics={"loss": loss})   # async by default
    mgr.wait_until_finished(); mgr.latest_step(); mgr.all_steps(); mgr.metrics(step)
    mgr.delete(step); mgr.rollback(step); mgr.close()  # or `with cairn.CheckpointManager(...)`
    # a tensor partitioned across ranks: cairn.Shard(local_rows, full_shape, offsets)

The client underneath:

    import cairn, numpy as np
    client = cairn.connect("127.0.0.1:7070")            # token=..., tls_ca=...
    client.save("job", 100, {"w": w, "emb": (rows, [1000, 64], "0,500:-")},
                shard=0, num_shards=2, metrics={"loss": 0.25})
    handle = client.save_async("job", 105, {...}, shard=0, num_shards=2)
    ...                                                  # arrays may change now
    handle.wait()
    client.list("job")                                   # [Checkpoint, ...] by step
    client.latest("job")                                 # newest Checkpoint or None
    client.delete("job", 100); client.jobs()             # force=True for the newest
    arrays = client.restore("job")                       # {name: numpy.ndarray}
    part = client.restore("job", 100, tensors=["emb"], slices={"emb": "0,250:-"})
    cairn.restore_from("/data/ckpts/job/ckpt-100/variables")   # no coordinator
    client.restore_to_file("job", "model.safetensors")   # streamed: memory stays small

Tensors to save are torch tensors or anything exposing the buffer protocol
(NumPy arrays, memoryviews, bytes, ...) and must be C-contiguous; CPU data is
never copied (device tensors are copied to host once). Objects with
`__array__` only go through `numpy.asarray`. A value is an array (a whole
tensor), a tuple
`(array, full_shape, slice)` (one slice of a partitioned tensor, in
TensorFlow's slice syntax such as "0,500:-"), or a `cairn.Tensor` that can
also name the dtype.

dtypes: numpy float16/32/64, int8..int64, uint8..uint64, bool, complex64/128
and the same torch dtypes, plus torch.bfloat16, map to the TensorFlow dtypes
of the same name; `cairn.Tensor(["a", "b"], dtype="string")` is a string
tensor. NumPy has no bfloat16: Client.restore returns a bfloat16 tensor as a
uint16 array of its raw bits (the float8 types as uint8), or fills a torch
bfloat16 tensor given with into=; the CheckpointManager gives torch tensors
back as torch tensors. Restored arrays own the memory the library read into
(no copy). into= destinations must have exactly the restored shape and dtype
(a uint16 array takes bfloat16 bits): all are checked before any is written.

Errors from the service or the library raise `cairn.Error` (a RuntimeError)
whose message is the library's ("NOT_FOUND: ...") and whose `code` is the
status code name ("NOT_FOUND", "INVALID_ARGUMENT", ...); so do bad metrics
(not numbers) and an address without a port. Retention: set_policy(...,
keep_best=K, metric="loss", mode="min"|"max") as the CLI's --mode.

The save and restore calls release the GIL, so several worker threads can
save or restore at once.
"""

import dataclasses
import functools
import sys as _sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as _np

# The module links Debian's gRPC, protobuf and Abseil. TensorFlow loads its
# own builds of them into the global symbol scope (RTLD_GLOBAL); resolved
# against those, _cairn crashed (a segfault in the first RPC when tensorflow
# was imported first). RTLD_DEEPBIND makes the module and its libraries
# prefer their own symbols, whatever was imported before.
_flags = _sys.getdlopenflags()
try:
    import os as _os
    _sys.setdlopenflags(_os.RTLD_NOW | getattr(_os, "RTLD_DEEPBIND", 0))
    from . import _cairn
finally:
    _sys.setdlopenflags(_flags)

Error = _cairn.Error

__all__ = ["connect", "restore_from", "restore_file_from", "Client", "SaveHandle", "Checkpoint", "Tensor", "Error",
           "CheckpointManager", "Shard"]


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


def _error(code: str, message: str) -> Exception:
    """A cairn.Error like the library's: "CODE: message", .code = CODE."""
    e = Error(f"{code}: {message}")
    e.code = code
    return e


_DUAL_ERRORS = {}


def _invalid(message: str, base=ValueError) -> Exception:
    """A cairn.Error with code INVALID_ARGUMENT that is also a `base`
    (ValueError, TypeError, BufferError): bad input reads as the one-line
    cairn.Error the docs promise, and code catching ValueError still works."""
    cls = _DUAL_ERRORS.get(base)
    if cls is None:
        cls = _DUAL_ERRORS[base] = type(f"InvalidArgument{base.__name__}", (Error, base),
                                        {"__module__": __name__})
    e = cls(f"INVALID_ARGUMENT: {message}")
    e.code = "INVALID_ARGUMENT"
    return e


def _input_errors(fn):
    """Decorator: ValueError / TypeError / BufferError from checking the
    caller's input (here or in the binding) become _invalid(...)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Error:
            raise
        except (ValueError, TypeError, BufferError) as e:
            base = next(b for b in (ValueError, TypeError, BufferError) if isinstance(e, b))
            raise _invalid(str(e).splitlines()[0] if str(e) else type(e).__name__, base) from None
    return wrapper


from ._torch_interop import _is_torch_tensor, _torch_item, _torch_view  # noqa: E402


def _as_buffer(name, data):
    """(buffer, dtype name or None) to save for `data`."""
    if isinstance(data, (bytes, bytearray, memoryview, _np.ndarray)):
        return data, None
    if _is_torch_tensor(data):
        return _torch_view(name, data)
    if hasattr(data, "__array__") and not _supports_buffer(data):
        return _np.asarray(data), None
    return data, None


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
        if t.dtype == "string":
            values = [t.data] if isinstance(t.data, (str, bytes)) else list(t.data)
            if t.slice is not None:
                raise ValueError(f'tensor "{name}": string tensors are saved whole')
            shape = [] if isinstance(t.data, (str, bytes)) else [len(values)]
            items.append((str(name), values, "string", shape, None))
            continue
        if (t.full_shape is None) != (t.slice is None):
            raise ValueError(f'tensor "{name}": full_shape and slice go together')
        full_shape = None if t.full_shape is None else [int(d) for d in t.full_shape]
        if t.dtype is None and _is_torch_tensor(t.data):
            items.append(_torch_item(str(name), t.data, full_shape, t.slice))
            continue
        buffer, dtype = _as_buffer(name, t.data)
        items.append((str(name), buffer, t.dtype or dtype, full_shape, t.slice))
    return items


def _metrics(metrics) -> Dict[str, float]:
    """Checks the metrics of a save: {name: number}; cairn.Error otherwise."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise _error("INVALID_ARGUMENT",
                     f"metrics must be a mapping name -> number, not {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise _error("INVALID_ARGUMENT", f"metric name {name!r} is not a string")
        try:
            if isinstance(value, (str, bytes)) or value is None:
                raise TypeError
            out[name] = float(value)
        except (TypeError, ValueError):
            raise _error("INVALID_ARGUMENT", f'metric "{name}" must be a number, not '
                         f"{type(value).__name__} {str(value)[:40]!r}") from None
    return out


def _into(into):
    """The binding's into= ({name: (buffer, dtype name or None)}) for the
    caller's {name: NumPy array or torch tensor}."""
    if into is None:
        return None
    if not isinstance(into, Mapping):
        raise TypeError("into must be a mapping name -> writable array or tensor")
    out = {}
    for name, dest in into.items():
        if _is_torch_tensor(dest):
            out[str(name)] = _torch_view(name, dest, writable=True)
        elif isinstance(dest, _np.ndarray) or _supports_buffer(dest):
            out[str(name)] = (dest, None)
        else:
            raise TypeError(f'into["{name}"]: {type(dest).__name__} is neither a NumPy array '
                            "nor a torch tensor")
    return out


def _check_address(addr) -> None:
    """HOST:PORT, or several comma-separated (coordinators sharing an etcd
    catalog), or a gRPC target with a scheme (unix:PATH, dns:///...); a
    missing port is an error here, not gRPC's silent default of 443."""
    if not isinstance(addr, str):
        raise _error("INVALID_ARGUMENT", f"coordinator address must be a string HOST:PORT, not {addr!r}")
    if addr.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return
    for one in addr.split(","):
        host, sep, port = one.strip().rpartition(":")
        ok = sep and host and port.isdigit() and 0 < int(port) < 65536
        if ok and ":" in host:  # IPv6: [::1]:7070
            ok = host.startswith("[") and host.endswith("]")
        if not ok:
            raise _error("INVALID_ARGUMENT",
                         f'coordinator address "{one}" is not HOST:PORT (e.g. "127.0.0.1:7070")')


def _arrays(restored, into=None):
    """{name: array}; a name restored into the caller's object (into=) maps
    to that object (a torch tensor, not the NumPy view the binding filled)."""
    into = into or {}
    return {name: into.get(name, value[0]) for name, value in restored.items()}


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

    @_input_errors
    def save(self, job: str, step: int, tensors: Mapping[str, Any], shard: int = 0,
             num_shards: int = 1, metrics: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
        """Saves this worker's tensors as shard `shard` of `num_shards` of
        `step`. Returns once the shard is durable; the call completing the last
        shard returns once the checkpoint is committed. The arrays must not be
        modified until it returns. Returns {"committed", "bytes", "num_tensors"}."""
        return self._c.save(job, int(step), int(shard), int(num_shards), _tensor_items(tensors),
                            _metrics(metrics))

    @_input_errors
    def save_async(self, job: str, step: int, tensors: Mapping[str, Any], shard: int = 0,
                   num_shards: int = 1, metrics: Optional[Mapping[str, float]] = None) -> SaveHandle:
        """Like save, but returns once the tensors are copied into staging
        buffers: the arrays may be modified right away. One async save per
        client runs at a time (the next waits for it); an earlier failed one
        that nobody waited for makes this raise."""
        return SaveHandle(self._c.save_async(job, int(step), int(shard), int(num_shards),
                                             _tensor_items(tensors), _metrics(metrics)))

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

    @_input_errors
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
        into={name: array or torch tensor}: restores those tensors into the
        given writable, C-contiguous NumPy arrays or CPU torch tensors (e.g. a
        model's parameters) and returns them; every destination's shape and
        dtype is checked before anything is written (a uint16 array takes a
        bfloat16 tensor's bits)."""
        return _arrays(self._c.restore(job, None if step is None else int(step),
                                       None if tensors is None else list(tensors),
                                       None if slices is None else dict(slices), bool(map_files),
                                       _into(into)), into)

    @_input_errors
    def restore_to_file(self, job: str, path: str, step: Optional[int] = None,
                        tensors: Optional[Sequence[str]] = None,
                        slices: Optional[Mapping[str, str]] = None, strict: bool = False,
                        threads: int = 2) -> Dict[str, Any]:
        """Restores `step` (default: the newest) into a local file without
        holding it in memory, as `cairn restore --to=PATH` does: a path
        ending in ".safetensors" gets every tensor (or those in `tensors`,
        `slices` as in restore()), streamed window by window; any other path
        is a checkpoint prefix ("/out/variables"; a directory gets
        DIR/variables) that gets the whole checkpoint, its files copied
        whole. Every checksum is checked on the
        way, and nothing appears at `path` until it is whole and durable.
        Tensors safetensors cannot hold (strings, complex) are skipped, each
        reason listed in "skipped", or refused with strict=True. Returns
        {"step", "tensors", "bytes", "skipped", "path"} (path: where it went)."""
        return self._c.restore_to_file(job, None if step is None else int(step), _fspath(path),
                                       None if tensors is None else list(tensors),
                                       None if slices is None else dict(slices), bool(strict),
                                       int(threads))

    def restore_from(self, prefix_uri: str, tensors: Optional[Sequence[str]] = None,
                     slices: Optional[Mapping[str, str]] = None,
                     map_files: bool = False, into: Optional[Mapping[str, Any]] = None) -> Dict[str, _np.ndarray]:
        """restore_from (the module function), for convenience."""
        return restore_from(prefix_uri, tensors, slices, map_files=map_files, into=into)

    def pin(self, job: str, step: int, pinned: bool = True) -> None:
        self._c.pin(job, int(step), bool(pinned))

    def set_policy(self, job: str, keep_last: int = 0, keep_every_steps: int = 0,
                   keep_every_hours: float = 0.0, keep_best: int = 0, metric: str = "",
                   mode: Optional[str] = None, maximize: Optional[bool] = None) -> None:
        """Sets the job's retention policy, as `cairn policy` does: the rules
        combine as a union; 0 / "" = off; all off = keep everything.
        keep_best keeps the K best by `metric`, the smallest with mode="min"
        (default) or the largest with mode="max" (the CLI's --mode;
        maximize=True is the older spelling of mode="max")."""
        if mode is not None and mode not in ("min", "max"):
            raise _error("INVALID_ARGUMENT", f'mode must be "min" or "max", not {mode!r}')
        if mode is not None and maximize is not None and (mode == "max") != bool(maximize):
            raise _error("INVALID_ARGUMENT", f'mode="{mode}" contradicts maximize={maximize}')
        maximize = (mode == "max") if mode is not None else bool(maximize)
        self._c.set_policy(job, int(keep_last), int(keep_every_steps), float(keep_every_hours or 0),
                           int(keep_best), metric or "", maximize)

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

    def delete(self, job: str, step: int, force: bool = False) -> None:
        """Deletes committed checkpoint `step` of `job` as retention would
        (as `cairn delete`). Refused (cairn.Error, FAILED_PRECONDITION,
        saying why) for the job's newest, a pinned or a leased checkpoint
        unless force=True; NOT_FOUND if `step` is not committed."""
        self._c.delete(job, int(step), bool(force))

    def jobs(self) -> List[Dict[str, Any]]:
        """The jobs the catalog knows: [{"job", "newest_step" (None if
        nothing committed), "newest_committed_at" (Unix seconds or None),
        "committed", "pending", "aborted", "bytes"}], by name."""
        return self._c.jobs()


@_input_errors
def connect(addr: str, token: Optional[str] = None, tls_ca: Optional[str] = None,
            tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
            rpc_timeout_ms: int = 60000, save_timeout_ms: int = 3600000,
            restore_threads: int = 4) -> Client:
    """Connects to the coordinator at HOST:PORT. token: from `cairn token`
    (default: $CAIRN_TOKEN if set). tls_ca (and tls_cert/tls_key for mutual
    TLS): PEM files; any of them makes the connection TLS."""
    _check_address(addr)
    if token is None:
        import os
        token = os.environ.get("CAIRN_TOKEN", "")
    return Client(_cairn.Client.connect(addr, token or "", tls_ca or "", tls_cert or "",
                                        tls_key or "", int(rpc_timeout_ms), int(save_timeout_ms),
                                        int(restore_threads)))


@_input_errors
def restore_file_from(prefix_uri: str, path: str, tensors: Optional[Sequence[str]] = None,
                      slices: Optional[Mapping[str, str]] = None, strict: bool = False,
                      threads: int = 2) -> Dict[str, Any]:
    """Client.restore_to_file straight from a checkpoint prefix (no
    coordinator). Returns {"tensors", "bytes", "skipped", "path"}."""
    return _cairn.restore_file_from_prefix(prefix_uri, _fspath(path),
                                           None if tensors is None else list(tensors),
                                           None if slices is None else dict(slices), bool(strict),
                                           int(threads))


def _fspath(path) -> str:
    import os
    return os.fspath(path)


@_input_errors
def restore_from(prefix_uri: str, tensors: Optional[Sequence[str]] = None,
                 slices: Optional[Mapping[str, str]] = None, threads: int = 4,
                 map_files: bool = False, into: Optional[Mapping[str, Any]] = None) -> Dict[str, _np.ndarray]:
    """Restores straight from a checkpoint prefix (no coordinator), e.g.
    "/data/job/ckpt-100/variables" or a file:// / s3:// URI. map_files, into:
    see Client.restore."""
    return _arrays(_cairn.restore_from_prefix(prefix_uri,
                                              None if tensors is None else list(tensors),
                                              None if slices is None else dict(slices), int(threads),
                                              bool(map_files), _into(into)), into)


from .manager import STRUCTURE_TENSOR, CheckpointManager, Shard  # noqa: E402 - uses the above
