#!/usr/bin/env python3
"""Makes etcd's v3 API schemas (as Debian's golang-etcd-server-dev ships them)
compilable by protoc alone: drops the gogoproto and google.api imports and the
options that name them. Nothing else changes: messages, field numbers and
services are etcd's own, so the generated client speaks etcd's wire format.

usage: etcd_proto.py SRC_ROOT OUT_DIR
  SRC_ROOT  /usr/share/gocode/src/go.etcd.io  (holds etcd/...)
  OUT_DIR   where etcd/mvcc/mvccpb/kv.proto, etcd/auth/authpb/auth.proto and
            etcd/etcdserver/etcdserverpb/rpc.proto are written
"""
import os
import re
import sys

FILES = [
    "etcd/mvcc/mvccpb/kv.proto",
    "etcd/auth/authpb/auth.proto",
    "etcd/etcdserver/etcdserverpb/rpc.proto",
]


def drop_http_options(text):
    """Removes every `option (google.api.http) = { ... };`, nested braces and all."""
    out = []
    pos = 0
    pattern = re.compile(r"\s*option \(google\.api\.http\) = \{")
    while True:
        m = pattern.search(text, pos)
        if not m:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:m.start()])
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if text[i] != ";":
            raise SystemExit("etcd_proto.py: unexpected text after a google.api.http option")
        pos = i + 1


def clean(text):
    text = re.sub(r'^import "gogoproto/gogo.proto";\n', "", text, flags=re.M)
    text = re.sub(r'^import "google/api/annotations.proto";\n', "", text, flags=re.M)
    text = re.sub(r"^option \(gogoproto\.[^;]*;\n", "", text, flags=re.M)
    text = drop_http_options(text)
    # field options naming gogoproto: [(gogoproto.nullable) = false, ...]
    text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
    if "gogoproto" in text or "google.api" in text:
        raise SystemExit("etcd_proto.py: an unhandled gogoproto/google.api use remains")
    return text


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src_root, out_dir = sys.argv[1], sys.argv[2]
    for rel in FILES:
        src = os.path.join(src_root, rel)
        if not os.path.exists(src):
            raise SystemExit(f"etcd_proto.py: {src} missing (install golang-etcd-server-dev)")
        with open(src) as f:
            text = clean(f.read())
        dst = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        old = open(dst).read() if os.path.exists(dst) else None
        if old != text:
            with open(dst, "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
