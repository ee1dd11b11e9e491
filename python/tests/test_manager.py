"""cairn.CheckpointManager against a real local cluster (2 shard writers).

Run: PYTHONPATH=build/python CAIRN_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_manager
(from python/tests; ctest does this as python_manager_test). The torch cases
skip when torch is not importable.
"""

import json
import os
import subprocess
import sys
import unittest

import numpy as np

import cairn
from cluster_util import BIN_DIR, Cluster, optional_torch, requires_torch, run_threads

torch = optional_torch()

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster(writers=2, prefix="cairn-py-mgr-")


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()


def inspect(prefix_uri):
    out = subprocess.run([os.path.join(BIN_DIR, "cairn"), "inspect", prefix_uri, "--json"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return {t["name"]: t for t in json.loads(out)["tensors"]}


def trained(seed=0):
    """A small model (one bfloat16 layer) and Adam after 3 steps."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model[2].to(torch.bfloat16)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    for _ in range(3):
        opt.zero_grad()
        h = model[1](model[0](torch.randn(5, 4)))
        model[2](h.to(torch.bfloat16)).float().sum().backward()
        opt.step()
    return model, opt


def assert_same(test, got, want, path="state"):
    """Same structure, container/key/leaf types, dtypes and bits."""
    test.assertIs(type(got), type(want), path)
    if isinstance(want, dict):
        test.assertEqual(list(got.keys()), list(want.keys()), path)
        for k in want:
            assert_same(test, got[k], want[k], f"{path}/{k!r}")
    elif isinstance(want, (list, tuple)):
        test.assertEqual(len(got), len(want), path)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(test, g, w, f"{path}/{i}")
    elif torch is not None and isinstance(want, torch.Tensor):
        test.assertEqual(got.dtype, want.dtype, path)
        test.assertEqual(got.shape, want.shape, path)
        test.assertTrue(torch.equal(got, want), path)
    elif isinstance(want, np.ndarray):
        test.assertEqual(got.dtype, want.dtype, path)
        np.testing.assert_array_equal(got, want, path)
    elif isinstance(want, float) and want != want:
        test.assertNotEqual(got, got, path)  # NaN
    else:
        test.assertEqual(got, want, path)


class NestedStateTest(unittest.TestCase):
    @requires_torch
    def test_model_adam_scalars_strings_bf16_round_trip(self):
        model, opt = trained()
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": 7, "lr": 0.5, "done": False, "name": "run-ä", "blob": b"\x00\xff", "nothing": None,
            "big": 2**70, "nan": float("nan"), "mixed": [1, 2.5, "x", None, (3, 4)],
            "np": {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "s": np.float32(1.5),
                   "bools": np.array([True, False])},
            "by_int": {3: "three", 10: torch.ones(2, dtype=torch.float16)},
            "empty": {}, "empty_list": [], "nested": ({"deep": [torch.zeros(0)]},),
            "a/b": 1, "50%": 2,
        }
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-nested", async_save=False) as mgr:
            self.assertTrue(mgr.save(1, state))
            got = mgr.restore(1)
        assert_same(self, got, state)  # model.state_dict() comes back an OrderedDict

        # The optimizer loads what it saved: int-keyed state, tuple betas.
        model2, _ = trained(seed=1)
        opt2 = torch.optim.Adam(model2.parameters(), lr=0.3)
        opt2.load_state_dict(got["optimizer"])
        model2.load_state_dict(got["model"])
        assert_same(self, opt2.state_dict(), opt.state_dict())
        self.assertEqual(model2[2].weight.dtype, torch.bfloat16)
        self.assertTrue(torch.equal(model2[2].weight, model[2].weight))

        # TensorFlow-style names, real dtypes in the bundle.
        prefix = cairn.connect(CLUSTER.addr).latest("mgr-nested").prefix_uri
        tensors = inspect(prefix)
        self.assertEqual(tensors["model/2.weight"]["dtype"], "bfloat16")
        self.assertEqual(tensors["model/0.weight"]["shape"], [8, 4])
        self.assertEqual(tensors["optimizer/state/0/exp_avg"]["dtype"], "float32")
        self.assertEqual(tensors["optimizer/param_groups/0/lr"]["dtype"], "float64")
        self.assertEqual(tensors["optimizer/param_groups/0/params"]["dtype"], "int64")
        self.assertEqual(tensors["optimizer/param_groups/0/betas"]["shape"], [2])
        self.assertEqual(tensors["name"]["dtype"], "string")
        self.assertIn("a%2Fb", tensors)  # so no key can take the structure's name
        self.assertIn("50%25", tensors)
        self.assertIn(cairn.STRUCTURE_TENSOR, tensors)

    @requires_torch
    def test_torch_tensors_saved_by_address_keep_their_exact_bytes(self):
        # Plain CPU tensors go to the native layer by address and size
        # (_torch_item): views with a storage offset, parameters that need
        # grad, empty and 0-d tensors, every dtype; lazy conjugates and
        # negations are resolved first, not saved as their raw memory.
        base = torch.arange(20, dtype=torch.float32)
        c = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
        param = torch.nn.Parameter(torch.randn(3, 2))
        state = {
            "offset_view": base[5:9], "row": base.view(4, 5)[2], "param": param,
            "empty": torch.zeros(0, 3), "scalar": torch.tensor(7, dtype=torch.int64),
            "conj": c.conj(), "neg": torch._neg_view(c) if hasattr(torch, "_neg_view") else -c,
        }
        for i, dtype in enumerate([torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.int16, torch.int32, torch.uint8, torch.bool,
                                   torch.complex128]):
            state[f"dtype{i}"] = (torch.arange(6) % 2 == 1) if dtype is torch.bool \
                else torch.arange(6).to(dtype).reshape(2, 3)
        self.assertTrue(state["conj"].is_conj())
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-direct", async_save=False) as mgr:
            mgr.save(1, state)
            got = mgr.restore(1)
        want = {k: (v.detach().resolve_conj().resolve_neg()) for k, v in state.items()}
        want["param"] = param.detach()
        self.assertEqual(set(got), set(want))
        for k in want:
            self.assertEqual(got[k].dtype, want[k].dtype, k)
            self.assertEqual(got[k].shape, want[k].shape, k)
            self.assertTrue(torch.equal(got[k], want[k]), k)
        self.assertTrue(torch.equal(got["conj"], torch.tensor([1 - 2j, 3 + 4j])))
        with self.assertRaisesRegex(ValueError, "lazily conjugated or negated"):
            cairn.connect(CLUSTER.addr).restore("mgr-direct", 1, into={"conj": c.conj()})
        # Not contiguous: refused with the usual one-line message.
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-direct", async_save=False) as mgr:
            with self.assertRaisesRegex(ValueError, 'tensor "t": the tensor is not contiguous'):
                mgr.save(2, {"t": base.view(4, 5).t()})

    @requires_torch
    def test_a_direct_item_whose_size_disagrees_is_refused(self):
        # The binding's address-and-size items (convert.cc) check the size
        # against shape and dtype, overflow included, before reading.
        t = torch.zeros(2)
        c = cairn.connect(CLUSTER.addr)
        for nbytes, shape in ((999, (2,)), (8, (2**62, 4)), (8, (-1,))):
            with self.assertRaises((ValueError, cairn.Error)):
                c._c.save("mgr-bad-item", 1, 0, 1,
                          [("x", t, "float32", None, None, t.data_ptr(), nbytes, shape)], {})

    def test_a_state_that_contains_itself_is_refused(self):
        cyclic = {"w": np.zeros(2)}
        cyclic["again"] = [1, cyclic]
        shared = np.arange(3)
        twice = {"a": {"x": shared}, "b": {"x": shared}}  # shared, not a cycle: fine
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-cycle", async_save=False) as mgr:
            with self.assertRaisesRegex(cairn.Error, 'state "again/1" contains itself'):
                mgr.save(1, cyclic)
            self.assertTrue(mgr.save(1, twice))
            np.testing.assert_array_equal(mgr.restore(1)["b"]["x"], shared)

    def test_numpy_state_in_a_process_without_torch(self):
        # With torch never imported, NumPy arrays stay NumPy arrays (the
        # flattener's fast path once recorded them as torch tensors).
        script = (
            "import sys, numpy as np, cairn\n"
            "mgr = cairn.CheckpointManager(sys.argv[1], job='mgr-no-torch', async_save=False)\n"
            "mgr.save(1, {'w': np.arange(3, dtype=np.float32), 'n': {'b': np.ones(2)}})\n"
            "got = mgr.restore(1)\n"
            "assert 'torch' not in sys.modules, 'cairn imported torch'\n"
            "assert type(got['w']) is np.ndarray and got['w'].tolist() == [0, 1, 2], got\n"
            "assert type(got['n']['b']) is np.ndarray, got\n"
            "print('ok')\n")
        out = subprocess.run([sys.executable, "-c", script, CLUSTER.addr], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.assertEqual(out.stdout.strip().splitlines()[-1:], ["ok"], out.stdout)

    @requires_torch
    def test_an_empty_key_at_the_root_is_named_state(self):
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-empty-key", async_save=False) as mgr:
            mgr.save(1, {"": torch.ones(2), "x": torch.zeros(1)})
            got = mgr.restore(1)
        self.assertTrue(torch.equal(got[""], torch.ones(2)))

    def test_numpy_only_state(self):
        state = {"w": np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32),
                 "layers": [np.arange(3, dtype=np.uint64), np.array(2.0)], "it": 12}
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-numpy")
        mgr.save(5, state)
        mgr.wait_until_finished()
        assert_same(self, mgr.restore(), state)
        mgr.close()

    def test_bad_state_is_refused_before_saving(self):
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-bad-state", async_save=False)
        for bad in ({"x": object()}, {(1, 2): np.zeros(1)}, {0: np.zeros(1), "0": np.zeros(1)},
                    {True: 1}, [1, {"x": [object()]}]):
            with self.assertRaises(cairn.Error) as cm:
                mgr.save(1, bad, force=True)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT", bad)
            self.assertEqual(len(str(cm.exception).splitlines()), 1)
        with self.assertRaises(cairn.Error) as cm:
            mgr.save(1, {"x": np.zeros(1)}, metrics={"loss": "low"})
        self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
        self.assertIsNone(mgr.latest_step())

    def test_plain_checkpoint_restores_flat(self):
        client = cairn.connect(CLUSTER.addr)
        client.save("mgr-plain", 3, {"a/b": np.ones(2, np.float32)})
        got = cairn.CheckpointManager(CLUSTER.addr, job="mgr-plain").restore()
        self.assertEqual(list(got), ["a/b"])
        np.testing.assert_array_equal(got["a/b"], np.ones(2, np.float32))


class TargetTest(unittest.TestCase):
    @requires_torch
    def test_restore_fills_the_target_in_place(self):
        model, opt = trained()
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-target") as mgr:
            mgr.save(2, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 4})
        model2, _ = trained(seed=5)
        opt2 = torch.optim.Adam(model2.parameters(), lr=0.3)
        ptrs = {k: v.data_ptr() for k, v in model2.state_dict().items()}
        target = {"model": model2.state_dict(), "optimizer": opt2.state_dict(), "epoch": 0}
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-target")
        self.assertEqual(mgr.restore_or_initialize(target), 2)
        # The parameters themselves were written (no load_state_dict needed).
        for k, v in model2.state_dict().items():
            self.assertEqual(v.data_ptr(), ptrs[k], k)
            self.assertTrue(torch.equal(v, model.state_dict()[k]), k)
        # Dicts are updated in place: the optimizer's saved state is in the
        # target, ready for load_state_dict.
        self.assertEqual(target["epoch"], 4)
        opt2.load_state_dict(target["optimizer"])
        assert_same(self, opt2.state_dict(), opt.state_dict())

    @requires_torch
    def test_wrong_shape_or_dtype_is_refused_before_anything_is_written(self):
        w = torch.arange(128, dtype=torch.float32).reshape(16, 8)
        b = torch.ones(3, dtype=torch.bfloat16)
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-refuse", async_save=False)
        mgr.save(1, {"w": w, "b": b, "n": np.arange(4, dtype=np.int32)})
        cases = [
            {"w": torch.full((8, 16), 7.0), "b": torch.full((3,), 7, dtype=torch.bfloat16)},
            {"w": torch.full((16, 8), 7.0), "b": torch.full((3,), 7, dtype=torch.float16)},
            {"w": torch.full((16, 8), 7, dtype=torch.int32), "b": torch.full((3,), 7, dtype=torch.bfloat16)},
            {"w": torch.full((16, 8), 7.0), "n": np.full(4, 7, np.float32)},
            {"w": torch.full((16, 8), 7.0), "n": np.full(4, 7, np.int32)[::1].reshape(2, 2)},
        ]
        for target in cases:
            with self.assertRaises(cairn.Error) as cm:
                mgr.restore(1, target)
            self.assertEqual(cm.exception.code, "INVALID_ARGUMENT")
            for name, dest in target.items():
                self.assertTrue((dest == 7).all(), f"{name} written before the refusal: {cm.exception}")
        # A target tensor where a Python value was saved.
        mgr.save(2, {"x": 3})
        with self.assertRaises(cairn.Error):
            mgr.restore(2, {"x": torch.zeros(())})
        # A target tensor the checkpoint lacks would keep stale values: refused.
        for target, where in (({"w": torch.full((16, 8), 7.0), "extra": {"t": torch.zeros(1)}}, "extra/t"),
                              ({"w": torch.full((16, 8), 7.0), "b": [torch.zeros(3)]}, "b/0")):
            with self.assertRaises(cairn.Error) as cm:
                mgr.restore(1, target)
            self.assertEqual(cm.exception.code, "NOT_FOUND")
            self.assertIn(f'"{where}"', str(cm.exception))
            self.assertTrue((target["w"] == 7).all())
        # Python values and entries the target lacks are fine.
        got = mgr.restore(1, {"w": torch.zeros(16, 8), "extra": 3})
        self.assertTrue(torch.equal(got["w"], w))
        self.assertEqual(got["extra"], 3)

    def test_restore_or_initialize_without_checkpoint(self):
        target = {"w": np.full(3, 9.0)}
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-fresh")
        self.assertIsNone(mgr.restore_or_initialize(target))
        np.testing.assert_array_equal(target["w"], np.full(3, 9.0))
        with self.assertRaises(cairn.Error) as cm:
            mgr.restore()
        self.assertEqual(cm.exception.code, "NOT_FOUND")
        self.assertIsNone(mgr.latest_step())
        self.assertEqual(mgr.all_steps(), [])


class LifecycleTest(unittest.TestCase):
    def test_should_save_interval_force_and_queries(self):
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-interval", save_interval_steps=10)
        self.assertEqual([s for s in range(1, 31) if mgr.should_save(s)], [10, 20, 30])
        self.assertFalse(mgr.save(5, {"x": np.zeros(1)}))
        self.assertTrue(mgr.save(10, {"x": np.zeros(1)}, metrics={"loss": 0.5}))
        self.assertFalse(mgr.save(10, {"x": np.zeros(1)}))   # already saved
        self.assertTrue(mgr.save(13, {"x": np.ones(1)}, force=True, metrics={"loss": 0.25}))
        self.assertFalse(mgr.save(12, {"x": np.ones(1)}, force=True))   # below the newest
        self.assertFalse(mgr.should_save(10))
        mgr.wait_until_finished()
        self.assertEqual(mgr.latest_step(), 13)
        self.assertEqual(mgr.all_steps(), [10, 13])
        self.assertEqual(mgr.metrics(10), {"loss": 0.5})
        self.assertEqual(mgr.metrics(13), {"loss": 0.25})
        with self.assertRaises(cairn.Error) as cm:
            mgr.metrics(11)
        self.assertEqual(cm.exception.code, "NOT_FOUND")
        # A new manager (a restarted job) knows the newest step.
        again = cairn.CheckpointManager(CLUSTER.addr, job="mgr-interval", save_interval_steps=10)
        self.assertFalse(again.should_save(10))
        self.assertTrue(again.should_save(20))

    def test_async_save_copies_and_reports_failure(self):
        arr = np.arange(1000, dtype=np.float32)
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-async")
        self.assertTrue(mgr.save(1, {"w": arr}))
        arr[:] = -1  # training continues at once
        mgr.wait_until_finished()
        np.testing.assert_array_equal(mgr.restore(1)["w"], np.arange(1000, dtype=np.float32))
        # Another writer commits step 10; this manager still thinks 1 is the
        # newest, so its save of 5 goes out and is refused in the background.
        cairn.connect(CLUSTER.addr).save("mgr-async", 10, {"w": np.zeros(1)})
        self.assertTrue(mgr.save(5, {"w": arr}))
        with self.assertRaises(cairn.Error) as cm:
            mgr.wait_until_finished()
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")
        self.assertIn("below its newest committed step 10", str(cm.exception))
        mgr.wait_until_finished()  # raised once, then clear
        # The next save also reports an unwaited failure.
        mgr.save(6, {"w": arr}, force=True)
        with self.assertRaises(cairn.Error):
            mgr.save(11, {"w": arr}, force=True)
        self.assertEqual(mgr.all_steps(), [1, 10])

    def test_retention_options_become_the_job_policy(self):
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-retention", max_to_keep=2,
                                      keep_every_n_steps=4, best_metric="acc", best_mode="max",
                                      async_save=False)
        accs = {1: 0.9, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.4, 6: 0.5, 7: 0.6}
        for step, acc in accs.items():
            mgr.save(step, {"x": np.full(1, step)}, metrics={"acc": acc})
        # keep-last 2 (6, 7), every 4 steps (4), best acc (1).
        self.assertEqual(mgr.all_steps(), [1, 4, 6, 7])
        kept = {c.step: c.kept_by for c in cairn.connect(CLUSTER.addr).list("mgr-retention")}
        self.assertIn("keep-best", kept[1])
        self.assertIn("keep-every-steps", kept[4])
        self.assertIn("keep-last", kept[6])
        # A manager without retention options leaves the policy alone.
        cairn.CheckpointManager(CLUSTER.addr, job="mgr-retention").save(8, {"x": np.zeros(1)})
        mgr.wait_until_finished()
        self.assertEqual(mgr.all_steps(), [1, 4, 7, 8])
        # Only rank 0 sets the policy.
        cairn.CheckpointManager(CLUSTER.addr, job="mgr-retention-r1", max_to_keep=1, rank=1,
                                world_size=2)
        client = cairn.connect(CLUSTER.addr)
        for step in (1, 2, 3):
            client.save("mgr-retention-r1", step, {"x": np.zeros(1)})
        self.assertEqual([c.step for c in client.list("mgr-retention-r1")], [1, 2, 3])
        with self.assertRaises(cairn.Error):
            cairn.CheckpointManager(CLUSTER.addr, job="x", best_metric="loss", best_mode="lowest")

    def test_rollback_delete_close_and_context_manager(self):
        mgr = cairn.CheckpointManager(CLUSTER.addr, job="mgr-rollback", async_save=False)
        for step in (1, 2, 3):
            mgr.save(step, {"x": np.full(1, step)})
        self.assertEqual(mgr.rollback(1)["deleted_steps"], [2, 3])
        self.assertEqual(mgr.all_steps(), [1])
        self.assertTrue(mgr.should_save(2))
        mgr.save(2, {"x": np.full(1, 20)})
        self.assertEqual(int(mgr.restore()["x"][0]), 20)
        # The newest is refused unless forced; an older one goes.
        with self.assertRaises(cairn.Error) as cm:
            mgr.delete(2)
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")
        self.assertIn("it is the job's newest", str(cm.exception))
        mgr.delete(1)
        self.assertEqual(mgr.all_steps(), [2])
        with self.assertRaises(cairn.Error) as cm:
            mgr.delete(1)
        self.assertEqual(cm.exception.code, "NOT_FOUND")
        mgr.close()
        mgr.close()  # idempotent
        with self.assertRaises(cairn.Error) as cm:
            mgr.save(3, {"x": np.zeros(1)})
        self.assertEqual(cm.exception.code, "FAILED_PRECONDITION")
        # `with` waits for the async save before leaving.
        with cairn.CheckpointManager(CLUSTER.addr, job="mgr-with") as m:
            m.save(1, {"x": np.zeros(1 << 16)})
        self.assertEqual(cairn.CheckpointManager(CLUSTER.addr, job="mgr-with").all_steps(), [1])


class RanksTest(unittest.TestCase):
    def test_rank_detection_from_the_environment(self):
        env = dict(os.environ)
        try:
            os.environ.pop("RANK", None)
            os.environ.pop("WORLD_SIZE", None)
            m = cairn.CheckpointManager(CLUSTER.addr, job="mgr-ranks")
            self.assertEqual((m.rank, m.world_size), (0, 1))
            os.environ.update(RANK="2", WORLD_SIZE="4")
            m = cairn.CheckpointManager(CLUSTER.addr, job="mgr-ranks")
            self.assertEqual((m.rank, m.world_size), (2, 4))
            m = cairn.CheckpointManager(CLUSTER.addr, job="mgr-ranks", rank=1, world_size=3)
            self.assertEqual((m.rank, m.world_size), (1, 3))
            os.environ.update(RANK="5", WORLD_SIZE="4")
            with self.assertRaises(cairn.Error):
                cairn.CheckpointManager(CLUSTER.addr, job="mgr-ranks")
            os.environ.update(RANK="x")
            with self.assertRaises(cairn.Error):
                cairn.CheckpointManager(CLUSTER.addr, job="mgr-ranks")
        finally:
            os.environ.clear()
            os.environ.update(env)

    @requires_torch
    def test_rank_detection_from_torch_distributed(self):
        # Two processes in a gloo group whose ranks differ from $RANK: the
        # group's rank and size win.
        code = (
            "import sys, torch, torch.distributed as dist, cairn\n"
            "r = int(sys.argv[1])\n"
            "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:' + sys.argv[2], rank=r, world_size=2)\n"
            "m = cairn.CheckpointManager(sys.argv[3], job='mgr-dist')\n"
            "print(m.rank, m.world_size, flush=True)\n"
            "dist.barrier(); dist.destroy_process_group()\n")
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
        env = dict(os.environ, RANK="7", WORLD_SIZE="9")
        procs = [subprocess.Popen([sys.executable, "-c", code, str(r), port, CLUSTER.addr], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for r in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        for r, (p, out) in enumerate(zip(procs, outs)):
            self.assertEqual(p.returncode, 0, out)
            self.assertEqual(out.split()[-2:], [str(r), "2"], out)

    def test_whole_tensors_once_shards_by_every_rank_restore_on_other_world_size(self):
        rng = np.random.default_rng(3)
        emb = rng.standard_normal((10, 4)).astype(np.float32)
        dense = {f"layer{i}": rng.standard_normal((3, 3)).astype(np.float32) for i in range(8)}
        bounds2 = [(0, 5), (5, 5)]

        def save(rank):
            off, n = bounds2[rank]
            m = cairn.CheckpointManager(CLUSTER.addr, job="mgr-shards", rank=rank, world_size=2)
            state = {"dense": dense, "step": 4, "emb": cairn.Shard(emb[off:off + n], [10, 4], [off, 0])}
            m.save(4, state, metrics={"loss": 1.0})
            m.wait_until_finished()
            return m

        run_threads(save, 2)
        prefix = cairn.connect(CLUSTER.addr).latest("mgr-shards").prefix_uri
        tensors = inspect(prefix)
        # Each whole tensor once, by the rank the rule names; the embedding
        # as two slices.
        self.assertEqual(sorted(tensors["emb"]["slices"]), ["0,5:-", "5,5:-"])
        owners = {f"dense/{k}": cairn.manager._owner(f"dense/{k}", 2) for k in dense}
        self.assertEqual(set(owners.values()), {0, 1}, "the rule spreads whole tensors over the ranks")
        for name, rank in owners.items():  # data file i holds rank i's part
            self.assertEqual(tensors[name]["shard"], rank, name)
        self.assertEqual(tensors[cairn.STRUCTURE_TENSOR]["shard"], 0)

        # Restored whole (no target) ...
        got = cairn.CheckpointManager(CLUSTER.addr, job="mgr-shards").restore()
        np.testing.assert_array_equal(got["emb"], emb)
        assert_same(self, got["dense"], dense)
        self.assertEqual(got["step"], 4)

        # ... and onto 3 ranks, each its own rows.
        bounds3 = [(0, 4), (4, 3), (7, 3)]

        def restore(rank):
            off, n = bounds3[rank]
            m = cairn.CheckpointManager(CLUSTER.addr, job="mgr-shards", rank=rank, world_size=3)
            local = np.zeros((n, 4), np.float32)
            target = {"emb": cairn.Shard(local, [10, 4], [off, 0])}
            out = m.restore(target=target)
            self.assertIs(out["emb"], local)  # a Shard comes back as its local tensor
            return local

        parts = run_threads(restore, 3)
        np.testing.assert_array_equal(np.concatenate([parts[i] for i in range(3)]), emb)

    def test_shard_validation(self):
        with self.assertRaises(ValueError):
            cairn.Shard(np.zeros((3, 4)), [10, 4], [8, 0])
        with self.assertRaises(ValueError):
            cairn.Shard(np.zeros((3, 4)), [10], [0])
        self.assertEqual(cairn.Shard(np.zeros((3, 4)), [10, 4], [2, 0]).slice, "2,3:-")


if __name__ == "__main__":
    unittest.main()
