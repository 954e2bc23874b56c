#!/usr/bin/python3
"""How fast a kwok test cluster (scripts/kwok-cluster.sh) runs many pods.

  bench/kwok_pods.py --kubeconfig DIR/kubeconfig [--pods 4000] [--threads 16]
                     [--gpus-per-pod 0] [--timeout 300] [--keep]

Creates a fresh namespace, creates --pods pods in it through the REST API with
--threads concurrent keep-alive connections (the admin token of the
kubeconfig), and watches the namespace until every pod is Running with
condition Ready True (scheduled by kube-scheduler, started by kwok). Prints
one JSON object: pods, seconds to create them all, seconds until the last was
scheduled (spec.nodeName set) and until the last was Running+Ready, both from
the first create request. Deletes the namespace at the end and waits until it
is gone (deleted_s), unless --keep.
Exit status 1 if not every pod was Running+Ready within --timeout seconds.
"""

import argparse
import http.client
import json
import queue
import re
import ssl
import sys
import threading
import time
import urllib.parse


def read_kubeconfig(path):
    """(host, port, token) of the single-cluster kubeconfig control-plane.sh writes."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    server = re.search(r"^\s*server:\s*(\S+)", text, re.M)
    token = re.search(r"^\s*token:\s*(\S+)", text, re.M)
    if not server or not token:
        sys.exit(f"kwok_pods: {path}: expected 'server:' and 'token:' entries (a kubeconfig from scripts/control-plane.sh)")
    url = urllib.parse.urlparse(server.group(1))
    if url.scheme != "https" or not url.hostname or not url.port:
        sys.exit(f"kwok_pods: {path}: server '{server.group(1)}': expected https://HOST:PORT")
    return url.hostname, url.port, token.group(1)


class Api:
    """One keep-alive HTTPS connection; not thread-safe (one per thread)."""

    def __init__(self, host, port, token, timeout=60):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the control plane's self-signed serving cert
        self.conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, json.loads(payload) if payload else {}


def pod_manifest(name, gpus):
    container = {"name": "main", "image": "stella/bench:kwok"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container]}}


def running_ready(pod):
    status = pod.get("status", {})
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def watch(host, port, token, ns, rv, want, t0, out, stop):
    """Follows pod events from resourceVersion rv; records when the last pod
    was scheduled and when the last became Running+Ready."""
    scheduled, ready = set(), set()
    while not stop.is_set() and len(ready) < want:
        api = Api(host, port, token, timeout=30)
        path = (f"/api/v1/namespaces/{ns}/pods?watch=1&allowWatchBookmarks=true"
                f"&resourceVersion={rv}&timeoutSeconds=25")
        api.conn.request("GET", path, headers=api.headers)
        resp = api.conn.getresponse()
        if resp.status != 200:
            out["error"] = f"watch: HTTP {resp.status}: {resp.read()[:300]!r}"
            stop.set()
            return
        for line in resp:
            ev = json.loads(line)
            obj = ev.get("object", {})
            if ev.get("type") == "ERROR":
                out["error"] = f"watch: {obj.get('message')}"
                stop.set()
                return
            rv = obj.get("metadata", {}).get("resourceVersion", rv)
            if ev.get("type") == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if obj.get("spec", {}).get("nodeName") and name not in scheduled:
                scheduled.add(name)
                if len(scheduled) == want:
                    out["scheduled_s"] = time.monotonic() - t0
            if running_ready(obj) and name not in ready:
                ready.add(name)
                if len(ready) == want:
                    out["running_s"] = time.monotonic() - t0
                    break
            if stop.is_set():
                break
        api.conn.close()
    out["ready_pods"] = len(ready)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--pods", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--gpus-per-pod", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the namespace and its pods")
    args = ap.parse_args()
    for flag, value, low in (("--pods", args.pods, 1), ("--threads", args.threads, 1), ("--gpus-per-pod", args.gpus_per_pod, 0)):
        if value < low:
            sys.exit(f"kwok_pods: {flag} {value}: expected an integer >= {low}")

    host, port, token = read_kubeconfig(args.kubeconfig)
    api = Api(host, port, token)
    ns = f"kwok-bench-{int(time.time())}"
    status, body = api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    if status != 201:
        sys.exit(f"kwok_pods: creating namespace {ns}: HTTP {status}: {body.get('message')}")
    # Pods are refused until the service-account controller made "default".
    deadline = time.monotonic() + 30
    while api.call("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] != 200:
        if time.monotonic() > deadline:
            sys.exit(f"kwok_pods: namespace {ns} got no default ServiceAccount in 30 s (is kube-controller-manager running?)")
        time.sleep(0.2)
    status, body = api.call("GET", f"/api/v1/namespaces/{ns}/pods")
    rv = body["metadata"]["resourceVersion"]

    out = {"pods": args.pods, "threads": args.threads, "namespace": ns}
    stop = threading.Event()
    t0 = time.monotonic()
    watcher = threading.Thread(target=watch, name="pod-watch",
                               args=(host, port, token, ns, rv, args.pods, t0, out, stop))
    watcher.start()

    names = queue.Queue()
    for i in range(args.pods):
        names.put(f"p-{i}")
    errors = []

    def creator():
        c = Api(host, port, token)
        while not stop.is_set():
            try:
                name = names.get_nowait()
            except queue.Empty:
                return
            st, b = c.call("POST", f"/api/v1/namespaces/{ns}/pods", pod_manifest(name, args.gpus_per_pod))
            if st != 201:
                errors.append(f"{name}: HTTP {st}: {b.get('message')}")
                stop.set()
                return

    workers = [threading.Thread(target=creator, name=f"create-{i}") for i in range(args.threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out["created_s"] = time.monotonic() - t0
    if errors:
        out["error"] = f"create: {errors[0]}"
    watcher.join(timeout=max(0.0, args.timeout - (time.monotonic() - t0)))
    stop.set()
    watcher.join(timeout=30)
    ok = "running_s" in out and "error" not in out
    for k in ("created_s", "scheduled_s", "running_s"):
        if k in out:
            out[k] = round(out[k], 2)
    if ok:
        out["pods_per_s"] = round(args.pods / out["running_s"], 1)
    if not args.keep:
        # Wait until the namespace is gone, so that a following run starts on
        # empty nodes (pods still terminating would fill them: Unschedulable).
        t_del = time.monotonic()
        api.call("DELETE", f"/api/v1/namespaces/{ns}")
        while api.call("GET", f"/api/v1/namespaces/{ns}")[0] != 404:
            if time.monotonic() - t_del > 180:
                out["error"] = out.get("error", f"namespace {ns} not deleted within 180 s")
                break
            time.sleep(0.5)
        else:
            out["deleted_s"] = round(time.monotonic() - t_del, 2)
    print(json.dumps(out))
    if not ok:
        print(f"kwok_pods: not every pod was Running+Ready within {args.timeout} s "
              f"({out.get('ready_pods', 0)} of {args.pods}){': ' + out['error'] if 'error' in out else ''}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
