"""The native halves of CheckpointManager.save (python/structure.h and
python/torch_block.h) against what the Python code they stand in for gives:
json.dumps's exact document, the flattener's names and entries, and the
bytes of tensors whose storage changes after their save items were made.

Run: PYTHONPATH=build/python CAIRN_BIN_DIR=build/bin /usr/bin/python3 -m unittest -v test_native_state
(from python/tests; ctest does this as python_native_state_test).
"""

import collections
import enum
import gc
import json
import random
import unittest

import numpy as np

import cairn
from cairn import _cairn, manager
from cluster_util import Cluster, optional_torch, requires_torch

torch = optional_torch()

CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster(writers=1, prefix="cairn-py-native-")


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()


class Color(enum.IntEnum):
    RED = 7


def random_text(rng):
    pool = ['a', 'Z', '0', ' ', '"', '\\', '/', '%', '\n', '\t', '\r', '\b', '\f', '\x00',
            '\x1f', '\x7f', '\x80', 'é', '\u2028', '\ud800', '\udfff', '\uffff', '😀', '\U0010ffff']
    return "".join(rng.choice(pool) for _ in range(rng.randrange(0, 8)))


def random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return random_text(rng)
    if kind == 1:
        return rng.choice([0, -1, 2**63 - 1, -2**63, 10**40, True, False, Color.RED])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e300, -2.5e-308, 0.1, 1 / 3])
    if kind == 3:
        return None
    if kind in (4, 5):
        return random_text(rng)
    if kind == 6:
        return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return tuple(random_value(rng, depth + 1) for _ in range(rng.randrange(4)))


class StructureJsonTest(unittest.TestCase):
    def test_the_document_is_json_dumps_byte_for_byte(self):
        rng = random.Random(15)
        for i in range(3000):
            value = random_value(rng)
            want = json.dumps(value, separators=(",", ":"))
            self.assertEqual(_cairn.structure_json(value), want, f"case {i}: {value!r}")

    def test_what_it_does_not_write_is_left_to_json_dumps(self):
        # None means "use json.dumps", which then decides (writes or refuses).
        for value in (float("nan"), [1, float("inf")], collections.OrderedDict(a=1), {1: "x"},
                      {"a": object()}, b"bytes", {"deep": [set()]}):
            self.assertIsNone(_cairn.structure_json(value), repr(value))
        deep = []
        for _ in range(3000):
            deep = [deep]
        self.assertIsNone(_cairn.structure_json(deep))


class TensorDictEntriesTest(unittest.TestCase):
    @requires_torch
    def test_entries_and_names_are_the_flatteners(self):
        t = torch.zeros(2)
        state = {
            "plain": t, "a/b": t, "50%": torch.ones(3, dtype=torch.bfloat16), 3: t,
            "nested": {"x": t, "list": [t, 1]}, "": t, "num": 1.5,
            "param": torch.nn.Parameter(torch.zeros(1)),  # not exactly a Tensor: the Python walk
            Color.RED: t,  # an int subclass: the Python walk
        }
        flat = manager._Flattener()
        root = flat.node(state, "")
        entries = {repr(k): (kind, leaf) for kind, k, leaf in root["dict"]}
        self.assertEqual(entries["'plain'"], ("s", {"tensor": "plain", "torch": "float32"}))
        self.assertEqual(entries["'a/b'"], ("s", {"tensor": "a%2Fb", "torch": "float32"}))
        self.assertEqual(entries["'50%'"], ("s", {"tensor": "50%25", "torch": "bfloat16"}))
        self.assertEqual(entries["3"], ("i", {"tensor": "3", "torch": "float32"}))
        self.assertEqual(entries["''"], ("s", {"tensor": "state", "torch": "float32"}))
        self.assertEqual(entries["'num'"], ("s", {"float": "num"}))
        self.assertEqual(entries["'param'"], ("s", {"tensor": "param", "torch": "float32"}))
        self.assertEqual(entries[repr(Color.RED)][0], "i")
        nested = {k: leaf for _, k, leaf in entries["'nested'"][1]["dict"]}
        self.assertEqual(nested["x"], {"tensor": "nested/x", "torch": "float32"})
        self.assertEqual([kind for kind, _, _ in root["dict"]],
                         ["s", "s", "s", "i", "s", "s", "s", "s", "i"])  # the dict's order
        self.assertEqual(flat.names, {"plain", "a%2Fb", "50%25", "3", "nested/x",
                                      "nested/list/0", "nested/list/1", "state", "num",
                                      "param", str(Color.RED)})
        # The plain tensors in dicts went into the save's block; the rest
        # are left to the Python walk.
        self.assertEqual(len(flat.block), 5)
        self.assertEqual(set(flat.leaves), {"nested/list/0", "nested/list/1", "num", "param",
                                            str(Color.RED), "state"})
        self.assertTrue(flat.mutable)

    @requires_torch
    def test_a_dict_of_tensors_is_written_as_the_json_python_would_write(self):
        t = torch.zeros(2)
        keys = ["a", 5, -3, 2**62, "x/y%", 'q"\\', "tab\t\x7f", "é", "\u2028", "😀", "\ud800",
                "z" * 300]
        state = {k: t.to(torch.bfloat16) if i % 3 == 0 else t for i, k in enumerate(keys)}
        flat = manager._Flattener()
        root = flat.node({"p\u00e9": state}, "")
        entries = root["dict"][0][2]["dict"]
        self.assertIsInstance(entries, _cairn.JsonText)
        self.assertEqual(len(entries), len(keys))
        want = []
        for i, k in enumerate(keys):
            name = "p\u00e9/" + str(k).replace("%", "%25").replace("/", "%2F")
            want.append(["s" if isinstance(k, str) else "i", k,
                         {"tensor": name, "torch": "bfloat16" if i % 3 == 0 else "float32"}])
        self.assertEqual(entries.text, json.dumps(want, separators=(",", ":")))
        doc = {"format": 1, "root": root}
        written = _cairn.structure_json(doc)
        self.assertEqual(json.loads(written)["root"]["dict"][0][2]["dict"], want)
        # json.dumps, where structure_json declines, writes the same.
        self.assertEqual(json.dumps(doc, separators=(",", ":"), default=manager._json_text),
                         written)
        # A name with a lone surrogate has no UTF-8: the Python walk says so.
        self.assertEqual(len(flat.block), len(keys) - 1)
        self.assertEqual(list(flat.leaves), ["p\u00e9/\ud800"])

    @requires_torch
    def test_each_rank_takes_the_tensors_the_owner_rule_gives_it(self):
        names = [f"layer.{i}.w\u00e9ight" for i in range(60)]
        state = {n: torch.zeros(1) for n in names}
        taken = []
        for rank in range(3):
            flat = manager._Flattener(world_size=3, rank=rank)
            flat.node(state, "")
            self.assertEqual(len(flat.names), 60)
            self.assertEqual(flat.leaves, {})
            mine = [n for n in names if manager._owner(n, 3) == rank]
            self.assertEqual(len(flat.block), len(mine))
            taken.append(len(mine))
        self.assertEqual(sum(taken), 60)
        self.assertTrue(all(taken))

    @requires_torch
    def test_an_ordered_dict_or_other_mapping_keeps_its_own_order(self):
        od = collections.OrderedDict([("b", torch.zeros(1)), ("a", torch.zeros(1))])
        od.move_to_end("b")  # the underlying dict's order is no longer the OrderedDict's
        flat = manager._Flattener()
        root = flat.node({"od": od, "map": types_mapping(a=torch.zeros(1))}, "")
        od_node = root["dict"][0][2]
        self.assertEqual([k for _, k, _ in json.loads(od_node["dict"].text)], ["a", "b"])
        self.assertTrue(od_node["ordered"])
        self.assertEqual(json.loads(root["dict"][1][2]["dict"].text)[0][2],
                         {"tensor": "map/a", "torch": "float32"})

    @requires_torch
    def test_names_taken_twice_and_bad_keys_are_refused_as_before(self):
        t = torch.zeros(1)
        for state, message in (
                ({0: t, "0": t}, 'two leaves of the state are both named "0"'),
                ({"_cairn": {"structure": t}}, 'both named "_cairn/structure"'),
                ({True: t}, "dict key True is not a str or int"),
                ({1.5: t}, "dict key 1.5 is not a str or int")):
            with self.assertRaisesRegex(cairn.Error, message):
                manager._Flattener().node(state, "")


def types_mapping(**kw):
    class Plain(collections.abc.Mapping):
        def __init__(self, d):
            self._d = d

        def __getitem__(self, k):
            return self._d[k]

        def __iter__(self):
            return iter(self._d)

        def __len__(self):
            return len(self._d)
    return Plain(kw)


class TorchBlockTest(unittest.TestCase):
    @requires_torch
    def test_a_block_keeps_the_bytes_its_tensors_had_when_it_was_made(self):
        # Another thread may give a tensor new storage (p.data = ...) while
        # a save reads it with the GIL released: the block holds the old
        # storage, so the save reads the bytes of when its items were made,
        # never freed memory.
        n = 64
        tensors = [torch.full((1024,), float(i)) for i in range(n)]
        names = [f"t{i}" for i in range(n)]
        block = _new_block()
        self.assertEqual(_add_torch(block, names, tensors), [])  # all plain CPU tensors
        self.assertEqual(len(block), n)
        for t in tensors:
            t.data = torch.full((1024,), -1.0)
        gc.collect()
        reuse = [torch.full((1024,), -2.0) for _ in range(4 * n)]  # takes the freed memory, if any
        client = cairn.connect(CLUSTER.addr)
        client._c.save("native-block", 1, 0, 1, [block], {})
        got = client.restore("native-block", 1)
        for i in range(n):
            np.testing.assert_array_equal(got[f"t{i}"], np.full(1024, float(i), np.float32))
        del reuse
        # The save took the block's tensors: it is one save's.
        with self.assertRaisesRegex(ValueError, "one save's"):
            client._c.save("native-block", 2, 0, 1, [block], {})

    @requires_torch
    def test_tensors_the_block_refuses_take_the_general_path(self):
        base = torch.arange(20, dtype=torch.float32)
        c = torch.tensor([1 + 2j], dtype=torch.complex64)
        tensors = [base[2:6], base.view(4, 5).t(), c.conj(), torch.zeros(2, dtype=torch.uint8)]
        names = ["view", "transposed", "conj", "u8"]
        block = _new_block()
        self.assertEqual(block.add(names, tensors), [1, 2])
        self.assertEqual(len(block), 2)
        with self.assertRaisesRegex(ValueError, 'tensor "transposed": the tensor is not contiguous'):
            _add_torch(_new_block(), names, tensors)

    def test_gc_stays_enabled_after_a_refused_save(self):
        cyclic = {"w": np.zeros(2)}
        cyclic["again"] = cyclic
        with cairn.CheckpointManager(CLUSTER.addr, job="native-gc", async_save=False) as mgr:
            with self.assertRaises(cairn.Error):
                mgr.save(1, cyclic)
        self.assertTrue(gc.isenabled())


class StreamingSaveTest(unittest.TestCase):
    """Synchronous manager saves send a state_dict's tensors while the state
    is still being walked (python/save_stream.h): one that fails part-way
    commits nothing, and the step can be saved again."""

    @requires_torch
    def test_a_walk_that_fails_after_tensors_went_out_commits_nothing(self):
        tensors = {f"layers.{i}.weight": torch.full((64,), float(i)) for i in range(2000)}
        with cairn.CheckpointManager(CLUSTER.addr, job="native-stream", async_save=False) as mgr:
            # The flattener refuses the last leaf, after 2,000 tensors were sent.
            with self.assertRaisesRegex(cairn.Error, "cannot save a object"):
                mgr.save(1, {"model": tensors, "z": object()})
            self.assertIsNone(mgr.latest_step())
            # The client's checks refuse a name, after the tensors before it were sent.
            with self.assertRaisesRegex(cairn.Error, "the name holds a NUL byte"):
                mgr.save(1, {"model": dict(tensors, **{"bad\x00name": torch.zeros(1)})})
            self.assertIsNone(mgr.latest_step())
            self.assertTrue(mgr.save(1, {"model": tensors, "lr": 0.5}))
            self.assertEqual(mgr.latest_step(), 1)
            got = mgr.restore(1)
        self.assertEqual(len(got["model"]), 2000)
        self.assertEqual(got["lr"], 0.5)
        for i in (0, 999, 1999):
            self.assertTrue(torch.equal(got["model"][f"layers.{i}.weight"],
                                        torch.full((64,), float(i))))


class SaveStreamTest(unittest.TestCase):
    @requires_torch
    def test_finish_sends_what_an_attached_block_still_holds(self):
        # The block sends every 256 it takes while a dict is walked; what it
        # holds at finish goes too, given to add() or not.
        client = cairn.connect(CLUSTER.addr)
        tensors = [torch.full((8,), float(i)) for i in range(300)]
        names = [f"t{i}" for i in range(300)]
        stream = client._c.save_stream("native-stream-block", 1, 0, 1, {})
        block = _new_block()
        stream.attach(block)
        with self.assertRaisesRegex(ValueError, "sends to a stream already"):
            client._c.save_stream("native-stream-block", 2, 0, 1, {}).attach(block)
        self.assertEqual(block.add(names, tensors), [])
        stream.finish()
        with self.assertRaisesRegex(ValueError, "the stream has ended"):
            stream.add([])
        stream.close()
        got = client.restore("native-stream-block", 1)
        self.assertEqual(len(got), 300)
        np.testing.assert_array_equal(got["t299"], np.full(8, 299.0, np.float32))


def _new_block():
    from cairn import _torch_interop
    return _cairn.TorchBlock(*_torch_interop._torch_tables()["block"])


def _add_torch(block, names, tensors):
    from cairn import _torch_interop
    return _torch_interop._add_torch(block, names, tensors)


if __name__ == "__main__":
    unittest.main()
