"""For the Python tests: a throwaway local Cairn cluster (deploy/local/cluster.sh),
and small helpers they share."""

import os
import shutil
import subprocess
import tempfile
import threading
import unittest

SOURCE_DIR = os.environ.get(
    "CAIRN_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN_DIR = os.environ.get("CAIRN_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
CLUSTER_SH = os.path.join(SOURCE_DIR, "deploy", "local", "cluster.sh")


class Cluster:
    """cluster.sh start DIR WRITERS in a temp dir; .addr is the coordinator."""

    def __init__(self, writers=2, prefix="cairn-py-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        env = dict(os.environ, CAIRN_BIN_DIR=BIN_DIR)
        out = subprocess.run([CLUSTER_SH, "start", self.dir, str(writers)], env=env, check=True,
                             stdout=subprocess.PIPE, text=True, timeout=60)
        self.addr = out.stdout.strip().splitlines()[-1]
        self.storage = os.path.join(self.dir, "storage")

    def stop(self, keep=False):
        subprocess.run([CLUSTER_SH, "stop", self.dir], check=False, timeout=60)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def optional_torch():
    """The torch module, or None when this interpreter cannot import it
    (the torch cases then skip)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def requires_torch(case):
    """Skips a test (function or class) when torch is not importable."""
    return unittest.skipIf(optional_torch() is None,
                           "torch is not importable by this interpreter")(case)


def check(cond, what):
    """An assertion for the script-style tests (kept under python -O)."""
    if not cond:
        raise AssertionError(what)


def run_threads(fn, n):
    """fn(i) for i in range(n), each on its own thread; re-raises the first
    failure, else returns {i: fn(i)}."""
    errors, results = [], {}

    def body(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
