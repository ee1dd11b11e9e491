"""The cairn Python package against a real local cluster (2 shard writers).

Run: PYTHONPATH=build/python CAIRN_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_client
(from python/tests; ctest does this as python_client_test).
"""

import json
import os
import subprocess
import sys
import unittest
import warnings

import numpy as np

import cairn
from cluster_util import BIN_DIR, Cluster, optional_torch, requires_torch, run_threads

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster(writers=2)


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.client = cairn.connect(CLUSTER.addr)
        rng = np.random.default_rng(7)
        self.emb = rng.standard_normal((10, 4)).astype(np.float32)
        self.dense = rng.standard_normal((3, 5)).astype(np.float64)
        self.counts = np.arange(12, dtype=np.int64).reshape(3, 4)
        self.misc = {
            "f16": rng.standard_normal(6).astype(np.float16),
            "i8": np.array([-128, -1, 0, 127], dtype=np.int8),
            "i16": np.array([-3, 4], dtype=np.int16),
            "i32": np.array([[1, -2], [3, 4]], dtype=np.int32),
            "u8": np.arange(5, dtype=np.uint8),
            "u16": np.array([65535, 1], dtype=np.uint16),
            "u32": np.array([4294967295], dtype=np.uint32),
            "u64": np.array([2**64 - 1, 0], dtype=np.uint64),
            "flag": np.array([True, False, True]),
            "scalar": np.array(2.5, dtype=np.float32),
            "c64": np.array([1 + 2j], dtype=np.complex64),
        }
        # bfloat16 bits of 1.0, -2.0, 0.5
        self.bf16_bits = np.array([0x3F80, 0xC000, 0x3F00], dtype=np.uint16)

    def save_two_workers(self, job, step, metrics=None):
        def worker(i):
            client = cairn.connect(CLUSTER.addr)
            if i == 0:
                tensors = {"dense": self.dense, "emb": (self.emb[:5], [10, 4], "0,5:-"),
                           "bf16": cairn.Tensor(self.bf16_bits, dtype="bfloat16")}
                tensors.update(self.misc)
            else:
                tensors = {"counts": self.counts, "emb": (self.emb[5:], self.emb.shape, "5,5:-")}
            client.save(job, step, tensors, shard=i, num_shards=2, metrics=metrics)

        run_threads(worker, 2)

    def test_save_list_restore_whole_and_sliced(self):
        self.save_two_workers("py-basic", 10, metrics={"loss": 0.5})
        self.save_two_workers("py-basic", 20, metrics={"loss": 0.25})
        listed = self.client.list("py-basic")
        self.assertEqual([c.step for c in listed], [10, 20])
        self.assertEqual(listed[0].num_shards, 2)
        self.assertEqual(listed[1].metrics, {"loss": 0.25})
        self.assertEqual(listed[1].state, "committed")
        self.assertEqual(self.client.latest("py-basic").step, 20)
        self.assertIsNone(self.client.latest("py-no-such-job"))

        got = self.client.restore("py-basic")
        self.assertEqual(set(got), {"dense", "emb", "counts", "bf16", *self.misc})
        np.testing.assert_array_equal(got["emb"], self.emb)
        self.assertEqual(got["emb"].dtype, np.float32)
        np.testing.assert_array_equal(got["dense"], self.dense)
        np.testing.assert_array_equal(got["counts"], self.counts)
        for name, want in self.misc.items():
            self.assertEqual(got[name].dtype, want.dtype, name)
            self.assertEqual(got[name].shape, want.shape, name)
            np.testing.assert_array_equal(got[name], want, name)
        self.assertEqual(got["bf16"].dtype, np.uint16)
        np.testing.assert_array_equal(got["bf16"], self.bf16_bits)

        # Zero-copy: the array's memory belongs to a capsule holding the
        # library's buffer, and stays valid after the dict is gone.
        emb = got["emb"]
        self.assertFalse(emb.flags.owndata)
        self.assertEqual(type(emb.base).__name__, "PyCapsule")
        self.assertTrue(emb.flags.c_contiguous and emb.flags.writeable)
        del got
        np.testing.assert_array_equal(emb, self.emb)

        # A subset, a slice across both saved slices, an older step.
        part = self.client.restore("py-basic", 10, tensors=["counts", "emb"], slices={"emb": "3,4:1,2"})
        self.assertEqual(set(part), {"counts", "emb"})
        np.testing.assert_array_equal(part["emb"], self.emb[3:7, 1:3])

        # Restored onto 2 "workers", each its half.
        halves = {}

        def restorer(i):
            c = cairn.connect(CLUSTER.addr)
            halves[i] = c.restore("py-basic", 20, tensors=["emb"],
                                  slices={"emb": "0,5:-" if i == 0 else "5,5:-"})["emb"]

        run_threads(restorer, 2)
        np.testing.assert_array_equal(np.concatenate([halves[0], halves[1]]), self.emb)

        # The bundle really says bfloat16 (cairn inspect, when built).
        cli = os.path.join(BIN_DIR, "cairn")
        if os.path.exists(cli):
            out = subprocess.run([cli, "inspect", listed[1].prefix_uri, "--json"], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            self.assertIn("bfloat16", out)
            json.loads(out)

    def test_restore_from_prefix(self):
        self.save_two_workers("py-prefix", 3)
        prefix = self.client.latest("py-prefix").prefix_uri
        got = cairn.restore_from(prefix)
        np.testing.assert_array_equal(got["emb"], self.emb)
        np.testing.assert_array_equal(got["counts"], self.counts)
        part = self.client.restore_from(prefix, tensors=["emb"], slices={"emb": "8,2:-"})
        np.testing.assert_array_equal(part["emb"], self.emb[8:])

    def test_restore_to_file_streams_what_the_cli_writes(self):
        import tempfile
        self.save_two_workers("py-tofile", 5)
        prefix = self.client.latest("py-tofile").prefix_uri
        cli = os.path.join(BIN_DIR, "cairn")
        with tempfile.TemporaryDirectory() as tmp:
            # To a .safetensors file: the same bytes as `cairn restore --to`.
            got = self.client.restore_to_file("py-tofile", os.path.join(tmp, "py.safetensors"))
            self.assertEqual(got["step"], 5)
            self.assertEqual(got["tensors"], len(self.misc) + 3)  # string-free; c64 skipped
            self.assertEqual(len(got["skipped"]), 1)
            self.assertIn("c64", got["skipped"][0])
            subprocess.run([cli, "restore", f"--coordinator={CLUSTER.addr}", "--job=py-tofile",
                            f"--to={tmp}/cli.safetensors"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            with open(f"{tmp}/py.safetensors", "rb") as a, open(f"{tmp}/cli.safetensors", "rb") as b:
                self.assertEqual(a.read(), b.read())
            # Chosen tensors and slices, and no coordinator.
            part = cairn.restore_file_from(prefix, os.path.join(tmp, "part.safetensors"),
                                           tensors=["emb"], slices={"emb": "8,2:-"})
            self.assertEqual((part["tensors"], part["bytes"]), (1, 2 * 4 * 4))
            with self.assertRaisesRegex(cairn.Error, "complex64"):
                self.client.restore_to_file("py-tofile", os.path.join(tmp, "strict.safetensors"),
                                            strict=True)
            self.assertFalse(os.path.exists(os.path.join(tmp, "strict.safetensors")))
            # To a prefix: the whole checkpoint, its files copied whole.
            whole = self.client.restore_to_file("py-tofile", os.path.join(tmp, "copy", "variables"))
            self.assertEqual(whole["tensors"], len(self.misc) + 4)
            np.testing.assert_array_equal(cairn.restore_from(f"{tmp}/copy/variables")["emb"], self.emb)
            # A directory gets the checkpoint inside it, as DIR/variables.
            os.mkdir(os.path.join(tmp, "dir"))
            into_dir = self.client.restore_to_file("py-tofile", os.path.join(tmp, "dir"))
            self.assertEqual(into_dir["path"], os.path.join(tmp, "dir", "variables"))
            self.assertEqual(sorted(os.listdir(os.path.join(tmp, "dir"))),
                             ["variables.data-00000-of-00002", "variables.data-00001-of-00002",
                              "variables.index"])
            # A destination that cannot be created says why, with storage's
            # code (not INTERNAL).
            with self.assertRaises(cairn.Error) as cm:
                self.client.restore_to_file("py-tofile", "/proc/nope/x.safetensors")
            self.assertEqual(cm.exception.code, "NOT_FOUND", str(cm.exception))
            # Refused: a remote path, chosen tensors to a prefix.
            with self.assertRaisesRegex(cairn.Error, "local file"):
                self.client.restore_to_file("py-tofile", "s3://bucket/x.safetensors")
            with self.assertRaisesRegex(cairn.Error, "checkpoint prefix"):
                self.client.restore_to_file("py-tofile", os.path.join(tmp, "x", "variables"),
                                            tensors=["emb"])

    def test_restore_to_file_memory_stays_bounded(self):
        # 192 MiB restored by a fresh process: streamed to a file its peak
        # RSS stays far below the checkpoint; restore() holds all of it.
        big = np.arange(48 << 20, dtype=np.float32)
        self.client.save("py-tofile-big", 1, {"big": big})
        del big
        script = (
            "import cairn, sys, tempfile\n"
            "c = cairn.connect(sys.argv[1])\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    if sys.argv[2] == 'file': c.restore_to_file('py-tofile-big', d + '/b.safetensors')\n"
            "    else: got = c.restore('py-tofile-big')\n"
            # VmHWM: this process's peak (ru_maxrss would carry the parent's over exec)
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(int(hwm.split()[1]) // 1024)\n")
        peak = {}
        for how in ("file", "memory"):
            out = subprocess.run([sys.executable, "-c", script, CLUSTER.addr, how], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            peak[how] = int(out.split()[-1])
        self.assertGreater(peak["memory"], 192, peak)
        self.assertLess(peak["file"], peak["memory"] - 128, peak)

    def test_restore_with_mapped_files(self):
        self.save_two_workers("py-mapped", 4)
        prefix = self.client.latest("py-mapped").prefix_uri
        path = prefix[len("file://"):] if prefix.startswith("file://") else prefix
        got = self.client.restore("py-mapped", map_files=True)
        np.testing.assert_array_equal(got["emb"], self.emb)
        np.testing.assert_array_equal(got["dense"], self.dense)
        with open("/proc/self/maps") as maps:
            self.assertIn(os.path.dirname(path) + "/variables.data-", maps.read())
        # Copy-on-write: writing to the array leaves the checkpoint alone.
        got["emb"][:] = -7.0
        again = cairn.restore_from(prefix, map_files=True)
        np.testing.assert_array_equal(again["emb"], self.emb)
        np.testing.assert_array_equal(self.client.restore("py-mapped")["emb"], self.emb)

    def test_restore_into_existing_arrays(self):
        self.save_two_workers("py-into", 6)
        emb = np.zeros_like(self.emb)
        rows = np.zeros((2, self.emb.shape[1]), dtype=self.emb.dtype)
        got = self.client.restore("py-into", tensors=["emb"], into={"emb": emb})
        self.assertIs(got["emb"], emb)  # the caller's own array, filled in place
        np.testing.assert_array_equal(emb, self.emb)
        part = cairn.restore_from(self.client.latest("py-into").prefix_uri, tensors=["emb"],
                                  slices={"emb": "8,2:-"}, into={"emb": rows})
        self.assertIs(part["emb"], rows)
        np.testing.assert_array_equal(rows, self.emb[8:])
        # A wrong size is refused before anything is written.
        short = np.full(self.emb.size - 1, 7, dtype=self.emb.dtype)
        with self.assertRaises(cairn.Error):
            self.client.restore("py-into", tensors=["emb"], into={"emb": short})
        self.assertTrue((short == 7).all())
        with self.assertRaises(Exception):  # not writable
            ro = np.zeros_like(self.emb)
            ro.flags.writeable = False
            self.client.restore("py-into", tensors=["emb"], into={"emb": ro})

    def test_async_save_copies_before_returning(self):
        original = np.arange(1 << 16, dtype=np.float32).reshape(256, 256)
        arr = original.copy()
        other = np.ones(7, dtype=np.int32)
        handle = self.client.save_async("py-async", 1, {"w": arr, "o": other})
        arr[:] = -1.0  # training goes on right away
        other[:] = 9
        result = handle.wait()
        self.assertTrue(handle.done())
        self.assertTrue(result["committed"])
        self.assertEqual(result["num_tensors"], 2)
        self.assertEqual(handle.wait(), result)  # may be called again
        got = self.client.restore("py-async", 1)
        np.testing.assert_array_equal(got["w"], original)
        np.testing.assert_array_equal(got["o"], np.ones(7, dtype=np.int32))

        # Two workers, async, each its shard; the handle outlives nothing.
        def worker(i):
            c = cairn.connect(CLUSTER.addr)
            h = c.save_async("py-async", 2, {f"t{i}": np.full(4, i, dtype=np.int16)}, shard=i,
                             num_shards=2)
            del c  # the handle keeps its client alive
            h.wait()

        run_threads(worker, 2)
        got = self.client.restore("py-async", 2)
        np.testing.assert_array_equal(got["t1"], np.full(4, 1, dtype=np.int16))

    def test_buffer_protocol_objects(self):
        mv = memoryview(bytearray(b"\x01\x02\x03"))
        self.client.save("py-buffers", 1, {"raw": mv, "bytes": b"abcd"})
        got = self.client.restore("py-buffers", 1)
        np.testing.assert_array_equal(got["raw"], np.array([1, 2, 3], dtype=np.uint8))
        self.assertEqual(got["bytes"].tobytes(), b"abcd")

    def test_errors(self):
        with self.assertRaises(cairn.Error) as cm:
            self.client.restore("py-no-such-job")
        self.assertEqual(cm.exception.code, "NOT_FOUND")
        self.assertIn("py-no-such-job", str(cm.exception))
        self.assertIsInstance(cm.exception, RuntimeError)

        with self.assertRaises(cairn.Error) as cm:
            self.client.save("", 1, {"x": np.zeros(2)})
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        self.assertIn("job name is empty", str(cm.exception))

        # A slice that does not fit: the library's message.
        with self.assertRaises(cairn.Error) as cm:
            self.client.save("py-errors", 1, {"e": (np.zeros((2, 4), np.float32), [10, 4], "9,2:-")})
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        self.assertIn("9,2:-", str(cm.exception))

        # Data that does not match the slice's shape.
        with self.assertRaises(cairn.Error):
            self.client.save("py-errors", 1, {"e": (np.zeros((3, 4), np.float32), [10, 4], "0,2:-")})

        with self.assertRaises(ValueError) as cm:
            self.client.save("py-errors", 1, {"t": np.zeros((4, 4))[:, 1]})
        self.assertIn("C-contiguous", str(cm.exception))
        with self.assertRaises(ValueError):
            self.client.save("py-errors", 1, {"t": cairn.Tensor(np.zeros(2, np.float32), dtype="bfloat16")})
        with self.assertRaises(ValueError):
            self.client.save("py-errors", 1, {"t": cairn.Tensor(np.zeros(2, np.uint16), dtype="nope")})
        with self.assertRaises(ValueError):
            self.client.save("py-errors", 1, {"t": np.zeros(2, dtype=">f4")})
        with self.assertRaises(TypeError):
            self.client.save("py-errors", 1, {"t": object()})
        with self.assertRaises(cairn.Error) as cm:
            self.client.restore("py-async-none", 5)
        with self.assertRaises(cairn.Error):
            cairn.restore_from(os.path.join(CLUSTER.dir, "nothing", "variables"))

        # A committed step cannot be overwritten.
        self.client.save("py-errors", 7, {"x": np.zeros(2)})
        with self.assertRaises(cairn.Error) as cm:
            self.client.save("py-errors", 7, {"x": np.zeros(2)})
        self.assertIn("7", str(cm.exception))
        # The client still works after errors.
        self.assertEqual([c.step for c in self.client.list("py-errors")], [7])

    def test_rollback_makes_room_for_an_older_step(self):
        for step in (10, 20, 30):
            self.client.save("py-rollback", step, {"x": np.full(2, step, np.float32)})
        # Saves move forward: below the newest committed step is refused.
        with self.assertRaises(cairn.Error) as cm:
            self.client.save("py-rollback", 15, {"x": np.zeros(2, np.float32)})
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")
        self.assertIn("newest committed step 30", str(cm.exception))
        dry = self.client.rollback("py-rollback", 10, dry_run=True)
        self.assertEqual(dry, {"deleted_steps": [20, 30], "aborted_steps": []})
        self.assertEqual([c.step for c in self.client.list("py-rollback")], [10, 20, 30])
        self.client.pin("py-rollback", 20)
        with self.assertRaises(cairn.Error) as cm:
            self.client.rollback("py-rollback", 10)
        self.assertIn("step 20 is pinned", str(cm.exception))
        self.client.pin("py-rollback", 20, pinned=False)
        done = self.client.rollback("py-rollback", 10)
        self.assertEqual(done["deleted_steps"], [20, 30])
        self.assertEqual([c.step for c in self.client.list("py-rollback")], [10])
        self.client.save("py-rollback", 15, {"x": np.full(2, 15, np.float32)})
        self.assertEqual(self.client.latest("py-rollback").step, 15)
        np.testing.assert_array_equal(self.client.restore("py-rollback")["x"], np.full(2, 15, np.float32))



torch = optional_torch()


@requires_torch
class TorchAndInputTest(unittest.TestCase):
    """Defects of issue 15, each a case that failed before its fix."""

    def setUp(self):
        self.client = cairn.connect(CLUSTER.addr)

    def test_torch_tensors_of_every_dtype_round_trip(self):
        tensors = {
            "bf16": torch.tensor([1.0, -2.0, 0.5, 3.140625], dtype=torch.bfloat16),
            "f16": torch.tensor([1.5, -0.25], dtype=torch.float16),
            "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "f64": torch.tensor([2.0**-40], dtype=torch.float64),
            "i8": torch.tensor([-128, 127], dtype=torch.int8),
            "i16": torch.tensor([-3, 4], dtype=torch.int16),
            "i32": torch.tensor([[1, -2]], dtype=torch.int32),
            "i64": torch.tensor([2**62], dtype=torch.int64),
            "u8": torch.tensor([0, 255], dtype=torch.uint8),
            "b": torch.tensor([True, False]),
            "c64": torch.tensor([1 + 2j], dtype=torch.complex64),
            "c128": torch.tensor([3 - 4j], dtype=torch.complex128),
        }
        self.client.save("py-torch-dtypes", 1, tensors)
        got = self.client.restore("py-torch-dtypes", 1)
        # NumPy has no bfloat16: restored arrays hold its raw bits...
        self.assertEqual(got["bf16"].dtype, np.uint16)
        np.testing.assert_array_equal(got["bf16"], tensors["bf16"].view(torch.int16).numpy().view(np.uint16))
        for name, t in tensors.items():
            if name != "bf16":
                np.testing.assert_array_equal(got[name], t.numpy(), name)
        # ...torch destinations get torch dtypes, bfloat16 included, in place.
        into = {name: torch.zeros_like(t) for name, t in tensors.items()}
        back = self.client.restore("py-torch-dtypes", 1, into=into)
        for name, t in tensors.items():
            self.assertIs(back[name], into[name])
            self.assertEqual(into[name].dtype, t.dtype, name)
            self.assertTrue(torch.equal(into[name], t), name)
        # The bundle says bfloat16, not uint16.
        cli = os.path.join(BIN_DIR, "cairn")
        if os.path.exists(cli):
            out = json.loads(subprocess.run(
                [cli, "inspect", self.client.latest("py-torch-dtypes").prefix_uri, "--json"],
                check=True, stdout=subprocess.PIPE, text=True).stdout)
            dtypes = {t["name"]: t["dtype"] for t in out["tensors"]}
            self.assertEqual(dtypes["bf16"], "bfloat16")
            self.assertEqual(dtypes["f16"], "float16")

    def test_into_refuses_a_wrong_shape_or_dtype_of_the_same_size(self):
        a = np.arange(128, dtype=np.float32).reshape(16, 8)
        self.client.save("py-into-shape", 1, {"a": a, "i": np.arange(4, dtype=np.int32),
                                              "h": torch.ones(4, dtype=torch.bfloat16)})
        for name, dst in [("a", np.full((8, 16), 7, np.float32)),     # same bytes, other shape
                          ("a", np.full(128, 7, np.float32)),
                          ("i", np.full(4, 7, np.float32)),           # same bytes, other dtype
                          ("h", torch.full((4,), 7, dtype=torch.float16)),
                          ("a", torch.full((8, 16), 7.0))]:
            with self.assertRaises(cairn.Error) as cm:
                self.client.restore("py-into-shape", 1, tensors=[name], into={name: dst})
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
            self.assertIn(f'"{name}"', str(cm.exception))
            self.assertTrue((dst == 7).all(), "a refused destination was written")
        # The bits of a bfloat16 tensor still go into a uint16 array.
        bits = np.zeros(4, np.uint16)
        self.client.restore("py-into-shape", 1, tensors=["h"], into={"h": bits})
        np.testing.assert_array_equal(bits, np.full(4, 0x3F80, np.uint16))
        # A slice's destination has the slice's shape.
        rows = np.zeros((2, 8), np.float32)
        self.client.restore("py-into-shape", 1, tensors=["a"], slices={"a": "3,2:-"}, into={"a": rows})
        np.testing.assert_array_equal(rows, a[3:5])
        with self.assertRaises(cairn.Error):
            self.client.restore("py-into-shape", 1, tensors=["a"], slices={"a": "3,2:-"},
                                into={"a": np.zeros((8, 2), np.float32)})

    def test_address_without_a_port_is_refused(self):
        for addr in ("localhost", "127.0.0.1", "", "host:", "host:http", "[::1]", "::1:7070",
                     "a:1,localhost", "host:70000"):
            with self.assertRaises(cairn.Error) as cm:
                cairn.connect(addr)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT", addr)
            self.assertIn("HOST:PORT", str(cm.exception))
            self.assertEqual(len(str(cm.exception).splitlines()), 1)
        # Lists of coordinators (etcd catalog) and IPv6 literals are addresses.
        host, port = CLUSTER.addr.rsplit(":", 1)
        for addr in (f"{CLUSTER.addr},{CLUSTER.addr}", f"localhost:{port}"):
            self.assertIsNone(cairn.connect(addr).latest("py-no-such-job"))
        cairn.connect("[::1]:1", rpc_timeout_ms=1)  # connects lazily

    def test_policy_mode_min_max_and_kept_by_from_get(self):
        job = "py-policy-mode"
        for step, loss in ((1, 0.5), (2, 0.1), (3, 0.9), (4, 0.7)):
            self.client.save(job, step, {"x": np.zeros(1)}, metrics={"loss": loss})
        self.client.set_policy(job, keep_best=1, metric="loss", mode="max")
        by_step = {c.step: c.kept_by for c in self.client.list(job)}
        self.assertIn("keep-best", by_step[3])
        self.client.set_policy(job, keep_best=1, metric="loss", mode="min")
        by_step = {c.step: c.kept_by for c in self.client.list(job)}
        self.assertIn("keep-best", by_step[2])
        self.client.set_policy(job, keep_best=1, metric="loss", maximize=True)  # still works
        self.assertIn("keep-best", {c.step: c.kept_by for c in self.client.list(job)}[3])
        with self.assertRaises(cairn.Error) as cm:
            self.client.set_policy(job, keep_best=1, metric="loss", mode="biggest")
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        with self.assertRaises(cairn.Error):
            self.client.set_policy(job, keep_best=1, metric="loss", mode="min", maximize=True)
        # get() and latest() say which rules keep a checkpoint, as list() does.
        listed = {c.step: c.kept_by for c in self.client.list(job)}
        self.assertTrue(listed[4])
        self.assertEqual(self.client.get(job, 3).kept_by, listed[3])
        self.assertEqual(self.client.get(job).kept_by, listed[4])
        self.assertEqual(self.client.latest(job).kept_by, listed[4])

    def test_bad_metrics_are_a_cairn_error(self):
        for metrics in ({"loss": "low"}, {"loss": None}, {3: 0.5}, ["loss"]):
            with self.assertRaises(cairn.Error) as cm:
                self.client.save("py-bad-metric", 1, {"x": np.zeros(1)}, metrics=metrics)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
            self.assertEqual(len(str(cm.exception).splitlines()), 1, str(cm.exception))
        with self.assertRaises(cairn.Error):
            self.client.save_async("py-bad-metric", 1, {"x": np.zeros(1)}, metrics={"loss": "x"})
        # Numbers of any kind are fine (NumPy and torch scalars included).
        self.client.save("py-bad-metric", 1, {"x": np.zeros(1)},
                         metrics={"a": 1, "b": np.float32(0.5), "c": torch.tensor(0.25)})
        self.assertEqual(self.client.get("py-bad-metric", 1).metrics, {"a": 1.0, "b": 0.5, "c": 0.25})

    def test_model_parameters_save_and_restore_in_place(self):
        torch.manual_seed(3)
        model, other = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
        self.client.save("py-params", 1, dict(model.named_parameters()))  # requires_grad
        ptrs = [p.data_ptr() for p in other.parameters()]
        self.client.restore("py-params", into=dict(other.named_parameters()))
        self.assertEqual([p.data_ptr() for p in other.parameters()], ptrs)
        for a, b in zip(model.parameters(), other.parameters()):
            self.assertTrue(torch.equal(a, b))

    def test_device_staging_buffers(self):
        # The CUDA path's staging (cairn._torch_interop._stage), run with
        # CPU tensors and a plain allocator in place of pinned memory.
        allocs = []

        def alloc(n, dtype):
            allocs.append((n, dtype))
            return torch.empty(n, dtype=dtype)

        a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        b = torch.full((2, 3), 5.0)
        stage = cairn._torch_interop._stage
        sa, sb = stage("a", a, alloc), stage("b", b, alloc)
        self.assertNotEqual(sa.data_ptr(), sb.data_ptr(), "two tensors of one save share a buffer")
        self.assertTrue(torch.equal(sa, a) and torch.equal(sb, b))
        again = stage("a", a.t().contiguous().t() * 2, alloc)  # non-contiguous source
        self.assertEqual(again.data_ptr(), sa.data_ptr(), "the next save reuses the buffer")
        self.assertTrue(again.is_contiguous() and torch.equal(again, a * 2))
        bf = stage("h", torch.tensor([1.5, -2.0], dtype=torch.bfloat16), alloc)
        self.assertEqual(bf.dtype, torch.bfloat16)
        self.assertEqual(len(allocs), 3)
        self.client.save("py-staged", 1, {"a": sa, "b": sb, "h": bf})
        got = self.client.restore("py-staged", 1, into={"h": torch.zeros(2, dtype=torch.bfloat16)})
        self.assertTrue(torch.equal(got["h"], bf))
        np.testing.assert_array_equal(got["b"], b.numpy())

    def test_bad_input_is_a_one_line_cairn_error(self):
        # Each is also the ValueError / TypeError it was before.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
            c32 = torch.zeros(2, dtype=torch.complex32)
        cases = [
            (ValueError, "contiguous", lambda: self.client.save("py-bad", 1, {"t": torch.zeros(4, 4).t()})),
            (ValueError, "contiguous", lambda: self.client.save("py-bad", 1, {"t": np.zeros((4, 4))[:, 1]})),
            (ValueError, "complex32", lambda: self.client.save("py-bad", 1, {"t": c32})),
            (ValueError, "unknown dtype", lambda: self.client.save("py-bad", 1, {"t": cairn.Tensor(np.zeros(2, np.uint16), dtype="nope")})),
            (TypeError, "buffer protocol", lambda: self.client.save("py-bad", 1, {"t": object()})),
            (ValueError, "", lambda: self.client.save("py-bad", "one", {"t": np.zeros(1)})),
            (ValueError, "contiguous", lambda: self.client.restore("py-bad", into={"t": np.zeros((4, 4))[:, 1]})),
            (TypeError, "neither", lambda: self.client.restore("py-bad", into={"t": [0.0]})),
        ]
        for base, text, call in cases:
            with self.assertRaises(cairn.Error) as cm:
                call()
            self.assertIsInstance(cm.exception, base)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
            self.assertIn(text, str(cm.exception))
            self.assertEqual(len(str(cm.exception).splitlines()), 1, str(cm.exception))
        ro = np.zeros(2)
        ro.flags.writeable = False
        self.client.save("py-bad", 1, {"t": np.zeros(2)})
        with self.assertRaises(cairn.Error) as cm:
            self.client.restore("py-bad", into={"t": ro})
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")


if __name__ == "__main__":
    unittest.main()
