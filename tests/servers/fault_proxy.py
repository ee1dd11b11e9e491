#!/usr/bin/env python3
"""HTTP/1.1 fault-injecting pass-through proxy for tests (Python stdlib only).

    fault_proxy.py --listen-port=0 --upstream=http://127.0.0.1:PORT \
                   --fault-rate=0.2 --seed=N [--faults=KIND,...] [--log=FILE]

Listens on 127.0.0.1 (prints "listening on 127.0.0.1:PORT", flushed, once
ready) and forwards every request to the upstream unchanged: method, the raw
path and query, every header including Host (so AWS SigV4 signatures made for
the proxy's address still verify), and the body, streamed in chunks (Content-
Length or chunked). Responses come back unchanged (status, reason, headers,
body, streamed). One upstream connection per request.

On a fraction --fault-rate of requests (seeded RNG; the draw order follows the
order requests arrive) it injects one fault kind, chosen uniformly from
--faults (default: all):
  error500     drain the request body, reply 500 InternalError (S3-style XML)
               without forwarding
  slowdown503  drain the request body, reply 503 SlowDown without forwarding
  drop_before  close the connection without a response, before forwarding
               (the request body is not read)
  drop_after   forward the request (the upstream applies it), read the
               upstream's response, then close without replying
  slow         sleep 0.2-1.0 s, then forward normally

A client's "Expect: 100-continue" is answered by the proxy itself (100
Continue) before the fault is drawn, so error replies come after the body.

Every request and fault is logged to --log (one line each, flushed as each
request ends: "#ID METHOD PATH len=N fault=KIND|none status=S sent=N ms=N"),
so a test can count the faults injected into its own requests while the proxy
runs. The seed is printed to stderr and logged at start, so a run can be
repeated. On SIGTERM or SIGINT it stops and prints counts of requests and
faults by kind to stderr and to the log.
"""
import argparse
import http.client
import http.server
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse

FAULT_KINDS = ("error500", "slowdown503", "drop_before", "drop_after", "slow")
CHUNK = 256 * 1024

ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
             '<Message>{message}</Message><Resource>{resource}</Resource>'
             '<RequestId>fault-{rid}</RequestId></Error>')


class ClientGone(ConnectionError):
    """The client closed its connection while sending the request body."""


class State:
    def __init__(self, args):
        self.args = args
        u = urllib.parse.urlsplit(args.upstream)
        if u.scheme != "http" or not u.hostname:
            sys.exit("fault_proxy: --upstream must be http://HOST:PORT")
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.faults = tuple(args.faults.split(",")) if args.faults else FAULT_KINDS
        for f in self.faults:
            if f not in FAULT_KINDS:
                sys.exit(f"fault_proxy: unknown fault kind {f!r}; kinds: {','.join(FAULT_KINDS)}")
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.counts = {k: 0 for k in FAULT_KINDS}
        self.upstream_errors = 0
        self.aborted = 0
        self.log_file = open(args.log, "a", buffering=1) if args.log else None

    def draw(self):
        """Returns (request id, fault kind or None, slow delay)."""
        with self.lock:
            self.requests += 1
            rid = self.requests
            fault, delay = None, 0.0
            if self.rng.random() < self.args.fault_rate:
                fault = self.rng.choice(self.faults)
                self.counts[fault] += 1
                if fault == "slow":
                    delay = self.rng.uniform(0.2, 1.0)
            return rid, fault, delay

    def count(self, attr):
        with self.lock:
            setattr(self, attr, getattr(self, attr) + 1)

    def log(self, msg):
        if self.log_file:
            line = f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {msg}\n"
            with self.lock:
                self.log_file.write(line)

    def summary(self):
        with self.lock:
            faults = sum(self.counts.values())
            kinds = " ".join(f"{k}={v}" for k, v in self.counts.items())
            return (f"fault_proxy: {self.requests} requests, {faults} faults ({kinds}), "
                    f"{self.upstream_errors} upstream errors, {self.aborted} aborted by connection errors")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy"
    disable_nagle_algorithm = True  # else header and body writes wait on delayed ACKs
    state = None  # set in main

    def log_message(self, fmt, *args):  # silence the default stderr log
        pass

    def log_error(self, fmt, *args):
        self.state.log(f"conn {self.client_address[1]} error: " + (fmt % args))

    # --- request body --------------------------------------------------
    def _body_chunks(self):
        """Yields the raw request body as received (chunked framing kept)."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            rf = self.rfile
            while True:
                line = rf.readline(65537)
                if not line:
                    raise ClientGone("client closed during chunked body")
                yield line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        t = rf.readline(65537)
                        if not t:
                            raise ClientGone("client closed in chunked trailers")
                        yield t
                        if t in (b"\r\n", b"\n"):
                            return
                left = size + 2  # data + CRLF
                while left:
                    data = rf.read(min(CHUNK, left))
                    if not data:
                        raise ClientGone("client closed during chunked body")
                    left -= len(data)
                    yield data
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise ClientGone("client closed during body")
                left -= len(data)
                yield data

    def _drain(self):
        n = 0
        for data in self._body_chunks():
            n += len(data)
        return n

    # --- responses -----------------------------------------------------
    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status, code, message, rid):
        body = ERROR_XML.format(code=code, message=message, rid=rid,
                                resource=self.path.split("?", 1)[0]).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body)

    def _forward(self, rid, drop_after):
        """Forwards the request; returns (status, response bytes) for the log."""
        st = self.state
        conn = http.client.HTTPConnection(st.up_host, st.up_port, timeout=st.args.upstream_timeout)
        try:
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders()
                body_error = None
                try:
                    for data in self._body_chunks():
                        conn.send(data)
                except ClientGone:
                    raise
                except OSError as e:
                    # The upstream may have answered early (e.g. 411, 403) and
                    # closed: relay its answer if there is one, then close, as
                    # the rest of the client's body was not read.
                    body_error = e
                    self.close_connection = True
                try:
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    if body_error:
                        raise body_error
                    raise
            except ClientGone:
                raise
            except (OSError, http.client.HTTPException) as e:
                st.count("upstream_errors")
                self.state.log(f"#{rid} upstream error: {e!r}")
                self.close_connection = True
                msg = f"fault_proxy: upstream error: {e}\n".encode()
                self.send_response(502)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(msg)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(msg)
                return 502, 0
            if drop_after:
                while resp.read(CHUNK):
                    pass
                self._drop()
                return resp.status, 0
            self.send_response_only(resp.status, resp.reason)
            chunked = False
            for k, v in resp.getheaders():
                if k.lower() == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
                if body_error and k.lower() == "connection":
                    continue
                self.send_header(k, v)
            if body_error:
                self.state.log(f"#{rid} upstream answered before the whole body was sent ({body_error!r})")
                self.send_header("Connection", "close")
            no_body = (self.command == "HEAD" or resp.status in (204, 304)
                       or 100 <= resp.status < 200)
            if not no_body and not chunked and resp.getheader("Content-Length") is None:
                # Close-delimited body: the client sees the end by our close.
                self.close_connection = True
                if resp.getheader("Connection") is None:
                    self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            if not no_body:
                while True:
                    data = resp.read1(CHUNK) if chunked else resp.read(CHUNK)
                    if not data:
                        break
                    sent += len(data)
                    if chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    else:
                        self.wfile.write(data)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            if resp.will_close and not chunked and resp.getheader("Content-Length") is None:
                self.close_connection = True
            return resp.status, sent
        finally:
            conn.close()

    def _handle(self):
        st = self.state
        rid, fault, delay = st.draw()
        t0 = time.monotonic()
        desc = f"#{rid} {self.command} {self.path} len={self.headers.get('Content-Length', '-')}"
        status, sent = "-", 0
        try:
            if fault == "error500":
                self._drain()
                sent = self._error(500, "InternalError",
                                   "We encountered an internal error. Please try again.", rid)
                status = 500
            elif fault == "slowdown503":
                self._drain()
                sent = self._error(503, "SlowDown", "Please reduce your request rate.", rid)
                status = 503
            elif fault == "drop_before":
                self._drop()
            else:
                if fault == "slow":
                    time.sleep(delay)
                status, sent = self._forward(rid, drop_after=(fault == "drop_after"))
        except (OSError, http.client.HTTPException) as e:
            st.count("aborted")
            self.close_connection = True
            st.log(f"{desc} aborted: {e!r}")
        f = fault + (f"({delay:.2f}s)" if fault == "slow" else "") if fault else "none"
        st.log(f"{desc} fault={f} status={status} sent={sent} "
               f"ms={int((time.monotonic() - t0) * 1000)}")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _handle


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--faults", default="",
                    help="comma-separated subset of " + ",".join(FAULT_KINDS))
    ap.add_argument("--log")
    ap.add_argument("--upstream-timeout", type=float, default=300.0)
    args = ap.parse_args()
    if not 0.0 <= args.fault_rate <= 1.0:
        sys.exit("fault_proxy: --fault-rate must be in [0, 1]")

    state = State(args)
    Handler.state = state
    server = Server(("127.0.0.1", args.listen_port), Handler)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    port = server.server_address[1]
    start = (f"listening on 127.0.0.1:{port} upstream={args.upstream} "
             f"fault_rate={args.fault_rate} seed={args.seed} faults={','.join(state.faults)}")
    state.log(start)
    print(f"fault_proxy: {start}", file=sys.stderr, flush=True)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    summary = state.summary()
    state.log(summary)
    print(summary, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
