"""cairn.keras: checkpoint a Keras model through Cairn, readable by TensorFlow.

    import cairn.keras
    cb = cairn.keras.ModelCheckpoint("127.0.0.1:7070", job="mnist", save_freq="epoch",
                                     monitor="val_accuracy", save_best_only=True, max_to_keep=3)
    model.fit(x, y, epochs=10, validation_data=(xv, yv), callbacks=[cb])

    fresh = build_model()                       # same architecture, new weights
    step = cairn.keras.restore(fresh, "127.0.0.1:7070", job="mnist")   # the newest
    # ... or TensorFlow itself, from the committed files:
    tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(
        "/data/cairn/mnist/ckpt-%d/variables" % step).assert_consumed()

What is written. Each save is what tf.train.Checkpoint(model=model,
optimizer=model.optimizer).write() would write: TensorFlow itself computes
the object graph and the checkpoint keys
("model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE",
"optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE", the
_CHECKPOINTABLE_OBJECT_GRAPH string), from the values of that moment; Cairn
saves them through a cairn.CheckpointManager (retention, async save,
metrics). So TensorFlow's own Checkpoint.restore accepts every checkpoint,
and assert_consumed() passes on a rebuilt model whose optimizer is built.
The manager's own structure tensor (_cairn/structure) rides along; TF
ignores it.

Works with tf-keras (Keras 2) and with Keras 3 on the TensorFlow backend:
ModelCheckpoint(..., keras="tf_keras" | "keras") picks the Callback base
class; the default is whatever `tf.keras` is.

Steps. save_freq="epoch": the step is the epoch number, 1-based (as Keras's
"{epoch}"); save_freq=N (batches): the optimizer's iteration count, which
a restore brings back, so a resumed run keeps counting upward (Cairn
refuses steps below the newest committed one).
"""

import math
import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np

from . import Client, _error, connect
from .manager import CheckpointManager

__all__ = ["ModelCheckpoint", "restore", "checkpoint_tensors"]


def _tf():
    import tensorflow as tf  # noqa: deferred: importing cairn must not import TensorFlow
    return tf


def _keras_module(flavor):
    """The Keras package whose Callback to extend: "tf_keras", "keras" (3),
    or None = what tf.keras is."""
    if flavor is None:
        tf = _tf()
        version = getattr(tf.keras, "__version__", "3")
        flavor = "keras" if version.startswith("3") else "tf_keras"
    if flavor == "tf_keras":
        import tf_keras
        return tf_keras
    if flavor == "keras":
        import keras
        if not keras.__version__.startswith("3") or keras.backend.backend() != "tensorflow":
            raise _error("FAILED_PRECONDITION", f"cairn.keras needs Keras 3 on the TensorFlow backend, "
                         f"not keras {keras.__version__} on {keras.backend.backend()}")
        return keras
    raise _error("INVALID_ARGUMENT", f'keras must be "tf_keras", "keras" or None, not {flavor!r}')


def _trackables(model, optimizer):
    kwargs = {"model": model}
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    return kwargs


def checkpoint_tensors(model, optimizer=None) -> Dict[str, Any]:
    """{checkpoint key: value} exactly as tf.train.Checkpoint(model=model,
    optimizer=optimizer).write() would save it (with its save_counter), the
    object graph included:
    NumPy arrays for tensors (bfloat16 as ml_dtypes arrays), bytes for
    string scalars, and (full_shape, slice_text, array) for a slice of a
    partitioned (sharded) variable. TensorFlow computes the keys and the
    graph (its checkpoint serialization, without writing files)."""
    tf = _tf()
    ckpt = tf.train.Checkpoint(**_trackables(model, optimizer))
    # Checkpoint.restore creates a save_counter in the restoring object; one
    # saved with the rest lets assert_consumed() pass there (as after save()).
    ckpt.save_counter  # noqa: B018 - the property creates it
    saver = getattr(ckpt, "_saver", None)
    gather = getattr(saver, "_gather_serialized_tensors", None)
    if gather is None:
        raise _error("UNIMPLEMENTED", f"TensorFlow {tf.__version__} has no "
                     "TrackableSaver._gather_serialized_tensors (cairn.keras knows TF 2.13-2.21)")
    serialized = gather(None)[0]
    out = {}
    for per_object in serialized.values():
        for key, value in per_object.items():
            if isinstance(value, dict):  # {slice spec: tensor}
                for spec, part in value.items():
                    spec = spec.numpy().decode() if hasattr(spec, "numpy") else str(spec)
                    if not spec:
                        out[key] = _value(part)
                        continue
                    *dims, text = spec.split(" ")
                    out[key] = out.get(key) if isinstance(out.get(key), list) else []
                    out[key].append(([int(d) for d in dims], text, _value(part)))
            else:
                out[key] = _value(value)
    return out


def _value(t):
    """A serialized tensor's value: a Tensor, or a SaveSpec (tensor_callable.
    Callable: a variable's read, done now) whose .tensor is one."""
    v = t.tensor if hasattr(t, "tensor") and not hasattr(t, "numpy") else t
    v = v() if callable(v) and not hasattr(v, "numpy") else v
    return v.numpy() if hasattr(v, "numpy") else v


def _state(tensors):
    """checkpoint_tensors' result as a CheckpointManager state: nested dicts
    along the "/" of the keys, so the saved names are the keys themselves."""
    root = {}
    for key, value in tensors.items():
        parts = key.split("/")
        if any(not p or "%" in p for p in parts):
            raise _error("INVALID_ARGUMENT", f'checkpoint key "{key}" has an empty part or a "%": '
                         "cairn.keras cannot keep it as it is")
        node = root
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise _error("INVALID_ARGUMENT", f'checkpoint key "{key}" nests under a tensor')
        if isinstance(value, list):
            raise _error("UNIMPLEMENTED", f'"{key}": a partitioned (sharded) variable; cairn.keras '
                         "saves whole variables only")
        node[parts[-1]] = value if isinstance(value, (np.ndarray, bytes, str)) else np.asarray(value)
    return root


def _improved(mode, value, best):
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _mode_for(monitor, mode):
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise _error("INVALID_ARGUMENT", f'mode must be "auto", "min" or "max", not {mode!r}')
    m = monitor.lower()
    return "max" if ("acc" in m or m.startswith("fmeasure") or "auc" in m) else "min"


class _CheckpointLogic:
    """The callback's behaviour, independent of which Keras's Callback it
    extends (ModelCheckpoint builds the class)."""

    def _cairn_init(self, coordinator, job, save_freq, monitor, mode, save_best_only,
                    include_optimizer, verbose, manager, manager_kwargs):
        if save_freq != "epoch" and (not isinstance(save_freq, int) or save_freq <= 0):
            raise _error("INVALID_ARGUMENT", f'save_freq must be "epoch" or a positive int, not {save_freq!r}')
        self.save_freq = save_freq
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.save_best_only = bool(save_best_only)
        self.include_optimizer = bool(include_optimizer)
        self.verbose = verbose
        self.best = None
        self._batches = 0
        if manager is not None:
            self.manager = manager
        else:
            if coordinator is None or job is None:
                raise _error("INVALID_ARGUMENT", "give coordinator and job, or manager")
            self.manager = CheckpointManager(coordinator, job=job, **manager_kwargs)
        self.saved_steps = []

    # Keras hooks -------------------------------------------------------

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save(int(self._optimizer_iterations()), logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch + 1, logs)

    def on_train_end(self, logs=None):
        self.manager.wait_until_finished()

    # ------------------------------------------------------------------

    def _optimizer(self):
        return getattr(self.model, "optimizer", None) if self.include_optimizer else None

    def _optimizer_iterations(self):
        opt = getattr(self.model, "optimizer", None)
        it = getattr(opt, "iterations", None)
        if it is None:
            return self._batches
        return it.numpy() if hasattr(it, "numpy") else int(it)

    def _save(self, step, logs):
        logs = dict(logs or {})
        metrics = {}
        for k, v in logs.items():
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                metrics[k] = f
        if self.save_best_only:
            current = metrics.get(self.monitor)
            if current is None:
                if self.verbose:
                    print(f"cairn.keras: cannot save best model: {self.monitor!r} not in logs "
                          f"({sorted(logs)})")
                return
            if not _improved(self.mode, current, self.best):
                return
            self.best = current
        state = _state(checkpoint_tensors(self.model, self._optimizer()))
        if self.manager.save(step, state, metrics=metrics, force=True):
            self.saved_steps.append(step)
            if self.verbose:
                print(f"cairn.keras: saved step {step} of {self.manager.job}")


_classes = {}


def ModelCheckpoint(coordinator=None, job: Optional[str] = None, *, save_freq="epoch",
                    monitor: str = "val_loss", mode: str = "auto", save_best_only: bool = False,
                    include_optimizer: bool = True, verbose: int = 0,
                    manager: Optional[CheckpointManager] = None, keras: Optional[str] = None,
                    **manager_kwargs):
    """A Keras callback saving model.weights (and the optimizer's variables,
    unless include_optimizer=False) through Cairn, as TensorFlow's
    tf.train.Checkpoint(model=..., optimizer=...) would.

    coordinator, job: where to save (a cairn.CheckpointManager is made with
      **manager_kwargs: max_to_keep, keep_every_n_steps, best_metric,
      async_save, ...); or manager= an existing one.
    save_freq: "epoch" (step = epoch number, 1-based) or N batches (step =
      the optimizer's iteration count).
    monitor, mode ("auto" / "min" / "max"), save_best_only: as Keras's
      ModelCheckpoint; every numeric log value is saved as a metric, so
      best_metric= retention can use it.
    keras: "tf_keras", "keras" (3, TensorFlow backend) or None (tf.keras).
    The callback's saved_steps lists what it saved; training end waits for
    the last (async) save and raises its error."""
    module = _keras_module(keras)
    base = module.callbacks.Callback
    cls = _classes.get(base)
    if cls is None:
        def __init__(self, *args):
            base.__init__(self)
            self._cairn_init(*args)

        cls = type("ModelCheckpoint", (_CheckpointLogic, base), {
            "__init__": __init__,
            "__doc__": ModelCheckpoint.__doc__,
            "__module__": __name__,
        })
        _classes[base] = cls
    return cls(coordinator, job, save_freq, monitor, mode, save_best_only, include_optimizer,
               verbose, manager, manager_kwargs)


def restore(model, coordinator=None, job: Optional[str] = None, step: Optional[int] = None, *,
            optimizer: Any = "model", manager: Optional[CheckpointManager] = None,
            assert_consumed: bool = True, read_with: str = "auto"):
    """Restores committed `step` of `job` (default: the newest) into a
    rebuilt `model` (and `optimizer`; default model.optimizer, None to skip)
    with TensorFlow's own tf.train.Checkpoint.restore, and returns the step.
    A local checkpoint is read where it lies; a remote one (s3://) is first
    restored by Cairn into a temporary local checkpoint (read_with="cairn"
    does that for a local one too, every CRC checked by Cairn;
    "tensorflow" insists on TF reading the files). The optimizer is
    built for the model's trainable variables first, so its slots exist to
    restore into; with assert_consumed (default) every value of the
    checkpoint must find its variable and every variable its value."""
    tf = _tf()
    if manager is not None:
        client, job = manager._client, manager.job
    elif isinstance(coordinator, Client):
        client = coordinator
    else:
        client = connect(coordinator)
    if job is None:
        raise _error("INVALID_ARGUMENT", "give job (or manager)")
    info = client.get(job, step)
    if optimizer == "model":
        optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and hasattr(optimizer, "build"):
        # Keras 3 says `built`; tf-keras's optimizer holds only its iteration
        # count (and learning rate) until built.
        built = getattr(optimizer, "built", None)
        if built is None:
            built = len(optimizer.variables) > 2
        if not built:
            optimizer.build(model.trainable_variables)
    prefix = info.prefix_uri
    if prefix.startswith("file://"):
        prefix = prefix[len("file://"):]
    if read_with not in ("auto", "cairn", "tensorflow"):
        raise _error("INVALID_ARGUMENT", f'read_with must be "auto", "cairn" or "tensorflow", '
                     f"not {read_with!r}")
    if read_with == "tensorflow" and "://" in prefix:
        raise _error("FAILED_PRECONDITION", f"{info.prefix_uri}: TensorFlow cannot read it where "
                     'it lies; use read_with="auto"')
    tmp = None
    if "://" in prefix or read_with == "cairn":
        tmp = tempfile.TemporaryDirectory(prefix="cairn-keras-")
        raw = client._c.restore(job, info.step, None, None, False, None)
        names, tensors = [], []
        for name, (array, _, _, dtype) in raw.items():
            if dtype == "bfloat16":
                array = array.view(tf.bfloat16.as_numpy_dtype)
            names.append(name)
            tensors.append(tf.constant(array, dtype=tf.as_dtype(dtype)))
        prefix = os.path.join(tmp.name, "variables")
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=tensors)
    try:
        status = tf.train.Checkpoint(**_trackables(model, optimizer)).restore(prefix)
        if assert_consumed:
            status.assert_consumed()
        else:
            status.expect_partial()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return info.step
