"""Real Cairn server processes for the Python tests of the status page,
/metrics and deploy/'s monitoring files (tests/status_page_test.py,
tests/metrics_promtool_test.py, tests/deploy_monitoring_test.py).

    with Cluster(tmp, writers=2) as c:
        c.cairn("save", "--job=j", "--step=1", "--from=" + c.tensor_file(4096))
        text = c.get(c.coordinator_http + "/metrics")

The binaries come from $CAIRN_BIN_DIR (default build/bin beside this checkout).
Every server runs on 127.0.0.1 port 0 with --metrics-listen; the addresses are
read from what they print and log. Stopped (SIGTERM, then SIGKILL) on exit.
"""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAIRN_BIN_DIR", os.path.join(ROOT, "build", "bin"))
MISSING = 77  # ctest's SKIP_RETURN_CODE for these tests


def skip_or_fail(what):
    """A missing tool: a skip (exit 77) unless CI=true, where it fails."""
    print(f"missing dependency: {what}")
    sys.exit(1 if os.environ.get("CI") == "true" else MISSING)


def promtool():
    """The path of Debian's promtool, or skip_or_fail."""
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(path):
        skip_or_fail("promtool (Debian's prometheus package; scripts/install-deps.sh installs it)")
    return path


class Checks:
    """The tally of a script-style test: `check(cond, what, detail)` counts
    and prints what failed; `check.finish()` prints 'N passed, N failed' and
    exits 1 on any failure."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what, ("\n" + str(detail)) if detail else "")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


class Server:
    def __init__(self, args, log_path, http_marker):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {line!r}\n{open(log_path).read()}")
        self.address = m.group(1)
        self.http = None
        deadline = time.time() + 20
        while time.time() < deadline and self.http is None:
            m = re.search(http_marker + r"http://([0-9.]+:[0-9]+)", open(log_path).read())
            if m:
                self.http = "http://" + m.group(1)
            else:
                time.sleep(0.05)
        if self.http is None:
            raise RuntimeError(f"{args[0]} logged no HTTP address:\n{open(log_path).read()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster:
    def __init__(self, tmp, writers=1, coordinator_flags=()):
        self.tmp = tmp
        self.servers = []
        self.coordinator = Server(
            [os.path.join(BIN, "cairn-coordinator"), "--db=" + os.path.join(tmp, "db"),
             "--storage=" + os.path.join(tmp, "storage"), "--listen=127.0.0.1:0",
             "--metrics-listen=127.0.0.1:0", *coordinator_flags],
            os.path.join(tmp, "coordinator.log"), "status page and metrics on ")
        self.servers.append(self.coordinator)
        self.writers = [self.add_writer() for _ in range(writers)]
        if writers:
            self.wait_for_live_writers(writers)

    def add_writer(self):
        n = sum(1 for s in self.servers if s is not self.coordinator)
        w = Server([os.path.join(BIN, "cairn-writer"), "--coordinator=" + self.coordinator.address,
                    "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0"],
                   os.path.join(self.tmp, f"writer{n}.log"), "metrics on ")
        self.servers.append(w)
        return w

    @property
    def coordinator_http(self):
        return self.coordinator.http

    def wait_for_live_writers(self, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            live = [w for w in self.get_json("/api/jobs")["writers"] if w["live"]]
            if len(live) >= n:
                return
            time.sleep(0.1)
        raise RuntimeError(f"fewer than {n} live writers after {timeout} s")

    def get(self, url, headers=None):
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def get_json(self, path):
        return json.loads(self.get(self.coordinator_http + path))

    def cairn(self, *args, check=True):
        r = subprocess.run([os.path.join(BIN, "cairn"), args[0], "--coordinator=" + self.coordinator.address,
                            *args[1:]], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"cairn {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def tensor_file(self, nbytes, name="w"):
        """A safetensors file with one float32 tensor of `nbytes` bytes."""
        path = os.path.join(self.tmp, f"{name}-{nbytes}.safetensors")
        if not os.path.exists(path):
            header = json.dumps({name: {"dtype": "F32", "shape": [nbytes // 4],
                                        "data_offsets": [0, nbytes]}}).encode()
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", len(header)) + header + bytes(nbytes))
        return path

    def close(self):
        for s in reversed(self.servers):
            s.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
