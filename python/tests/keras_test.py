"""cairn.keras against real Keras (tf-keras and Keras 3 on TensorFlow), in
one process: the seeds' flow (train, checkpoint through Cairn every N
epochs, build a new model, restore the newest, evaluate to the same
accuracy), TensorFlow's own Checkpoint.restore(...).assert_consumed() on
what the callback wrote, save_best_only with a monitored metric, and
retention. Exits 77 ("missing dependency: tensorflow") where TensorFlow is
not importable (scripts/pyenv.sh makes the environment that has it)."""

import os
import sys
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
import cairn.keras
from cluster_util import Cluster

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster(writers=2, prefix="cairn-keras-")


def tearDownModule():
    CLUSTER.stop()


def data(n=512, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8).astype(np.int64)
    return x, y


def model_of(keras, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input(shape=(4,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def opt_vars(model):
    v = model.optimizer.variables   # a method in tf-keras, a list in Keras 3
    return list(v() if callable(v) else v)


def ckpt_path(job, step):
    return os.path.join(CLUSTER.storage, job, f"ckpt-{step}", "variables")


class SeedsFlow(unittest.TestCase):
    def flow(self, keras, flavor, job):
        x, y = data()
        model = model_of(keras, seed=0)
        batches = len(x) // 64
        cb = cairn.keras.ModelCheckpoint(CLUSTER.addr, job, save_freq=3 * batches, keras=flavor,
                                         max_to_keep=2)
        model.fit(x, y, epochs=9, batch_size=64, callbacks=[cb], verbose=0)
        # Every 3 epochs, the step is the optimizer's iteration count.
        self.assertEqual(cb.saved_steps, [3 * batches, 6 * batches, 9 * batches])
        mgr = cairn.CheckpointManager(CLUSTER.addr, job=job)
        self.assertEqual(mgr.all_steps(), [6 * batches, 9 * batches])  # max_to_keep=2
        loss, acc = model.evaluate(x, y, verbose=0)
        self.assertGreater(acc, 0.8)

        # A new model, the newest checkpoint restored: the same accuracy,
        # the same weights and optimizer state, bit for bit.
        fresh = model_of(keras, seed=5)
        self.assertNotAlmostEqual(fresh.evaluate(x, y, verbose=0)[1], acc, places=3)
        step = cairn.keras.restore(fresh, CLUSTER.addr, job=job)
        self.assertEqual(step, 9 * batches)
        self.assertEqual(fresh.evaluate(x, y, verbose=0), [loss, acc])
        for a, b in zip(fresh.weights, model.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        self.assertEqual(int(np.asarray(fresh.optimizer.iterations)), 9 * batches)

        # Read by Cairn (every CRC) into a temporary checkpoint TF restores
        # from: the path a remote (s3://) checkpoint takes.
        via = model_of(keras, seed=8)
        self.assertEqual(cairn.keras.restore(via, CLUSTER.addr, job=job, step=6 * batches,
                                             read_with="cairn"), 6 * batches)
        self.assertEqual(int(np.asarray(via.optimizer.iterations)), 6 * batches)
        direct = model_of(keras, seed=9)
        cairn.keras.restore(direct, CLUSTER.addr, job=job, step=6 * batches, read_with="tensorflow")
        for a, b in zip(via.weights + opt_vars(via), direct.weights + opt_vars(direct)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        self.assertFalse(all(np.array_equal(np.asarray(a), np.asarray(b))
                             for a, b in zip(via.weights, model.weights)))   # step 6b, not 9b

        # TensorFlow's own restore accepts the committed files as they are.
        other = model_of(keras, seed=6)
        other.optimizer.build(other.trainable_variables)
        tf.train.Checkpoint(model=other, optimizer=other.optimizer).restore(
            ckpt_path(job, step)).assert_consumed()
        for a, b in zip(other.weights, model.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        reader = tf.train.load_checkpoint(ckpt_path(job, step))
        self.assertIn("_CHECKPOINTABLE_OBJECT_GRAPH", reader.get_variable_to_shape_map())

        # Training goes on from the restored model: steps keep counting up.
        cb2 = cairn.keras.ModelCheckpoint(CLUSTER.addr, job, save_freq=3 * batches, keras=flavor)
        fresh.fit(x, y, epochs=3, batch_size=64, callbacks=[cb2], verbose=0)
        self.assertEqual(cb2.saved_steps, [12 * batches])

    def test_tf_keras(self):
        self.flow(tf_keras, "tf_keras", "seeds-tf-keras")

    def test_keras3(self):
        try:
            import keras
        except ImportError:
            self.skipTest("Keras 3 not installed")
        if not keras.__version__.startswith("3"):
            self.skipTest(f"keras {keras.__version__} is not Keras 3")
        self.flow(keras, "keras", "seeds-keras3")


class SaveBestOnly(unittest.TestCase):
    def test_monitor_max(self):
        x, y = data(128)
        model = model_of(tf_keras, seed=0)
        scores = [0.5, 0.7, 0.6, 0.9, 0.8]

        class Score(tf_keras.callbacks.Callback):   # runs first: adds the monitored value
            def on_epoch_end(self, epoch, logs=None):
                logs["score"] = scores[epoch]

        cb = cairn.keras.ModelCheckpoint(CLUSTER.addr, "best", monitor="score", mode="max",
                                         save_best_only=True, keras="tf_keras", async_save=False)
        model.fit(x, y, epochs=5, batch_size=64, callbacks=[Score(), cb], verbose=0)
        self.assertEqual(cb.saved_steps, [1, 2, 4])  # epochs whose score improved
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="best")
        self.assertEqual(mgr.all_steps(), [1, 2, 4])
        self.assertEqual(mgr.metrics(4)["score"], 0.9)
        self.assertIn("loss", mgr.metrics(4))

    def test_auto_mode_and_bad_arguments(self):
        self.assertEqual(cairn.keras._mode_for("val_accuracy", "auto"), "max")
        self.assertEqual(cairn.keras._mode_for("val_loss", "auto"), "min")
        with self.assertRaises(cairn.Error):
            cairn.keras.ModelCheckpoint(CLUSTER.addr, "x", save_freq=0, keras="tf_keras")


if __name__ == "__main__":
    unittest.main(verbosity=2)
