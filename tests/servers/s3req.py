#!/usr/bin/env python3
"""Minimal S3 request tool with AWS Signature V4 (Python stdlib only).

    s3req.py METHOD /BUCKET[/KEY][?QUERY] [--data-file F | --data STR]
             [--out F] [-H 'Name: value']... [--unsigned-payload] [--endpoint URL]

Credentials and endpoint come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION (as printed by ceph_rgw.sh start).
Path-style addressing. Prints "HTTP STATUS" to stderr, the response body to
--out (or stdout), and exits 0 on a 2xx status, 1 otherwise.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 1 << 20


def _quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(method, host, path, query, headers, payload_hash, access_key,
                  secret_key, region, service="s3", now=None):
    """Returns headers (a new dict) with x-amz-date, x-amz-content-sha256 and
    Authorization added. `path` is the unencoded path, `query` a list of
    (name, value) pairs, unencoded."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    out = dict(headers)
    out["host"] = host
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash
    canon_headers = sorted((k.lower().strip(), " ".join(str(v).split())) for k, v in out.items())
    signed = ";".join(k for k, _ in canon_headers)
    canon_query = "&".join(
        f"{_quote(k)}={_quote(v)}" for k, v in sorted((k, v) for k, v in query))
    canon_req = "\n".join([
        method,
        _quote(path, safe="/-_.~"),
        canon_query,
        "".join(f"{k}:{v}\n" for k, v in canon_headers),
        signed,
        payload_hash,
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canon_req.encode()).hexdigest()])
    k = _sign(("AWS4" + secret_key).encode(), date)
    k = _sign(k, region)
    k = _sign(k, service)
    k = _sign(k, "aws4_request")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("target", help="/bucket/key?query (unencoded)")
    ap.add_argument("--data")
    ap.add_argument("--data-file")
    ap.add_argument("--out")
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("--unsigned-payload", action="store_true")
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    if not a.endpoint:
        sys.exit("s3req: no endpoint (set AWS_ENDPOINT_URL or --endpoint)")
    ep = urllib.parse.urlsplit(a.endpoint)
    if ep.scheme != "http":
        sys.exit("s3req: only http:// endpoints are supported")
    path, _, qs = a.target.partition("?")
    query = urllib.parse.parse_qsl(qs, keep_blank_values=True)

    body, length, payload_hash = None, 0, EMPTY_SHA256
    if a.data is not None:
        body = a.data.encode()
        length = len(body)
        payload_hash = hashlib.sha256(body).hexdigest()
    elif a.data_file:
        length = os.path.getsize(a.data_file)
        if a.unsigned_payload:
            payload_hash = "UNSIGNED-PAYLOAD"
        else:
            h = hashlib.sha256()
            with open(a.data_file, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    h.update(chunk)
            payload_hash = h.hexdigest()
    if a.unsigned_payload:
        payload_hash = "UNSIGNED-PAYLOAD"

    headers = {}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    if body is not None or a.data_file or a.method in ("PUT", "POST"):
        headers["Content-Length"] = str(length)
    headers = sigv4_headers(a.method, ep.netloc, path, query, headers, payload_hash,
                            os.environ["AWS_ACCESS_KEY_ID"],
                            os.environ["AWS_SECRET_ACCESS_KEY"],
                            os.environ.get("AWS_REGION", "us-east-1"))
    url = _quote(path, safe="/-_.~")
    if query:
        url += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query)

    conn = http.client.HTTPConnection(ep.hostname, ep.port or 80, timeout=a.timeout)
    conn.putrequest(a.method, url, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body is not None:
        conn.send(body)
    elif a.data_file:
        with open(a.data_file, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                conn.send(chunk)
    resp = conn.getresponse()
    out = open(a.out, "wb") if a.out else sys.stdout.buffer
    try:
        for chunk in iter(lambda: resp.read(CHUNK), b""):
            out.write(chunk)
    finally:
        if a.out:
            out.close()
        else:
            out.flush()
    print(f"HTTP {resp.status}", file=sys.stderr)
    return 0 if 200 <= resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
