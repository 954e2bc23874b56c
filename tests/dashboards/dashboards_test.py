#!/usr/bin/env python3
"""Every panel query of every dashboard returns data from a real Prometheus.

Starts a real `stella run` job (stella mode with the tuner, two clusters,
metrics on), the real stella-operator reconciling a StellaJob on a real
kube-apiserver (scripts/control-plane.sh), a real Prometheus scraping the
workers and the operator every second, then
evaluates each panel's PromQL (with the dashboard's variables bound to the
job's values) through Prometheus' HTTP API and requires a successful, non-empty
result. Also checks that the JSON only uses variables it defines.

usage: dashboards_test.py BUILD_DIR SOURCE_DIR
Exit code 77 (skipped) only when the Kubernetes test binaries cannot be built.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

# Control planes this process starts die with it (scripts/control-plane.sh).
os.environ["STELLA_OWNER_PID"] = str(os.getpid())

BUILTIN_VARS = {"__interval", "__rate_interval", "__range", "__name__"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_run(count):
    """The first of `count` consecutive loopback ports that are free now, below the
    kernel's ephemeral range so no outgoing connection or bind(:0) takes one of
    them before the job's workers bind "metrics.port + index"."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    low, high = 10000, max(11000, ephemeral_low) - count
    port = low + os.getpid() * 7919 % (high - low)
    for _ in range(high - low):
        if port >= high:
            port = low
        try:
            held = []
            for i in range(count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            port += 1
        finally:
            for s in held:
                s.close()
    return free_port()


def query(prom, expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def variables_used(text):
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def check_static(path, dash):
    problems = []
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    used = variables_used(json.dumps(dash.get("panels", []))) | variables_used(
        json.dumps(dash.get("templating", {})))
    for name in sorted(used - defined - BUILTIN_VARS):
        problems.append(f"{path}: uses undefined variable ${name}")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"{path}: duplicate panel ids {ids}")
    for p in dash["panels"]:
        if not p.get("targets"):
            problems.append(f"{path}: panel {p['title']!r} has no query")
    return problems


def bind(expr, values):
    for name, value in values.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def main():
    build, source = sys.argv[1], sys.argv[2]
    dashboards = sorted(glob.glob(os.path.join(source, "dashboards", "*.json")))
    assert dashboards, "no dashboards found"
    problems = []
    loaded = {}
    for path in dashboards:
        with open(path) as f:
            loaded[path] = json.load(f)  # must be valid JSON
        problems += check_static(os.path.basename(path), loaded[path])

    work = tempfile.mkdtemp(prefix="stella-dash-")
    procs = []
    plane = os.path.join(work, "plane")
    testbin = subprocess.run(["bash", os.path.join(source, "scripts", "testbin.sh")], capture_output=True, text=True)
    if testbin.returncode != 0:
        print("=" * 70 + "\nSKIPPED: the operator dashboard needs a kube-apiserver and the Kubernetes test "
              "binaries could not be built:\n" + testbin.stderr[-2000:] + "\n" + "=" * 70)
        return 77
    try:
        metrics_base = free_port_run(2)  # one port per worker
        job = os.path.join(work, "job.yaml")
        with open(job, "w") as f:
            f.write(f"""apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: dashboards
spec:
  model: {{name: mlp, hidden: 32}}
  dataset: {{name: fashion-mnist}}
  optimizer: {{name: sgd, learningRate: 0.05}}
  batchSize: 32
  training: {{steps: 100000000, evalEvery: 200}}
  sync: {{mode: stella, density: 0.05, minDensity: 0.001, maxDensity: 0.5, tuner: true}}
  clusters:
    - name: east
      wan: {{bandwidthMbps: 20, latencyMs: 2}}
    - name: west
      wan: {{bandwidthMbps: 20, latencyMs: 2}}
  metrics: {{port: {metrics_base}}}
""")
        out = open(os.path.join(work, "stella.out"), "w")
        procs.append(subprocess.Popen([os.path.join(build, "bin", "stella"), "run", job, "--log-dir",
                                       os.path.join(work, "logs")], stdout=out, stderr=subprocess.STDOUT))
        # The operator, reconciling a job on a real API server.
        kubeconfig = subprocess.run(["bash", os.path.join(source, "scripts", "control-plane.sh"), "start", plane],
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        kubectl = [os.path.join(testbin.stdout.strip(), "kubectl"), "--kubeconfig", kubeconfig]
        subprocess.run(kubectl + ["apply", "-f", os.path.join(source, "crds", "stellajob.yaml")], check=True,
                       capture_output=True)
        subprocess.run(kubectl + ["wait", "--for=condition=Established", "crd/stellajobs.stella.dev",
                                  "--timeout=60s"], check=True, capture_output=True)
        # No kube-controller-manager here to make it; pod admission needs it.
        subprocess.run(kubectl + ["create", "serviceaccount", "default", "-n", "default"], capture_output=True)
        op_port = free_port()
        olog = open(os.path.join(work, "operator.log"), "w")
        procs.append(subprocess.Popen([os.path.join(build, "bin", "stella-operator"), "--kubeconfig", kubeconfig,
                                       "--metrics-bind-address", f"127.0.0.1:{op_port}",
                                       "--leader-election-namespace", "default", "--sweep-interval-seconds", "2"],
                                      stdout=olog, stderr=subprocess.STDOUT))
        subprocess.run(kubectl + ["apply", "-f", "-"], check=True, capture_output=True, text=True, input="""
apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata: {name: dashboards, namespace: default}
spec:
  model: {name: mlp}
  dataset: {name: fashion-mnist}
  training: {steps: 10}
  clusters: [{name: local, workers: 2}]
""")
        prom_port = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: stella\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_base}', '127.0.0.1:{metrics_base + 1}']\n"
                    f"  - job_name: stella-operator\n    static_configs:\n      - targets: ['127.0.0.1:{op_port}']\n")
        plog = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(["/usr/bin/prometheus", f"--config.file={work}/prometheus.yml",
                                       f"--storage.tsdb.path={work}/tsdb",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"],
                                      stdout=plog, stderr=subprocess.STDOUT))
        # Wait for both workers, an evaluation, and a few tuner rounds.
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(1)
            try:
                ready = (len(query(prom_port, "stella_steps_total > 50")["data"]["result"]) == 2 and
                         query(prom_port, "stella_test_accuracy > 0")["data"]["result"] and
                         query(prom_port, 'stella_operator_reconcile_total{result="success"} > 0')["data"]["result"])
            except OSError:
                ready = False
            if ready:
                break
        else:
            print(open(os.path.join(work, "stella.out")).read()[-3000:])
            print(open(os.path.join(work, "operator.log")).read()[-3000:])
            raise SystemExit("FAIL: the job's or the operator's metrics never reached Prometheus")
        time.sleep(20)  # enough samples for rate()[1m] and histogram quantiles

        values = {"job": "dashboards", "cluster": ".*", "worker": ".*", "instance": ".*", "datasource": "prometheus",
                  "__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
        checked = 0
        for path, dash in loaded.items():
            for var in dash["templating"]["list"]:
                if var["type"] != "query":
                    continue
                q = var["query"]["query"]
                m = re.match(r"label_values\((.*),\s*(\w+)\)$", q)
                assert m, f"unsupported variable query {q}"
                res = query(prom_port, bind(m.group(1), values))
                if res.get("status") != "success" or not res["data"]["result"]:
                    problems.append(f"{os.path.basename(path)}: variable ${var['name']} query {q!r} found no series")
            for p in dash["panels"]:
                for t in p["targets"]:
                    expr = bind(t["expr"], values)
                    res = query(prom_port, expr)
                    checked += 1
                    if res.get("status") != "success":
                        problems.append(f"{os.path.basename(path)}: {p['title']!r}: {expr}: {res}")
                    elif not res["data"]["result"]:
                        problems.append(f"{os.path.basename(path)}: {p['title']!r}: no data for {expr}")
        print(f"evaluated {checked} panel queries of {len(loaded)} dashboards against a live job")
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT if p is procs[0] else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["bash", os.path.join(source, "scripts", "control-plane.sh"), "stop", plane],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    for pr in problems:
        print("FAIL:", pr)
    print(f"{checked + len(loaded) - len(problems)} passed, {len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
