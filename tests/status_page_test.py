#!/usr/bin/env python3
"""The coordinator's status page in headless Chromium, driven through the
DevTools protocol (--remote-debugging-pipe: no extra packages), on real
servers with a job history: committed steps with metrics, a pin and a
retention policy, a step aborted by a rollback, a pending step with 2 of 4
shards durable, a second job that has gone stale, and a writer that stopped.

Checks the overview (jobs with the age of their newest commit, red past
?stale=; writers with heartbeat age, streams and bytes written; version and
uptime), that clicking a job puts #job=NAME in the URL and that loading such
a URL opens the job, the job page (labelled axes, legend colours equal to
the dots', hover details, pending shard progress, abort reason, kept-by and
pins, metrics with 4 significant digits), auto-refresh, and that tokens are
sent when authorization is on. Saves screenshots of the overview and of a
job under the build directory and prints their paths.

Skips ("missing dependency: chromium", exit 77) without /usr/bin/chromium,
unless CI=true. Prints 'N passed, N failed'; exit 1 on any failure."""
import base64, fcntl, json, os, re, select, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "testing"))
from cairn_cluster import BIN, Checks, Cluster, skip_or_fail  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    skip_or_fail("chromium (/usr/bin/chromium; scripts/install-deps.sh installs it)")
SHOTS = os.environ.get("CAIRN_SCREENSHOT_DIR", os.path.dirname(BIN))

check = Checks()


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe (fd 3: our
    commands, fd 4: its answers and events, each a JSON text ending in NUL)."""

    def __init__(self, tmp, width=1280, height=900):
        # The child's ends go above 4, so the shell's "3<&A 4>&B" cannot
        # overwrite one before it is duplicated.
        def high(fd):
            out = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            os.close(fd)
            return out
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = high(to_chrome_r), high(from_chrome_w)
        self.log = open(os.path.join(tmp, "chromium.log"), "w")
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + os.path.join(tmp, "profile"),
                "about:blank"]
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "bash", *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=self.log, stderr=self.log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.width, self.height = width, height

    def _message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited; see chromium.log")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def page(self, method, params=None, timeout=30):
        return self.call(method, params, self.session, timeout)

    def eval(self, expr):
        r = self.page("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.eval(expr):
                return True
            time.sleep(0.1)
        return False

    def navigate(self, url):
        self.page("Page.navigate", {"url": url})
        return self.wait(f"location.href === {json.dumps(url)} && document.body && document.body.dataset.ready === '1'")

    def center(self, selector):
        return self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")

    def mouse(self, kind, x, y):
        params = {"type": kind, "x": x, "y": y, "button": "left" if kind != "mouseMoved" else "none",
                  "clickCount": 1 if kind != "mouseMoved" else 0}
        self.page("Input.dispatchMouseEvent", params)

    def click(self, selector):
        at = self.center(selector)
        if at is None:
            return False
        self.mouse("mouseMoved", *at)
        self.mouse("mousePressed", *at)
        self.mouse("mouseReleased", *at)
        return True

    def hover(self, selector):
        at = self.center(selector)
        if at is not None:
            self.mouse("mouseMoved", *at)
        return at is not None

    def screenshot(self, path):
        h = self.eval("Math.ceil(Math.max(document.querySelector('main').getBoundingClientRect().bottom"
                      " + scrollY, 400))")
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": h, "deviceScaleFactor": 1, "mobile": False})
        self.eval("window.scrollTo(0, 0)")
        data = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        if os.path.exists(path):
            os.unlink(path)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def text(b, selector):
    return b.eval(f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)")


def png_size(path):
    data = open(path, "rb").read(24)
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def history(c):
    """Job "resnet" (committed first, so it goes stale) and job "bert": eight
    steps over a few seconds with a falling loss, step 200 pinned, keep-last=3
    plus every 400th; step 900 aborted by a rollback; step 1000 pending with
    shards 0 and 1 of 4 durable."""
    small = [c.tensor_file(4096, f"w{i}") for i in range(4)]
    big = [c.tensor_file(64 << 10, f"w{i}") for i in range(2)]
    for step in (10, 20, 30):
        c.cairn("save", "--job=resnet", f"--step={step}", "--from=" + small[0], "--metric=acc=0.71")
    time.sleep(3)
    for i, step in enumerate(range(100, 900, 100)):
        for shard in range(2):
            c.cairn("save", "--job=bert", f"--step={step}", "--from=" + (big if step % 400 == 0 else small)[shard],
                    f"--shard={shard}/2", f"--metric=loss={2 / (i + 1.5)}")
        if step == 200:
            c.cairn("pin", "--job=bert", "--step=200")
        time.sleep(0.4)
    c.cairn("policy", "--job=bert", "--keep-last=3", "--keep-every-steps=400")
    c.cairn("gc", "--job=bert")  # deletes 100, 300 and 500
    c.cairn("save", "--job=bert", "--step=900", "--from=" + small[0], "--shard=0/2")
    c.cairn("rollback", "--job=bert", "--to=800")
    time.sleep(0.4)
    c.cairn("save", "--job=bert", "--step=1000", "--from=" + small[0], "--shard=0/4")
    c.cairn("save", "--job=bert", "--step=1000", "--from=" + small[1], "--shard=1/4")


def main():
    with tempfile.TemporaryDirectory() as tmp, \
            Cluster(tmp, writers=2, coordinator_flags=["--writer-timeout=3", "--heartbeat-interval=0.5"]) as c:
        history(c)
        stopped = c.add_writer()
        c.wait_for_live_writers(3)
        stopped.stop()
        time.sleep(3.5)  # past the writer timeout: shown as down
        jobs = {j["job"]: j for j in c.get_json("/api/jobs")["jobs"]}
        now = c.get_json("/api/jobs")["now"]
        resnet_age, bert_age = now - jobs["resnet"]["last_commit_at"], now - jobs["bert"]["last_commit_at"]
        check(resnet_age - bert_age > 3, f"resnet's newest commit is older ({resnet_age:.1f} s vs {bert_age:.1f} s)")
        # Just under resnet's age: resnet stays stale (it only gets older),
        # bert stays fresh for the length of the test.
        stale = max(1, int(resnet_age - 1))
        base = c.coordinator_http + f"/?stale={stale}s&refresh=1"

        b = Browser(tmp)
        try:
            # --- the overview
            check(b.navigate(base), "the overview loads", b.eval("document.body.innerText"))
            check(b.eval("document.body.dataset.view") == "overview", "the overview is shown")
            strip = b.eval("Array.from(document.querySelectorAll('tr[data-job=bert] .strip i')).map(i => i.className)")
            check(strip == ["committed"] * 5 + ["aborted", "pending"], "bert's recent steps, coloured by state", strip)
            rows = text(b, "#jobs tr.job-row td:first-child")
            check(rows == ["bert", "resnet"], "both jobs listed", rows)
            check(b.eval("document.querySelector('tr[data-job=resnet] td.last-commit').classList.contains('stale')"),
                  "resnet's newest commit is red (older than ?stale)")
            check(not b.eval("document.querySelector('tr[data-job=bert] td.last-commit').classList.contains('stale')"),
                  "bert's newest commit is not red")
            check(re.search(r"\d+ s ago", b.eval("document.querySelector('tr[data-job=bert] td.last-commit').textContent")),
                  "the newest commit's age is shown")
            check(b.eval("getComputedStyle(document.querySelector('tr[data-job=resnet] td.last-commit')).color")
                  == "rgb(214, 69, 69)", "red means red")
            writers = b.eval("""Array.from(document.querySelectorAll('#writers tr.writer-row')).map(r =>
                ({address: r.dataset.writer, cells: Array.from(r.cells).map(c => c.textContent)}))""")
            check(len(writers) == 3, "three writers listed", writers)
            by_address = {w["address"]: w["cells"] for w in writers}
            down = by_address.get(stopped.address, [])
            check(down and down[2] == "down", "the stopped writer is down", down)
            check(down and re.match(r"\d+ s ago", down[3]) and int(down[3].split()[0]) >= 3,
                  "the stopped writer's heartbeat age", down)
            live = [by_address.get(w.address, []) for w in c.writers]
            check(all(w and w[2] == "live" and re.fullmatch(r"just now|[12] s ago", w[3]) for w in live),
                  "live writers heartbeat just now", live)
            check(any(w and w[6] not in ("0 B",) and w[6].endswith("KiB") for w in live),
                  "bytes written per writer", live)
            meta = b.eval("document.getElementById('server-meta').textContent")
            check(re.search(r"version \d+\.\d+", meta) and re.search(r"up \d+", meta), "version and uptime", meta)
            cards = text(b, "#cards .card")
            check(any(c_.startswith("1jobs with no commit") for c_ in cards), "one stale job in the cards", cards)
            shot = b.screenshot(os.path.join(SHOTS, "status-page-overview.png"))
            size = png_size(shot)
            check(size and size[0] == 1280 and size[1] >= 400 and os.path.getsize(shot) > 20000,
                  f"overview screenshot {shot}", size)
            print("status page screenshot (overview):", shot)

            # --- clicking a job changes the URL
            check(b.click("tr[data-job=bert] a.job-link"), "the job link is there")
            check(b.wait("location.hash === '#job=bert' && document.body.dataset.view === 'job' && "
                         "document.getElementById('job-title').textContent === 'Job bert'"),
                  "clicking bert opens it at #job=bert", b.eval("location.href"))
            check(b.eval("location.search") == f"?stale={stale}s&refresh=1", "the query (token, settings) is kept")
            # and the back link returns to the overview
            check(b.click("#back"), "the back link")
            check(b.wait("location.hash === '' && document.body.dataset.view === 'overview'"), "back to the overview")
            # clicking anywhere on the row works too
            check(b.click("tr[data-job=resnet] td.num"), "a row cell")
            check(b.wait("location.hash === '#job=resnet' && document.getElementById('job-title').textContent === 'Job resnet'"),
                  "clicking the row opens the job")

            # --- loading a #job= URL opens it
            url = base + "#job=bert"
            b.page("Page.navigate", {"url": "about:blank"})
            check(b.navigate(url), "a #job=bert URL loads")
            check(b.wait("document.body.dataset.view === 'job' && document.querySelectorAll('.ckpt-row').length > 0"),
                  "the job opens from the URL")
            steps = b.eval("Array.from(document.querySelectorAll('.ckpt-row')).map(r => [+r.dataset.step, r.className])")
            check([s for s, _ in steps] == [1000, 900, 800, 700, 600, 400, 200],
                  "kept, pending and aborted steps (retention deleted the rest)", steps)
            # pending: 2 of 4 shards durable, which ones, and its age
            pending = b.eval("(() => { const r = document.querySelector('.pending-row[data-step=\"1000\"]');"
                             " return r && [r.textContent, Array.from(r.querySelectorAll('.progress i')).map(i => i.className)]; })()")
            check(pending and "2 of 4 shards durable" in pending[0], "pending step 1000: 2 of 4 shards", pending)
            check(pending and pending[1] == ["done", "done", "", ""], "shards 0 and 1 marked durable", pending)
            check(pending and re.search(r"begun (\d+ s ago|just now)", pending[0]), "the pending step's age", pending)
            aborted = b.eval("(() => { const r = document.querySelector('.aborted-row[data-step=\"900\"]'); return r && r.textContent; })()")
            check(aborted and "rolled back to step 800" in aborted, "aborted step 900 with its reason", aborted)
            kept = dict(b.eval("Array.from(document.querySelectorAll('.ckpt-row')).map(r => "
                               "[r.dataset.step, Array.from(r.querySelectorAll('.kept-by .tag')).map(t => t.textContent)])"))
            check("pinned" in kept.get("200", []), "step 200 kept because pinned", kept)
            check(kept.get("400") == ["keep-every-steps"], "step 400 kept by keep-every-steps", kept)
            check("keep-last" in kept.get("800", []) and "newest" in kept.get("800", []), "step 800: keep-last, newest", kept)
            metrics = b.eval("document.querySelector('.ckpt-row[data-step=\"600\"]').cells[7].textContent")
            check(metrics == "loss=0.3077", "metrics with 4 significant digits", metrics)  # 2 / 6.5
            check(b.eval("document.getElementById('policy').textContent").endswith("keep-last=3 keep-every-steps=400")
                  or "keep-last=3" in b.eval("document.getElementById('policy').textContent"), "the policy")
            # the timeline: labelled axes with ticks, one dot per step
            xt = text(b, "#timeline text.x-tick")
            yt = text(b, "#timeline text.y-tick")
            titles = text(b, "#timeline text.title")
            check(len(xt) >= 3 and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in xt), "time ticks labelled", xt)
            check(len(yt) >= 3 and "1000" in yt and all(t.isdigit() for t in yt), "step ticks labelled", yt)
            check(titles == ["time (UTC)", "step"], "axis titles", titles)
            check(b.eval("document.querySelectorAll('#timeline .point').length") == 7, "a dot per step")
            check(b.eval("!!document.querySelector('#timeline .point.committed.pinned[data-step=\"200\"]')"), "the pin on the timeline")
            # legend swatches have the dots' colours
            colours = b.eval("""(() => { const fill = s => s && getComputedStyle(s).fill; const out = {};
                for (const st of ['committed', 'pending', 'aborted']) out[st] = [
                  fill(document.querySelector('#legend circle.point.' + st)),
                  fill(document.querySelector('#timeline circle.point.' + st))]; return out; })()""")
            check(all(a and a == d for a, d in colours.values()), "legend colours match the dots", colours)
            check(len(set(a for a, _ in colours.values())) == 3, "three distinct state colours", colours)
            # hover details
            check(b.hover('#timeline .point[data-step="900"]'), "hover the aborted dot")
            check(b.wait("!document.getElementById('tip').hidden"), "hovering shows details")
            tip = b.eval("document.getElementById('tip').textContent")
            check("step 900" in tip and "aborted" in tip and "rolled back to step 800" in tip, "the tip: step, state, reason", tip)
            time.sleep(1.5)  # a refresh (every 1 s here) redraws the dot under the mouse
            b.hover("#job-title")
            check(b.wait("document.getElementById('tip').hidden", timeout=3),
                  "the tip goes away when the mouse leaves, even after a refresh")
            b.hover('#timeline .point[data-step="1000"]')
            tip = b.eval("document.getElementById('tip').textContent")
            check("2 of 4 shards" in tip, "the pending dot's tip shows shard progress", tip)
            b.hover("#job-title")
            b.wait("document.getElementById('tip').hidden")
            shot = b.screenshot(os.path.join(SHOTS, "status-page-job.png"))
            size = png_size(shot)
            check(size and size[0] == 1280 and size[1] >= 800 and os.path.getsize(shot) > 30000,
                  f"job screenshot {shot}", size)
            print("status page screenshot (job):", shot)

            # --- auto-refresh: a shard arriving shows without a reload
            loaded = b.eval("performance.timeOrigin")
            c.cairn("save", "--job=bert", "--step=1000", "--from=" + c.tensor_file(4096, "w2"), "--shard=2/4")
            check(b.wait("(document.querySelector('.pending-row[data-step=\"1000\"]') || {}).textContent"
                         "?.includes('3 of 4 shards durable')", timeout=10), "the page refreshes by itself")
            check(b.eval("performance.timeOrigin") == loaded, "without reloading")
        finally:
            b.close()

    # --- authorization: the page sends ?token= as a bearer header; without
    # one it says what is missing.
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "auth.key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(key, 0o600)
        with Cluster(tmp, writers=0, coordinator_flags=["--auth-key-file=" + key]) as c:
            token = subprocess.run([os.path.join(BIN, "cairn"), "token", "--auth-key-file=" + key, "--job=*",
                                    "--scope=read"], capture_output=True, text=True, check=True).stdout.strip()
            b = Browser(tmp)
            try:
                check(b.navigate(c.coordinator_http + "/?token=" + token), "the page with a token loads")
                check(b.eval("document.getElementById('error').hidden") and
                      b.eval("document.body.dataset.view") == "overview", "and shows the overview",
                      b.eval("document.getElementById('error').textContent"))
                check(b.eval("document.querySelector('#writers td.empty') !== null"), "no writers: said so")
            finally:
                b.close()
            # A token for one job opens the page (it holds no data) and that
            # job's view, not the overview: the refusal says which token is needed.
            job_token = subprocess.run([os.path.join(BIN, "cairn"), "token", "--auth-key-file=" + key,
                                        "--job=bert", "--scope=read"], capture_output=True, text=True,
                                       check=True).stdout.strip()
            os.makedirs(os.path.join(tmp, "second"))
            b = Browser(os.path.join(tmp, "second"))
            try:
                check(b.navigate(c.coordinator_http + "/?token=" + job_token), "a job's token opens the page")
                error = b.eval("document.getElementById('error').textContent")
                check("403" in error and "--job='*'" in error, "the overview says it needs a '*' token", error)
                b.navigate(c.coordinator_http + "/?token=" + job_token + "#job=bert")
                check(b.wait("document.getElementById('error').textContent.includes('no job named bert')"),
                      "the job's own view is allowed (404: the job has no steps yet, not 403)",
                      b.eval("document.getElementById('error').textContent"))
                b.navigate(c.coordinator_http + "/?token=" + job_token + "#job=other")
                check(b.wait("document.getElementById('error').textContent.includes('403')"),
                      "another job's view is refused", b.eval("document.getElementById('error').textContent"))
            finally:
                b.close()
            # The page itself needs a token: the data, too, needs it in the header.
            r = subprocess.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                c.coordinator_http + "/api/jobs"], capture_output=True, text=True)
            check(r.stdout == "401", "the JSON without a token is refused", r.stdout)

    check.finish()


if __name__ == "__main__":
    main()
