#!/usr/bin/env python3
"""Scale benchmark of stella-operator on kwok: N StellaJobs x 2 member clusters
x W workers each.

Starts a hub and two member control planes (scripts/test-clusters.sh, kwok fake
nodes), the real stella-operator, then creates N jobs as fast as the hub takes
them and measures:
  - seconds from the last create until every job's status.phase is Running
  - API requests per job (the operator's own stella_operator_api_requests_total,
    all clusters, divided by N)
  - the operator's peak resident memory (VmHWM) and CPU seconds (utime+stime)

usage: bench/operator_scale.py [--jobs 500] [--workers 4] [--nodes 25] [--json OUT]
Goal (issue 5): all Running within 60 s of the last apply, < 30 requests per
job, < 150 MiB.
"""
import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# Control planes this process starts die with it (scripts/control-plane.sh).
os.environ["STELLA_OWNER_PID"] = str(os.getpid())

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def read_kubeconfig(path):
    server = token = None
    for line in open(path):
        line = line.strip()
        if line.startswith("server:"):
            server = line.split(None, 1)[1]
        if line.startswith("token:"):
            token = line.split(None, 1)[1]
    return server, token


class Api:
    """Just enough REST for the benchmark driver (admin token, no TLS check:
    the test control planes use self-signed serving certificates)."""

    def __init__(self, kubeconfig):
        self.server, self.token = read_kubeconfig(kubeconfig)
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.server + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)


def job(name, workers):
    return {
        "apiVersion": "stella.dev/v1alpha1", "kind": "StellaJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"name": "mlp"}, "dataset": {"name": "fashion-mnist"}, "training": {"steps": 1000},
            "clusters": [
                {"name": "a", "workers": workers, "devicesPerWorker": 0,
                 "kubeconfigSecret": {"name": "member-a-kubeconfig"}, "gateway": {"type": "NodePort"}},
                {"name": "b", "workers": workers, "devicesPerWorker": 0,
                 "kubeconfigSecret": {"name": "member-b-kubeconfig"}, "gateway": {"type": "NodePort"}},
            ],
        },
    }


def proc_stats(pid):
    hwm_kib = 0
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            hwm_kib = int(line.split()[1])
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return hwm_kib / 1024.0, cpu


def metric_sum(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        total = 0.0
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.split()[-1])
        return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=25, help="kwok nodes per member (110 pods each)")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--operator-workers", type=int, default=4, help="stella-operator --workers")
    args = ap.parse_args()

    d = tempfile.mkdtemp(prefix="stella-scale-")
    t0 = time.time()
    subprocess.run(["bash", os.path.join(SRC, "scripts", "test-clusters.sh"), "start", d, "--member-nodes",
                    str(args.nodes)], check=True, stdout=subprocess.DEVNULL)
    print("control planes up in %.1f s" % (time.time() - t0), flush=True)
    op = None
    try:
        port = 18080
        log = open(os.path.join(d, "operator.log"), "w")
        op = subprocess.Popen([os.path.join(args.build, "bin", "stella-operator"), "--kubeconfig",
                               os.path.join(d, "hub", "kubeconfig"), "--leader-elect", "false",
                               "--metrics-bind-address", "127.0.0.1:%d" % port, "--log-level", "warn",
                               "--workers", str(args.operator_workers)],
                              stdout=log, stderr=subprocess.STDOUT)
        hub = Api(os.path.join(d, "hub", "kubeconfig"))
        time.sleep(1)
        base_requests = metric_sum(port, "stella_operator_api_requests_total")
        path = "/apis/stella.dev/v1alpha1/namespaces/default/stellajobs"
        names = ["scale-%04d" % i for i in range(args.jobs)]
        t_first = time.time()
        # Four creating threads: the hub, not the driver, should be the limit.
        errors = []

        def create(chunk):
            for n in chunk:
                code, body = hub.call("POST", path, job(n, args.workers))
                if code != 201:
                    errors.append((n, code, body.get("message")))
        threads = [threading.Thread(target=create, args=(names[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_last = time.time()
        if errors:
            sys.exit("creating jobs failed: %r" % errors[:3])
        print("created %d jobs in %.1f s" % (args.jobs, t_last - t_first), flush=True)
        peak_mib = cpu = 0.0
        running = 0
        while time.time() - t_last < args.timeout:
            code, body = hub.call("GET", path)
            running = sum(1 for j in body["items"] if j.get("status", {}).get("phase") == "Running")
            peak_mib, cpu = proc_stats(op.pid)
            if running == args.jobs:
                break
            time.sleep(0.5)
        t_running = time.time()
        requests = metric_sum(port, "stella_operator_api_requests_total") - base_requests
        peak_mib, cpu = proc_stats(op.pid)
        result = {
            "jobs": args.jobs, "workers_per_cluster": args.workers, "members": 2,
            "operator_workers": args.operator_workers, "load_average_1m": os.getloadavg()[0],
            "pods": args.jobs * 2 * args.workers,
            "create_seconds": round(t_last - t_first, 2),
            "running_after_last_create_seconds": round(t_running - t_last, 2),
            "all_running": running == args.jobs,
            "api_requests_per_job": round(requests / args.jobs, 2),
            "operator_peak_rss_mib": round(peak_mib, 1),
            "operator_cpu_seconds": round(cpu, 1),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0 if running == args.jobs else 1
    finally:
        if op and op.poll() is None:
            op.send_signal(signal.SIGTERM)
            try:
                op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                op.kill()
        subprocess.run(["bash", os.path.join(SRC, "scripts", "test-clusters.sh"), "stop", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
