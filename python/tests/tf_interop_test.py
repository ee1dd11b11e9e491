"""Real TensorFlow against Cairn, both ways, in one process (TF's import is
the expensive part). Run by ctest with the test environment's python
(scripts/pyenv.sh); exits 77 ("missing dependency: tensorflow") where
TensorFlow is not importable.

TF writes, Cairn reads, every byte: a TF2 tf.train.Checkpoint +
CheckpointManager(max_to_keep=3) of a Keras model and its optimizer, written
from 4 logical CPU devices (4 data files); TF1 partitioned variables
(fixed_size_partitioner, min_max_variable_partitioner); every dtype TF saves
(SaveV2), scalars, empty and long string tensors; tf-keras ModelCheckpoint
("training/cp-{epoch:04d}.ckpt") and save_weights, adopted with `cairn adopt`.
Checked: `cairn inspect --json`, `cairn verify`, `cairn restore` (CLI) and
the Python client, against tf.train.load_checkpoint(...).get_tensor(...).

Cairn writes, TF reads: 4 workers save whole tensors and row slices of an
embedding through the service; tf.train.load_checkpoint reads every value,
tf.train.latest_checkpoint names the newest step; an adopted TF2
checkpoint restored by Cairn restores into a rebuilt Keras model with
Checkpoint.restore(...).assert_consumed().
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import numpy as np
    import tensorflow as tf
    import tf_keras
except ImportError as e:
    print(f"missing dependency: tensorflow / tf-keras ({e}); scripts/pyenv.sh makes the "
          "environment, ctest gets it as CAIRN_TEST_PYTHON")
    sys.exit(77)

import cairn
from cluster_util import BIN_DIR, Cluster, run_threads

# Four logical CPUs, before TF initializes its devices: variables placed on
# each make TF write data-0000N-of-00004.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 4)

CAIRN = os.path.join(BIN_DIR, "cairn")
CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster(writers=2, prefix="cairn-tf-")


def tearDownModule():
    CLUSTER.stop()


def cli(*args, check=True):
    r = subprocess.run([CAIRN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"cairn {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def raw(a):
    """Bytes-comparable view: bfloat16 (TF's ml_dtypes) as its uint16 bits."""
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        return a.view(np.uint16)
    return a


def tf_tensors(prefix):
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {name: (reader.get_tensor(name), dtypes[name]) for name in dtypes}


class Checks(unittest.TestCase):
    def assertSameArray(self, got, want, what):
        if isinstance(want, bytes):  # TF's reader gives a scalar string as bytes
            self.assertEqual(np.shape(got), (), what)
            self.assertEqual(np.asarray(got, dtype=object).item(), want, what)
            return
        got, want = raw(got), raw(want)
        self.assertEqual(tuple(got.shape), tuple(want.shape), what)
        if want.dtype == object:
            self.assertEqual(got.dtype, object, what)
            self.assertEqual(got.ravel().tolist(), want.ravel().tolist(), what)
        else:
            self.assertEqual(got.dtype.itemsize, want.dtype.itemsize, what)
            self.assertEqual(got.tobytes(), want.tobytes(), what)

    def assertCairnReadsAsTF(self, prefix, num_shards=None):
        """inspect, verify, CLI restore and Python restore of `prefix` agree
        with TensorFlow's reader on every tensor; returns TF's tensors."""
        want = tf_tensors(prefix)
        inspected = json.loads(cli("inspect", prefix, "--json").stdout)
        if num_shards is not None:
            self.assertEqual(inspected["num_shards"], num_shards, prefix)
        listed = {t["name"]: t for t in inspected["tensors"]}
        self.assertEqual(set(listed), set(want), prefix)
        for name, (value, dtype) in want.items():
            self.assertEqual(listed[name]["dtype"], dtype.name, name)
            self.assertEqual(list(listed[name]["shape"]), list(np.shape(value)), name)
        cli("verify", prefix)
        got = cairn.restore_from(prefix)
        for name, (value, _) in want.items():
            self.assertSameArray(got[name], value, f"{prefix}: {name}")
        # The CLI's bundle output is itself a checkpoint TF reads, every byte.
        out = tempfile.mkdtemp(prefix="cairn-tf-restore-")
        try:
            cli("restore", f"--from={prefix}", f"--to={out}/variables")
            again = tf_tensors(f"{out}/variables")
            self.assertEqual(set(again), set(want))
            for name, (value, dtype) in want.items():
                self.assertEqual(again[name][1], dtype, name)
                self.assertSameArray(again[name][0], value, f"restored {name}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return want


def make_model(seed=0):
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(8,)),
        tf_keras.layers.Dense(16, activation="relu"),
        tf_keras.layers.Dense(3),
    ])
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def data(n=256, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y


class TFWritesCairnReads(Checks):
    def test_tf2_checkpoint_manager_four_shards(self):
        d = tempfile.mkdtemp(prefix="cairn-tf2-")
        model = make_model()
        x, y = data()
        # Variables on the 4 logical devices. TF2 writes one data file per
        # host, whatever the devices (checked here); its sharding policy
        # (MaxShardSizePolicy) is what makes it write several.
        extra = []
        for i in range(4):
            with tf.device(f"/device:CPU:{i}"):
                extra.append(tf.Variable(tf.fill([64, 32], float(i)) + tf.range(32, dtype=tf.float32),
                                         name=f"on_cpu{i}"))
        self.assertEqual(sorted({v.device for v in extra}),
                         [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in range(4)])
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                   extra={f"v{i}": v for i, v in enumerate(extra)})
        manager = tf.train.CheckpointManager(ckpt, d, max_to_keep=3)
        sharded = tf.train.CheckpointOptions(
            experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=8300))
        for i in range(5):
            model.fit(x, y, epochs=1, batch_size=64, verbose=0)
            manager.save(options=sharded if i > 0 else None)
        self.assertEqual([os.path.basename(p) for p in manager.checkpoints], ["ckpt-3", "ckpt-4", "ckpt-5"])
        data_files = [f for f in os.listdir(d) if f.startswith("ckpt-5.data-")]
        num_shards = len(data_files)
        self.assertGreater(num_shards, 2, sorted(os.listdir(d)))
        self.assertIn(f"ckpt-5.data-{num_shards - 1:05d}-of-{num_shards:05d}", data_files)
        for p in manager.checkpoints:
            want = self.assertCairnReadsAsTF(p, num_shards=num_shards)
            self.assertIn("_CHECKPOINTABLE_OBJECT_GRAPH", want)
            self.assertIn("model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE", want)

        # Adopted: the state file's 3 steps (ckpt-1, -2 are gone), then
        # restored to local disk by Cairn and into a rebuilt model by TF.
        r = cli("adopt", f"--coordinator={CLUSTER.addr}", "--job=tf2", f"--from={d}", "--json")
        self.assertEqual(json.loads(r.stdout)["adopted"], [3, 4, 5], r.stdout)
        out = tempfile.mkdtemp(prefix="cairn-tf2-restored-")
        cli("restore", f"--coordinator={CLUSTER.addr}", "--job=tf2", f"--to={out}/variables")
        rebuilt = make_model(seed=7)
        rebuilt.optimizer.build(rebuilt.trainable_variables)  # its slots, to restore into
        rebuilt_extra = {f"v{i}": tf.Variable(tf.zeros([64, 32])) for i in range(4)}
        status = tf.train.Checkpoint(model=rebuilt, optimizer=rebuilt.optimizer,
                                     extra=rebuilt_extra).restore(f"{out}/variables")
        status.assert_consumed()
        for a, b in zip(rebuilt.weights, model.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        self.assertEqual(int(rebuilt.optimizer.iterations.numpy()), int(model.optimizer.iterations.numpy()))
        for a, b in zip(rebuilt.optimizer.variables(), model.optimizer.variables()):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        for i in range(4):
            np.testing.assert_array_equal(rebuilt_extra[f"v{i}"].numpy(), extra[i].numpy())
        self.assertAlmostEqual(rebuilt.evaluate(x, y, verbose=0)[1], model.evaluate(x, y, verbose=0)[1])
        shutil.rmtree(d)
        shutil.rmtree(out)

    def test_tf1_partitioned_variables(self):
        d = tempfile.mkdtemp(prefix="cairn-tf1-")
        prefix = os.path.join(d, "model.ckpt-1000")
        g = tf.Graph()
        with g.as_default():
            v1 = tf.compat.v1
            with tf.device("/device:CPU:0"):
                emb = v1.get_variable("emb", shape=[10, 6], dtype=tf.float32,
                                      partitioner=v1.fixed_size_partitioner(3),
                                      initializer=v1.random_normal_initializer(seed=1))
            with tf.device("/device:CPU:1"):
                big = v1.get_variable("big", shape=[300, 40], dtype=tf.float32,
                                      partitioner=v1.min_max_variable_partitioner(
                                          max_partitions=4, min_slice_size=8 << 10),
                                      initializer=v1.random_normal_initializer(seed=2))
            # One variable per logical device: the sharded Saver writes one
            # data file per device (TF1's way to get many data files).
            per_device = []
            for i in range(4):
                with tf.device(f"/device:CPU:{i}"):
                    per_device.append(v1.get_variable(f"dev{i}", shape=[5], dtype=tf.int64,
                                                      initializer=v1.constant_initializer(i)))
            saver = v1.train.Saver(sharded=True)
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                emb_value, big_value = sess.run([tf.convert_to_tensor(emb), tf.convert_to_tensor(big)])
                self.assertEqual(len(list(big)), 4)
                saved = saver.save(sess, prefix)
        self.assertEqual(saved, prefix)
        self.assertTrue(os.path.exists(prefix + ".data-00003-of-00004"), sorted(os.listdir(d)))
        want = self.assertCairnReadsAsTF(prefix, num_shards=4)
        np.testing.assert_array_equal(want["emb"][0], emb_value)
        np.testing.assert_array_equal(want["dev3"][0], np.full(5, 3))
        inspected = {t["name"]: t for t in json.loads(cli("inspect", prefix, "--json").stdout)["tensors"]}
        self.assertEqual(len(inspected["emb"]["slices"]), 3, inspected["emb"])
        self.assertEqual(len(inspected["big"]["slices"]), 4, inspected["big"])
        # Re-cut: slices that cross TF's partitions, through the library and the CLI.
        got = cairn.restore_from(prefix, tensors=["emb", "big"], slices={"emb": "3,5:1,4", "big": "70,100:-"})
        np.testing.assert_array_equal(got["emb"], emb_value[3:8, 1:5])
        np.testing.assert_array_equal(got["big"], big_value[70:170])
        out = os.path.join(d, "cut.safetensors")
        cli("restore", f"--from={prefix}", f"--to={out}", "--tensor=big", "--slice=big=300 40 70,100:-")
        with open(out, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            body = f.read()
        lo, hi = header["big"]["data_offsets"]
        np.testing.assert_array_equal(np.frombuffer(body[lo:hi], np.float32).reshape(100, 40),
                                      big_value[70:170])
        shutil.rmtree(d)

    def test_every_dtype(self):
        d = tempfile.mkdtemp(prefix="cairn-dtypes-")
        prefix = os.path.join(d, "all")
        rng = np.random.default_rng(3)
        values = {}
        for dt in (tf.bfloat16, tf.half, tf.float32, tf.float64):
            values[f"float/{dt.name}"] = tf.constant(rng.normal(size=(3, 5)), dtype=dt)
        for dt in (tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64):
            lo, hi = dt.min, dt.max
            values[f"int/{dt.name}"] = tf.constant(
                np.array([lo, hi, 0, 1, lo // 3 if lo else 5, hi // 7], dtype=dt.as_numpy_dtype))
        values["bool"] = tf.constant([True, False, True])
        values["complex64"] = tf.constant(rng.normal(size=4) + 1j * rng.normal(size=4), tf.complex64)
        values["complex128"] = tf.constant(rng.normal(size=(2, 2)) + 1j, tf.complex128)
        strings = [f"s{i}".encode() * (i % 13) for i in range(5000)]
        strings[17] = b"x" * 100_000
        strings[18] = bytes(range(256)) * 40
        values["strings"] = tf.constant(np.array(strings, dtype=object).reshape(50, 100))
        values["scalar/float"] = tf.constant(3.5)
        values["scalar/int64"] = tf.constant(-9, tf.int64)
        values["scalar/string"] = tf.constant(b"hello")
        values["scalar/bool"] = tf.constant(True)
        values["empty/float"] = tf.zeros([0, 4])
        values["empty/int32"] = tf.zeros([3, 0], tf.int32)
        values["empty/string"] = tf.constant(np.array([], dtype=object), tf.string)
        names = sorted(values)
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[values[n] for n in names])
        want = self.assertCairnReadsAsTF(prefix)
        self.assertEqual(len(want), len(values))
        for n, v in values.items():
            self.assertEqual(want[n][1], v.dtype, n)
            self.assertSameArray(want[n][0], v.numpy(), n)
        shutil.rmtree(d)

    def test_keras_model_checkpoint_and_save_weights_adopted(self):
        d = tempfile.mkdtemp(prefix="cairn-keras-")
        training = os.path.join(d, "training")
        model = make_model()
        x, y = data()
        batches = len(x) // 64
        # The seeds' callback: every 2 epochs (save_freq counts batches).
        cb = tf_keras.callbacks.ModelCheckpoint(os.path.join(training, "cp-{epoch:04d}.ckpt"),
                                                save_weights_only=True, save_freq=2 * batches)
        weights = {}

        class Remember(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                weights[epoch + 1] = [w.numpy().copy() for w in model.weights]

        model.fit(x, y, epochs=6, batch_size=64, callbacks=[cb, Remember()], verbose=0)
        self.assertEqual(tf.train.latest_checkpoint(training), os.path.join(training, "cp-0006.ckpt"))
        r = cli("adopt", f"--coordinator={CLUSTER.addr}", "--job=keras", f"--from={training}", "--json")
        self.assertEqual(json.loads(r.stdout)["adopted"], [2, 4, 6], r.stdout)
        for epoch in (2, 4, 6):
            self.assertCairnReadsAsTF(os.path.join(training, f"cp-{epoch:04d}.ckpt"))
            out = os.path.join(d, f"restored-{epoch}")
            cli("restore", f"--coordinator={CLUSTER.addr}", "--job=keras", f"--step={epoch}",
                f"--to={out}/variables")
            rebuilt = make_model(seed=9)
            rebuilt.load_weights(f"{out}/variables").assert_existing_objects_matched().expect_partial()
            for a, b in zip(rebuilt.weights, weights[epoch]):
                np.testing.assert_array_equal(a.numpy(), b)

        # model.save_weights: one checkpoint, its step from --step-pattern.
        saved = os.path.join(d, "weights")
        model.save_weights(os.path.join(saved, "epoch90-iteration0-loss0,015062285.ckpt"))
        r = cli("adopt", f"--coordinator={CLUSTER.addr}", "--job=weights", f"--from={saved}", "--json",
                check=False)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("--step-pattern", r.stdout)
        r = cli("adopt", f"--coordinator={CLUSTER.addr}", "--job=weights", f"--from={saved}", "--json",
                r"--step-pattern=epoch(\d+)")
        self.assertEqual(json.loads(r.stdout)["adopted"], [90], r.stdout)
        restored = cairn.connect(CLUSTER.addr).restore("weights", 90)
        want = tf_tensors(os.path.join(saved, "epoch90-iteration0-loss0,015062285.ckpt"))
        self.assertEqual(set(restored), set(want))
        for name, (value, _) in want.items():
            self.assertSameArray(restored[name], value, name)
        shutil.rmtree(d)


class CairnWritesTFReads(Checks):
    def test_four_workers_whole_tensors_and_row_slices(self):
        client = cairn.connect(CLUSTER.addr)
        rng = np.random.default_rng(5)
        emb = rng.normal(size=(1000, 16)).astype(np.float32)
        whole = {
            "dense/kernel": rng.normal(size=(16, 8)).astype(np.float32),
            "dense/bias": rng.normal(size=8),
            "step": np.array(0, np.int64),
            "mask": rng.integers(0, 2, size=(7,)).astype(bool),
            "codes": rng.integers(-100, 100, size=(3, 3)).astype(np.int8),
        }
        names = sorted(whole)
        rows = [0, 250, 600, 700, 1000]   # uneven row slices

        def worker(i, step):
            tensors = {n: whole[n] + step if whole[n].dtype != bool else whole[n]
                       for n in names[i::4]}
            lo, hi = rows[i], rows[i + 1]
            tensors["emb"] = cairn.Tensor(emb[lo:hi] + step, full_shape=[1000, 16],
                                          slice=f"{lo},{hi - lo}:-")
            return client.save("tfreads", step, tensors, shard=i, num_shards=4)

        for step in (10, 20):
            run_threads(lambda i: worker(i, step), 4)
        root = os.path.join(CLUSTER.storage, "tfreads")
        self.assertEqual(tf.train.latest_checkpoint(root), os.path.join(root, "ckpt-20", "variables"))
        for step in (10, 20):
            got = tf_tensors(os.path.join(root, f"ckpt-{step}", "variables"))
            self.assertEqual(set(got), set(names) | {"emb"})
            for n in names:
                want = whole[n] + step if whole[n].dtype != bool else whole[n]
                self.assertSameArray(got[n][0], want, n)
            self.assertSameArray(got["emb"][0], emb + step, "emb")
            # TF's own slice lookup across the workers' slices.
            sliced = tf.raw_ops.RestoreV2(prefix=os.path.join(root, f"ckpt-{step}", "variables"),
                                          tensor_names=["emb"], shape_and_slices=["1000 16 200,500:3,10"],
                                          dtypes=[tf.float32])[0]
            np.testing.assert_array_equal(sliced.numpy(), (emb + step)[200:700, 3:13])


class JaxState(Checks):
    def test_jax_arrays_saved_without_a_copy_and_read_by_tf(self):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            self.skipTest("jax not installed")
        state = {"w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4),
                 "half": jnp.linspace(-2, 2, 8, dtype=jnp.bfloat16),
                 "step": 7, "name": "run-1"}
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="jax", async_save=True)
        self.assertTrue(mgr.save(1, state, force=True))
        # Immutable state: the save runs on a thread from the arrays themselves.
        self.assertIsInstance(mgr._pending[1], cairn.manager._ThreadSave)
        mgr.wait_until_finished()
        back = mgr.restore(1)
        np.testing.assert_array_equal(back["w"], np.asarray(state["w"]))
        self.assertEqual(back["half"].dtype.name, "bfloat16")
        self.assertEqual(back["half"].tobytes(), np.asarray(state["half"]).tobytes())
        self.assertEqual((back["step"], back["name"]), (7, "run-1"))
        got = tf_tensors(os.path.join(CLUSTER.storage, "jax", "ckpt-1", "variables"))
        self.assertEqual(got["half"][1], tf.bfloat16)
        self.assertSameArray(got["half"][0], np.asarray(state["half"]), "half")
        # A failed background save raises from wait_until_finished: step 5
        # was begun by another worker as 1 of 2 shards, this one says 1 of 1.
        cairn.connect(CLUSTER.addr).save("jax", 5, {"other": np.ones(2)}, shard=1, num_shards=2)
        self.assertTrue(mgr.save(5, state, force=True))
        with self.assertRaisesRegex(cairn.Error, "2 shards"):
            mgr.wait_until_finished()
        mgr.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
