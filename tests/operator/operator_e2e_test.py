#!/usr/bin/env python3
"""stella-operator end to end, on real control planes.

A hub and two member clusters (etcd + kube-apiserver each, built from the Go
module proxy by scripts/testbin.sh), kwok fake GPU nodes and kube-scheduler in
the members (scripts/test-clusters.sh), and the real stella-operator binary
talking to them over HTTPS. Every promise of the operator is driven through
kubectl, as a user would:

  apply -> pods in both members with the right resources, arguments and peer
  addresses -> Running with per-cluster counts -> Succeeded; delete -> every
  child in every member gone; suspend/resume; a failing pod restarted until
  backoffLimit then Failed; a member API server killed mid-job ->
  ClusterUnreachable, no crash, recovery; the operator killed and restarted
  mid-job -> no duplicate or lost children; two replicas -> one leader.

Exit code 77 (ctest: skipped) only when the Kubernetes binaries cannot be
built, with the reason printed.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

# Control planes this process starts die with it (scripts/control-plane.sh).
os.environ["STELLA_OWNER_PID"] = str(os.getpid())

SRC = os.environ.get("STELLA_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("STELLA_BUILD_DIR", os.path.join(SRC, "build"))
OPERATOR = os.path.join(BUILD, "bin", "stella-operator")
WAIT = 60  # seconds; every wait is bounded


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Clusters:
    """Three control planes started by scripts/test-clusters.sh."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="stella-op-e2e-")
        r = subprocess.run(["bash", os.path.join(SRC, "scripts", "test-clusters.sh"), "start", self.dir],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise RuntimeError("scripts/test-clusters.sh start failed (exit %d)" % r.returncode)
        self.kubectl = os.path.join(subprocess.run(["bash", os.path.join(SRC, "scripts", "testbin.sh")],
                                                   capture_output=True, text=True, check=True).stdout.strip(),
                                    "kubectl")
        self.kubeconfig = {name: os.path.join(self.dir, name, "kubeconfig") for name in ("hub", "member-a", "member-b")}

    def stop(self):
        subprocess.run(["bash", os.path.join(SRC, "scripts", "test-clusters.sh"), "stop", self.dir],
                       capture_output=True, text=True, timeout=120)

    def k(self, cluster, *args, input=None, check=True):
        r = subprocess.run([self.kubectl, "--kubeconfig", self.kubeconfig[cluster], *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s on %s failed: %s" % (" ".join(args), cluster, r.stderr))
        return r

    def get(self, cluster, *args):
        r = self.k(cluster, "get", *args, "-o", "json", check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def pods(self, cluster, job):
        out = self.get(cluster, "pods", "-n", "default", "-l", "stella.dev/job-name=" + job)
        return sorted(out["items"], key=lambda p: p["metadata"]["name"]) if out else []

    def services(self, cluster, job):
        out = self.get(cluster, "services", "-n", "default", "-l", "stella.dev/job-name=" + job)
        return out["items"] if out else []

    def job(self, name):
        return self.get("hub", "stellajobs", name, "-n", "default")

    def set_pod_phase(self, cluster, pod, phase):
        """What a kubelet does when the container exits: write the pod's status."""
        code = 0 if phase == "Succeeded" else 1
        status = {"status": {"phase": phase, "containerStatuses": [{
            "name": "worker", "ready": False, "restartCount": 0, "image": "stella", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}]}}
        self.k(cluster, "patch", "pod", pod, "-n", "default", "--subresource=status", "--type=merge",
               "-p", json.dumps(status))

    def set_lb_ingress(self, cluster, service, ip):
        """What a cloud load-balancer controller does."""
        self.k(cluster, "patch", "service", service, "-n", "default", "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))


class Operator:
    def __init__(self, clusters, identity, leader_elect=True):
        self.metrics_port = free_port()
        self.log = open(os.path.join(clusters.dir, "operator-%s.log" % identity), "a")
        self.proc = subprocess.Popen(
            [OPERATOR, "--kubeconfig", clusters.kubeconfig["hub"], "--identity", identity,
             "--metrics-bind-address", "127.0.0.1:%d" % self.metrics_port, "--leader-elect",
             "true" if leader_elect else "false", "--leader-election-namespace", "default",
             "--default-image", "stella:e2e", "--log-level", "debug", "--sweep-interval-seconds", "5"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        try:
            text = self.metrics()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.split()[-1])
        return None

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_for(what, fn, timeout=WAIT, interval=0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ds waiting for %s (last: %r)" % (timeout, what, last))


def condition(job, ctype):
    for c in (job or {}).get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def manifest(name, backoff_limit=3, suspend=False, checkpoint=True, gateway_a="LoadBalancer"):
    m = {
        "apiVersion": "stella.dev/v1alpha1", "kind": "StellaJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "model": {"name": "cnn"}, "dataset": {"name": "fashion-mnist"},
            "training": {"steps": 100}, "sync": {"mode": "stella"},
            "clusters": [
                {"name": "onprem", "workers": 2, "devicesPerWorker": 1,
                 "kubeconfigSecret": {"name": "member-a-kubeconfig"},
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                 "gateway": {"type": gateway_a, "port": 29500}},
                {"name": "cloud", "workers": 2, "devicesPerWorker": 2,
                 "kubeconfigSecret": {"name": "member-b-kubeconfig"},
                 "gateway": {"type": "NodePort", "port": 29501}},
            ],
            "runPolicy": {"backoffLimit": backoff_limit, "suspend": suspend},
        },
    }
    if checkpoint:
        m["spec"]["checkpoint"] = {"path": "/checkpoints/" + name, "intervalSteps": 50}
    return json.dumps(m)


def arg_after(pod, flag):
    args = pod["spec"]["containers"][0]["args"]
    return args[args.index(flag) + 1] if flag in args else None


class OperatorE2E(unittest.TestCase):
    clusters = None
    operator = None

    @classmethod
    def setUpClass(cls):
        cls.clusters = Clusters()
        cls.operator = Operator(cls.clusters, "op-1")
        wait_for("operator to lead", lambda: cls.operator.metric("stella_operator_is_leader") == 1)

    @classmethod
    def tearDownClass(cls):
        if cls.operator:
            cls.operator.stop()
        if cls.clusters:
            if os.environ.get("STELLA_KEEP_CLUSTERS"):
                print("clusters kept in", cls.clusters.dir)
            else:
                cls.clusters.stop()

    def tearDown(self):
        self.assertIsNone(self.operator.proc.poll(), "the operator exited (see its log in %s)" % self.clusters.dir)

    def start_job(self, name, **kw):
        c = self.clusters
        c.k("hub", "apply", "-f", "-", input=manifest(name, **kw))
        # member-a's gateway is a LoadBalancer: play the cloud controller.
        svc = wait_for("gateway service in member-a",
                       lambda: [s for s in c.services("member-a", name) if s["metadata"]["name"].endswith("-gw")])
        c.set_lb_ingress("member-a", svc[0]["metadata"]["name"], "198.51.100.7")
        return wait_for("4 pods", lambda: (len(c.pods("member-a", name)) == 2 and len(c.pods("member-b", name)) == 2)
                        and (c.pods("member-a", name), c.pods("member-b", name)))

    def wait_phase(self, name, phase, timeout=WAIT):
        return wait_for("%s to be %s" % (name, phase),
                        lambda: (self.clusters.job(name) or {}).get("status", {}).get("phase") == phase
                        and self.clusters.job(name), timeout=timeout)

    def test_1_lifecycle_apply_run_succeed_delete(self):
        c = self.clusters
        pods_a, pods_b = self.start_job("life")
        # Resources, arguments and peer addresses.
        a0 = pods_a[0]
        self.assertEqual(a0["metadata"]["name"], "life-onprem-0")
        self.assertEqual(a0["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1")
        self.assertEqual(a0["spec"]["containers"][0]["resources"]["requests"]["cpu"], "1")
        self.assertEqual(pods_b[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "2")
        self.assertEqual(arg_after(a0, "--cluster-index"), "0")
        self.assertEqual(arg_after(pods_b[1], "--local-rank"), "1")
        wan_a = arg_after(a0, "--wan-addresses").split(",")
        wan_b = arg_after(pods_b[0], "--wan-addresses").split(",")
        self.assertEqual(wan_a[0], "0.0.0.0:29500")
        self.assertEqual(wan_b[0], "198.51.100.7:29500")  # the LoadBalancer ingress
        gw_b = [s for s in c.services("member-b", "life") if s["metadata"]["name"] == "life-cloud-gw"][0]
        node_port = gw_b["spec"]["ports"][0]["nodePort"]
        self.assertTrue(wan_a[1].endswith(":%d" % node_port), wan_a)  # a member-b node : its NodePort
        self.assertEqual(wan_b[1], "0.0.0.0:29501")
        self.assertEqual(arg_after(a0, "--store-host"), "life-onprem-0.life-onprem")
        # Mutual TLS: each gateway mounts its cluster's Secret; both signed by one job CA.
        self.assertEqual(arg_after(a0, "--tls-dir"), "/etc/stella/tls")
        self.assertIsNone(arg_after(pods_a[1], "--tls-dir"))
        secrets = [c.get(m, "secret", "life-%s-tls" % cl, "-n", "default")
                   for m, cl in (("member-a", "onprem"), ("member-b", "cloud"))]
        self.assertTrue(all(secrets), "TLS secrets in both members")
        self.assertEqual(len({s["metadata"]["annotations"]["stella.dev/ca"] for s in secrets}), 1)
        self.assertEqual(sorted(secrets[0]["data"]), ["ca.crt", "tls.crt", "tls.key"])
        self.assertEqual(secrets[0]["data"]["ca.crt"], secrets[1]["data"]["ca.crt"])
        self.assertNotEqual(secrets[0]["data"]["tls.crt"], secrets[1]["data"]["tls.crt"])
        # kwok runs them -> Running with per-cluster counts.
        job = self.wait_phase("life", "Running")
        self.assertEqual(job["status"]["clustersReady"], "2/2")
        self.assertEqual([cl["running"] for cl in job["status"]["clusters"]], [2, 2])
        self.assertEqual(condition(job, "Running")["status"], "True")
        self.assertEqual(job["status"]["observedGeneration"], job["metadata"]["generation"])
        self.assertIn("startTime", job["status"])
        # The workers finish -> Succeeded.
        for cl, pods in (("member-a", pods_a), ("member-b", pods_b)):
            for p in pods:
                c.set_pod_phase(cl, p["metadata"]["name"], "Succeeded")
        job = self.wait_phase("life", "Succeeded")
        self.assertEqual(condition(job, "Succeeded")["status"], "True")
        self.assertIn("completionTime", job["status"])
        events = c.get("hub", "events", "-n", "default", "--field-selector", "involvedObject.name=life")
        reasons = {e["reason"] for e in events["items"]}
        self.assertTrue({"Created", "Running", "Succeeded"} <= reasons, reasons)
        # Delete -> every child in every member is gone, then the job.
        c.k("hub", "delete", "stellajob", "life", "-n", "default", "--wait=false")
        wait_for("children gone", lambda: not any(c.pods(m, "life") or c.services(m, "life")
                                                  for m in ("member-a", "member-b")))
        wait_for("job gone", lambda: c.job("life") is None)
        self.assertIsNone(c.get("member-a", "secret", "life-onprem-tls", "-n", "default"))
        self.assertIsNone(c.get("member-b", "secret", "life-cloud-tls", "-n", "default"))

    def test_2_suspend_and_resume(self):
        c = self.clusters
        self.start_job("susp")
        self.wait_phase("susp", "Running")
        c.k("hub", "patch", "stellajob", "susp", "-n", "default", "--type=merge",
            "-p", '{"spec":{"runPolicy":{"suspend":true}}}')
        job = self.wait_phase("susp", "Suspended")
        self.assertEqual(condition(job, "Suspended")["status"], "True")
        wait_for("pods deleted", lambda: not c.pods("member-a", "susp") and not c.pods("member-b", "susp"))
        self.assertTrue(c.services("member-a", "susp"), "services stay while suspended")
        c.k("hub", "patch", "stellajob", "susp", "-n", "default", "--type=merge",
            "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
        job = self.wait_phase("susp", "Running")
        self.assertEqual(condition(job, "Suspended")["status"], "False")
        # Rotation on request: a new job CA, new certificates, workers restarted.
        ca_before = c.get("member-a", "secret", "susp-onprem-tls", "-n", "default")["metadata"]["annotations"]["stella.dev/ca"]
        uid_before = c.pods("member-b", "susp")[0]["metadata"]["uid"]
        c.k("hub", "annotate", "stellajob", "susp", "-n", "default", "stella.dev/rotate-certificates=r1")
        wait_for("certificates rotated", lambda: (c.job("susp") or {}).get("status", {}).get("certificatesRotation") == "r1")
        cas = wait_for("both secrets on the new CA", lambda: (lambda a, b: a == b and a != ca_before and a)(
            c.get("member-a", "secret", "susp-onprem-tls", "-n", "default")["metadata"]["annotations"]["stella.dev/ca"],
            c.get("member-b", "secret", "susp-cloud-tls", "-n", "default")["metadata"]["annotations"]["stella.dev/ca"]))
        self.assertTrue(cas)
        wait_for("workers restarted", lambda: len(c.pods("member-b", "susp")) == 2 and
                 c.pods("member-b", "susp")[0]["metadata"]["uid"] != uid_before)
        self.wait_phase("susp", "Running")
        c.k("hub", "delete", "stellajob", "susp", "-n", "default")

    def test_3_failed_pod_restarts_until_backoff_limit(self):
        c = self.clusters
        pods_a, _ = self.start_job("flaky", backoff_limit=1)
        self.wait_phase("flaky", "Running")
        c.set_pod_phase("member-a", pods_a[1]["metadata"]["name"], "Failed")
        # Whole job restarts: attempt 1, resuming from the checkpoint.
        job = wait_for("restart recorded", lambda: (c.job("flaky") or {}).get("status", {}).get("restarts") == 1
                       and c.job("flaky"))

        def attempt1():
            pods = c.pods("member-a", "flaky") + c.pods("member-b", "flaky")
            return len(pods) == 4 and all(p["metadata"]["annotations"]["stella.dev/attempt"] == "1" for p in pods) \
                and pods
        pods = wait_for("attempt-1 pods", attempt1)
        self.assertTrue(all("--resume" in p["spec"]["containers"][0]["args"] for p in pods))
        self.wait_phase("flaky", "Running")
        c.set_pod_phase("member-b", "flaky-cloud-0", "Failed")
        job = self.wait_phase("flaky", "Failed")
        self.assertEqual(condition(job, "Failed")["reason"], "BackoffLimitExceeded")
        self.assertIn("flaky-cloud-0", job["status"]["message"])
        c.k("hub", "delete", "stellajob", "flaky", "-n", "default")

    def test_4_member_api_server_lost_and_back(self):
        c = self.clusters
        self.start_job("lost")
        self.wait_phase("lost", "Running")
        plane = ["bash", os.path.join(SRC, "scripts", "control-plane.sh")]
        subprocess.run(plane + ["stop-apiserver", os.path.join(c.dir, "member-b")], check=True, timeout=60)
        try:
            job = wait_for("ClusterUnreachable", lambda: (condition(c.job("lost"), "ClusterUnreachable") or {})
                           .get("status") == "True" and c.job("lost"))
            self.assertIn("cloud", condition(job, "ClusterUnreachable")["message"])
            wait_for("connectivity metric 0", lambda: self.operator.metric(
                'stella_operator_cluster_connected{cluster="default/member-b-kubeconfig/kubeconfig"}') == 0, timeout=20)
            self.assertIsNone(self.operator.proc.poll(), "operator crashed")
            # Pods in member-a are left alone meanwhile.
            self.assertEqual(len(c.pods("member-a", "lost")), 2)
        finally:
            subprocess.run(plane + ["start-apiserver", os.path.join(c.dir, "member-b")], check=True, timeout=120)
        job = wait_for("cluster reachable again", lambda: (condition(c.job("lost"), "ClusterUnreachable") or {})
                       .get("status") == "False" and c.job("lost"), timeout=90)
        self.wait_phase("lost", "Running")
        c.k("hub", "delete", "stellajob", "lost", "-n", "default")

    def test_5_operator_killed_mid_job_no_duplicates_or_losses(self):
        c = self.clusters
        cls = type(self)
        c.k("hub", "apply", "-f", "-", input=manifest("crash", gateway_a="NodePort"))
        # Kill it while it is creating children.
        wait_for("first child", lambda: c.services("member-a", "crash") or c.services("member-b", "crash"),
                 interval=0.02)
        cls.operator.stop(signal.SIGKILL)
        cls.operator = Operator(c, "op-1b")
        wait_for("new leader", lambda: cls.operator.metric("stella_operator_is_leader") == 1, timeout=40)
        self.wait_phase("crash", "Running")
        for m in ("member-a", "member-b"):
            names = [p["metadata"]["name"] for p in c.pods(m, "crash")]
            self.assertEqual(len(names), 2, names)
            self.assertEqual(len(c.services(m, "crash")), 2)
        uids = {p["metadata"]["labels"]["stella.dev/job-uid"] for m in ("member-a", "member-b")
                for p in c.pods(m, "crash")}
        self.assertEqual(len(uids), 1)
        c.k("hub", "delete", "stellajob", "crash", "-n", "default")

    def test_5b_orphans_swept_deadline_and_ttl(self):
        c = self.clusters
        # A child whose job no longer exists (e.g. its finalizer was removed by
        # hand while the member was down) is removed by the periodic sweep.
        orphan = {"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "orphan-gw", "namespace": "default", "labels": {
                      "app.kubernetes.io/managed-by": "stella-operator", "stella.dev/origin": "hub",
                      "stella.dev/job-name": "gone", "stella.dev/job-namespace": "default",
                      "stella.dev/job-uid": "00000000-dead-beef-0000-000000000000"}},
                  "spec": {"ports": [{"port": 29500}]}}
        c.k("member-b", "apply", "-f", "-", input=json.dumps(orphan))
        wait_for("orphan swept", lambda: c.get("member-b", "service", "orphan-gw", "-n", "default") is None,
                 timeout=30)
        # activeDeadlineSeconds: Failed with DeadlineExceeded, workers deleted.
        m = json.loads(manifest("deadline"))
        m["spec"]["runPolicy"]["activeDeadlineSeconds"] = 4
        m["spec"]["runPolicy"]["ttlSecondsAfterFinished"] = 3
        c.k("hub", "apply", "-f", "-", input=json.dumps(m))
        svc = wait_for("gateway service", lambda: [s for s in c.services("member-a", "deadline")
                                                    if s["metadata"]["name"].endswith("-gw")])
        c.set_lb_ingress("member-a", svc[0]["metadata"]["name"], "198.51.100.8")
        job = self.wait_phase("deadline", "Failed", timeout=30)
        self.assertEqual(condition(job, "Failed")["reason"], "DeadlineExceeded")
        # ttlSecondsAfterFinished: the finished job and all its children go.
        wait_for("job deleted by TTL", lambda: c.job("deadline") is None, timeout=30)
        wait_for("children gone", lambda: not any(c.pods(m, "deadline") or c.services(m, "deadline")
                                                  for m in ("member-a", "member-b")))

    def test_6_two_replicas_one_leader(self):
        c = self.clusters
        cls = type(self)
        standby = Operator(c, "op-2")
        try:
            wait_for("standby serving metrics", lambda: standby.metric("stella_operator_is_leader") is not None)
            time.sleep(3)  # several retry periods: the standby must not take the Lease
            self.assertEqual(standby.metric("stella_operator_is_leader"), 0)
            self.assertEqual(cls.operator.metric("stella_operator_is_leader"), 1)
            lease = c.get("hub", "lease", "stella-operator", "-n", "default")
            self.assertTrue(lease["spec"]["holderIdentity"].startswith("op-1"), lease["spec"])
            # A graceful stop releases the Lease: the standby takes over.
            self.assertEqual(cls.operator.stop(), 0)
            wait_for("standby leads", lambda: standby.metric("stella_operator_is_leader") == 1, timeout=30)
            lease = c.get("hub", "lease", "stella-operator", "-n", "default")
            self.assertEqual(lease["spec"]["holderIdentity"], "op-2")
        finally:
            cls.operator = standby


    def test_7_no_secrets_in_logs_or_metrics(self):
        """Least privilege: nothing the operator prints or serves carries a
        token or key material (the kubeconfigs' tokens, the TLS keys it made)."""
        c = self.clusters
        tokens = []
        for kc in c.kubeconfig.values():
            for line in open(kc):
                if line.strip().startswith("token:"):
                    tokens.append(line.split(":", 1)[1].strip())
        self.assertEqual(len(tokens), 3)
        texts = [open(os.path.join(c.dir, f), errors="replace").read()
                 for f in os.listdir(c.dir) if f.startswith("operator-") and f.endswith(".log")]
        texts.append(self.operator.metrics())
        self.assertGreater(sum(len(t) for t in texts), 1000)
        for t in texts:
            for tok in tokens:
                self.assertNotIn(tok, t)
            self.assertNotIn("PRIVATE KEY", t)
            self.assertNotIn("BEGIN CERTIFICATE", t)

if __name__ == "__main__":
    if not os.path.exists(OPERATOR):
        print("operator_e2e_test: %s not built" % OPERATOR)
        sys.exit(1)
    r = subprocess.run(["bash", os.path.join(SRC, "scripts", "testbin.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        print("=" * 70)
        print("SKIPPED: the Kubernetes test binaries could not be built:")
        print(r.stderr[-2000:])
        print("=" * 70)
        sys.exit(77)
    unittest.main(verbosity=2)
