#!/usr/bin/env python3
"""Checks deploy/: the Kubernetes manifests parse and have the fields Cairn
relies on; the systemd units name real executables and flags.
Prints 'N passed, N failed'; exit 1 on any failure."""
import os, re, subprocess, sys
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("CAIRN_BIN_DIR", os.path.join(ROOT, "build", "bin"))
passed = failed = 0

def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)

docs = list(yaml.safe_load_all(open(os.path.join(ROOT, "deploy/kubernetes/cairn.yaml"))))
kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
coord = kinds.get(("StatefulSet", "cairn-coordinator"))
writer = kinds.get(("StatefulSet", "cairn-writer"))
check(coord is not None and writer is not None, "coordinator and writer StatefulSets exist")
check(coord["spec"]["replicas"] == 1, "exactly one coordinator")
check(any(t["metadata"]["name"] == "catalog" for t in coord["spec"]["volumeClaimTemplates"]),
      "the coordinator's catalog is on a persistent volume")
cargs = coord["spec"]["template"]["spec"]["containers"][0]["args"]
check(any(a.startswith("--db=/var/lib/cairn") for a in cargs), "--db on the volume")
mounts = {m["name"]: m["mountPath"] for m in coord["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
check(mounts.get("catalog") == "/var/lib/cairn", "catalog volume mounted at /var/lib/cairn")
check(("Service", "cairn-coordinator") in kinds and ("Service", "cairn-writer") in kinds, "services exist")
check(writer["spec"]["replicas"] >= 1, "writers scale")
for name, ss in (("coordinator", coord), ("writer", writer)):
    c = ss["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    for flag in ("--tls-cert=", "--tls-key=", "--tls-ca=", "--auth-key-file="):
        check(any(a.startswith(flag) for a in args), f"{name} has {flag}")
    secrets = {v["secret"]["secretName"] for v in ss["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    check({"cairn-tls", "cairn-auth-key"} <= secrets, f"{name} mounts the TLS and auth secrets")
    env_from = c.get("envFrom", [])
    check(any(e.get("secretRef", {}).get("name") == "cairn-s3-credentials" for e in env_from),
          f"{name} gets S3 credentials from a Secret")
    check(ss["spec"]["selector"]["matchLabels"].items() <= ss["spec"]["template"]["metadata"]["labels"].items(),
          f"{name} selector matches its pods")
    check(c["ports"][0]["containerPort"] in (7070, 7071), f"{name} port")
cm = kinds.get(("ConfigMap", "cairn-config"))
check(cm is not None and cm["data"]["CAIRN_STORAGE"].startswith("s3://"), "S3 storage configured")

# Every flag used by deploy/ exists in the executables' --help.
def flags_of(exe):
    out = subprocess.run([os.path.join(BIN, exe), "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"--([a-z0-9-]+)", out))
have = {"cairn-coordinator": flags_of("cairn-coordinator"), "cairn-writer": flags_of("cairn-writer")}
for name, ss, exe in (("coordinator", coord, "cairn-coordinator"), ("writer", writer, "cairn-writer")):
    for a in ss["spec"]["template"]["spec"]["containers"][0]["args"]:
        flag = a[2:].split("=")[0]
        check(flag in have[exe], f"{exe} --help documents --{flag} (used in the manifest)")
for unit, exe in (("cairn-coordinator.service", "cairn-coordinator"), ("cairn-writer@.service", "cairn-writer")):
    text = open(os.path.join(ROOT, "deploy/systemd", unit)).read()
    check(f"/usr/local/bin/{exe}" in text, f"{unit} runs {exe}")
    for flag in re.findall(r"--([a-z0-9-]+)=", text):
        check(flag in have[exe], f"{unit}: {exe} --help documents --{flag}")
# The HA variant: 3 etcd members, 2 coordinators on the etcd catalog, ready
# only while leading, and every flag real.
ha = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(os.path.join(ROOT, "deploy/kubernetes/cairn-ha.yaml")))}
etcd = ha.get(("StatefulSet", "cairn-etcd"))
hacoord = ha.get(("StatefulSet", "cairn-coordinator"))
check(etcd is not None and etcd["spec"]["replicas"] == 3, "HA: a 3-member etcd")
check(hacoord is not None and hacoord["spec"]["replicas"] >= 2, "HA: at least 2 coordinators")
hc = hacoord["spec"]["template"]["spec"]["containers"][0]
check(any(a.startswith("--catalog=etcd://") for a in hc["args"]), "HA: coordinators use the etcd catalog")
check(not any(a.startswith("--db=") for a in hc["args"]), "HA: no local --db")
check(hc.get("readinessProbe", {}).get("tcpSocket", {}).get("port") == 7070,
      "HA: readiness = listening = leading")
check(("Service", "cairn-coordinator") in ha, "HA: the coordinator Service")
for a in hc["args"]:
    flag = a[2:].split("=")[0]
    check(flag in have["cairn-coordinator"], f"HA manifest: cairn-coordinator --help documents --{flag}")
text = open(os.path.join(ROOT, "deploy/systemd/cairn-coordinator-ha.service")).read()
check("--catalog=etcd://" in text, "HA unit uses the etcd catalog")
for flag in re.findall(r"--([a-z0-9-]+)=", text):
    check(flag in have["cairn-coordinator"], f"cairn-coordinator-ha.service: --help documents --{flag}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
