"""torch tensors <-> what the native layer takes: dtype names, zero-copy
views and address-and-size save items of CPU tensors, and the one host copy
of a device tensor. cairn never imports torch itself: these work on the
torch module the program imported (a torch tensor cannot exist otherwise).
"""

import sys as _sys
import threading

from . import _cairn


def _torch():
    """The torch module if the program imported it (a torch tensor cannot
    exist otherwise), else None: cairn never imports torch itself."""
    return _sys.modules.get("torch")


# torch dtype name -> TensorFlow dtype name, for the dtypes both have.
_TORCH_TO_TF = {
    "float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8",
    "bool": "bool", "complex64": "complex64", "complex128": "complex128",
}


def _is_torch_tensor(obj) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


_TORCH_DTYPE_NAMES = {}  # torch.dtype -> "float32", ... (str(dtype) is slow per tensor)


def _torch_dtype_name(t) -> str:
    name = _TORCH_DTYPE_NAMES.get(t.dtype)
    if name is None:
        name = _TORCH_DTYPE_NAMES[t.dtype] = str(t.dtype).replace("torch.", "")
    return name


def _torch_view(name, t, writable=False):
    """A NumPy view of a CPU torch tensor's memory (no copy) and the TF dtype
    name to give with it. bfloat16 (no NumPy dtype) is viewed as its raw
    int16 bits; `name` is for messages."""
    dtype = _torch_dtype_name(t)
    tf_dtype = _TORCH_TO_TF.get(dtype)
    if tf_dtype is None:
        raise ValueError(f'tensor "{name}": torch dtype {dtype} has no TensorFlow equivalent')
    if not t.is_cpu:
        if writable:
            raise ValueError(f'into["{name}"]: a {t.device.type} tensor cannot be restored into '
                             "in place; restore into a CPU tensor and copy it over")
        t = _to_host(name, t)
    if not t.is_contiguous():
        raise ValueError(f'tensor "{name}": the tensor is not contiguous (use .contiguous())')
    # A lazy conjugate or negation (x.conj(), a view of one) holds the values
    # before the operation in its memory: materialised to save, refused to
    # restore into (the values would land in a copy).
    if writable and (t.is_conj() or t.is_neg()):
        raise ValueError(f'into["{name}"]: a lazily conjugated or negated tensor cannot be '
                         "restored into in place; restore into a plain tensor")
    t = t.detach().resolve_conj().resolve_neg()
    if dtype == "bfloat16":
        return t.view(_torch().int16).numpy(), "bfloat16"
    return t.numpy(), tf_dtype


_TABLES = {}  # what _torch_item and the save's TorchBlock look up, made once (_torch_tables)


def _torch_tables():
    """Built the first time a torch tensor is saved (torch is imported by
    then): "direct", torch.dtype -> (TensorFlow dtype name, element size);
    "strided", torch.strided; "block", the arguments of _cairn.TorchBlock
    ({torch.dtype: TensorFlow dtype name}, torch.strided, the Tensor method
    giving a tensor's untyped storage)."""
    if not _TABLES:
        torch = _torch()
        dtypes = {getattr(torch, n): tf for n, tf in _TORCH_TO_TF.items()}
        direct = {}
        for d, tf in dtypes.items():
            scalar = torch.empty((), dtype=d)
            _torch_dtype_name(scalar)  # the names of the dtypes a save meets most, up front
            direct[d] = (tf, scalar.element_size())
        _TABLES["direct"] = direct
        _TABLES["strided"] = torch.strided
        # torch 2 calls it untyped_storage; torch 1.13 has it as _storage.
        storage_of = getattr(torch.Tensor, "untyped_storage", None) or torch.Tensor._storage
        _TABLES["block"] = (dtypes, torch.strided, storage_of)
    return _TABLES


def _torch_item(name, t, full_shape=None, slice_spec=None):
    """The save item of torch tensor `t` (see ToSaveTensors in convert.cc):
    a plain CPU tensor (contiguous, strided, no lazy conjugate or negation)
    goes by its memory's address and size, which costs a fifth of making a
    NumPy view of it (a state_dict of 10,000 small tensors notices); any
    other goes through _torch_view (checks, host copy)."""
    tables = _torch_tables()
    direct = tables["direct"].get(t.dtype)
    if direct is not None and t.is_cpu and t.layout is tables["strided"] and t.is_contiguous() \
            and not t.is_neg() and not (direct[0].startswith("complex") and t.is_conj()):
        # The item holds a detached alias: it keeps this storage alive even
        # if another thread gives `t` a new one (p.data = ..., set_) mid-save.
        alias = t.detach()
        return (name, alias, direct[0], full_shape, slice_spec, alias.data_ptr(),
                alias.numel() * direct[1], alias.shape)
    buffer, dtype = _torch_view(name, t)
    return (name, buffer, dtype, full_shape, slice_spec)


def _add_torch(block, names, tensors):
    """Adds whole torch tensors (names[i] is tensors[i]'s) to `block`, a
    _cairn.TorchBlock (python/torch_block.h), which takes the plain CPU
    ones at a third of _torch_item's cost per tensor; returns the save items
    of the others, through _torch_view (the block refused exactly what
    _torch_item would not take by address: checks, materialised views, host
    copies)."""
    refused = block.add(names, tensors)
    return [(names[i], *_torch_view(names[i], tensors[i]), None, None) for i in refused]


# (thread, tensor name, dtype, numel) -> a pinned host buffer for device ->
# host copies, reused by the next save of that tensor. Keyed by name: two
# tensors of one save never share a buffer (the save reads them all after
# every copy); by thread: Clients are used from several threads at once.
_PINNED = {}


def _to_host(name, t):
    """One copy of a device tensor to host memory: into a pinned staging
    buffer (reused per thread, name, dtype and size) when torch has CUDA,
    else .cpu(). The bytes are read by the save that follows (an async save
    copies them to its own staging before returning)."""
    torch = _torch()
    if torch.cuda.is_available() and t.device.type == "cuda":
        return _stage(name, t, lambda n, dtype: torch.empty(n, dtype=dtype, pin_memory=True))
    return t.cpu()


def _stage(name, t, alloc):
    """Copies `t` into the staging buffer for (thread, name, dtype, numel),
    allocating it with alloc(numel, dtype) the first time; returns it shaped
    like `t` (contiguous). Split from _to_host so it is tested on CPU."""
    key = (threading.get_ident(), name, t.dtype, t.numel())
    buf = _PINNED.get(key)
    if buf is None:
        buf = _PINNED[key] = alloc(t.numel(), t.dtype)
    buf.copy_(t.reshape(-1))
    return buf.view(t.shape)
