"""A throwaway local Cairn cluster for the Python tests (deploy/local/cluster.sh)."""

import os
import shutil
import subprocess
import tempfile

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
