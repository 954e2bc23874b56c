#!/usr/bin/python3
"""End-to-end test of a cut WAN link, as root, with network namespaces.

Two clusters (one worker each, so each process is its cluster's gateway) run
in two network namespaces joined by a veth pair. At step --cut-at-step,
cluster a's end of the link is taken down (`ip link set DEV down`) for
--cut-seconds (30), then brought up again. Once the clusters are back in step
(stella: the first resync round; ddp: the link re-established) and
--after-steps more steps ran, cluster a's process gets SIGTERM: a stop vote
that rides on the rounds, so both clusters stop at the same step K. (So the
run's length adapts to the machine's speed: a fixed step count would end
during the cut on a fast machine or take minutes on a slow one.) Then the
same job runs uncut for exactly K steps on the host's loopback as the
reference. The test asserts:

  * the cut job finishes (every process exits 0, both clusters at the same
    step), with finite losses, final accuracy and parameters (no NaN);
  * its final accuracy is within --tolerance of the uncut reference's;
  * both gateways report degraded steps > 0 (the "done" event, and
    stella_wan_degraded_steps_total / stella_wan_link_up on /metrics during
    the cut) and "wan_link" events: down during the cut, up after it;
  * stella mode: the clusters resynchronize after the link returns
    ("wan_resync" events) and end with bit-identical parameters;
    ddp mode: the clusters survive (they keep the offset from the cut).

It prints the measured recovery: seconds from the link coming back to the
link being re-established, and (stella) to the first resync round; --json
writes them. Exit 0 on success, 1 on a failed check, 77 (ctest: skipped)
when not root or network namespaces are unavailable.

  link_cut_test.py --bin BUILD/bin [--mode stella|ddp] [--cut-seconds 30]
                   [--cut-at-step 100] [--after-steps 200] [--json FILE]
"""

import argparse
import array
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
ADDR = {"a": "198.18.0.1", "b": "198.18.0.2"}
WAN_PORT = 29700
LINK_TIMEOUT_MS = 3000
METRICS_PORT = 29750


class CheckFailed(Exception):
    pass


def sh(argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if check and r.returncode != 0:
        raise CheckFailed("%s failed (%d): %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


def skip(reason):
    banner = "=" * 72
    print("%s\nSKIPPED link_cut_test: %s\n%s" % (banner, reason, banner), flush=True)
    sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Namespaces:
    """Two namespaces lc<pid>-a/-b joined by the veth pair lc<pid>a/b."""

    def __init__(self):
        pid = os.getpid()
        self.ns = {s: "lc%d-%s" % (pid, s) for s in "ab"}
        self.dev = {s: "lc%d%s" % (pid, s) for s in "ab"}
        self.made = False

    @staticmethod
    def clean_leftovers():
        """Deletes lc<pid>-a/-b namespaces of earlier runs whose process is gone (killed with SIGKILL)."""
        for line in sh(["ip", "netns", "list"]).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if not (name.startswith("lc") and name[-2:] in ("-a", "-b") and name[2:-2].isdigit()):
                continue
            try:
                os.kill(int(name[2:-2]), 0)
            except ProcessLookupError:
                sh(["ip", "netns", "del", name], check=False)  # its veth pair goes with it
            except PermissionError:
                pass

    def setup(self):
        self.clean_leftovers()
        self.made = True
        for s in "ab":
            sh(["ip", "netns", "add", self.ns[s]])
        sh(["ip", "link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"]])
        for s in "ab":
            sh(["ip", "link", "set", self.dev[s], "netns", self.ns[s]])
            sh(["ip", "-n", self.ns[s], "addr", "add", ADDR[s] + "/24", "dev", self.dev[s]])
            sh(["ip", "-n", self.ns[s], "link", "set", self.dev[s], "up"])
            sh(["ip", "-n", self.ns[s], "link", "set", "lo", "up"])

    def link(self, up):
        sh(["ip", "-n", self.ns["a"], "link", "set", self.dev["a"], "up" if up else "down"])

    def wrap(self, side, argv):
        return ["ip", "netns", "exec", self.ns[side]] + argv

    def teardown(self):
        if not self.made:
            return
        for s in "ab":
            sh(["ip", "netns", "del", self.ns[s]], check=False)
        sh(["ip", "link", "del", self.dev["a"]], check=False)
        self.made = False


class Proc:
    """A child process whose output lines are kept with their arrival time."""

    def __init__(self, name, argv, log_dir):
        self.name = name
        self.lines = []  # (monotonic seconds, line)
        self.log = open(os.path.join(log_dir, name + ".log"), "w")
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                      stdin=subprocess.DEVNULL)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self.log.write(line)
            self.log.flush()

    def events(self, kind=None):
        out = []
        for t, line in list(self.lines):
            if line.startswith("@stella "):
                try:
                    e = json.loads(line[len("@stella "):])
                except ValueError:
                    continue
                if kind is None or e.get("event") == kind:
                    e["_t"] = t
                    out.append(e)
        return out

    def tail(self, n=25):
        return "\n".join(line for _, line in self.lines[-n:])

    def wait(self, timeout):
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            rc = None
        self.reader.join(timeout=10)
        return rc

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def job_yaml(name, mode, steps, tuner):
    return """apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: %s
spec:
  model: {name: mlp, hidden: 128}
  dataset: {name: fashion-mnist, path: /usr/share/datasets/fashion-mnist}
  optimizer: {name: adam, learningRate: 0.002}
  batchSize: 64
  training: {steps: %d, evalEvery: %d, seed: 1}
  sync: {mode: %s, density: 0.05, staleness: 1, compressor: cacheline, tuner: %s}
  clusters:
    - {name: a, workers: 1, wan: {bandwidthMbps: 0, latencyMs: 0}}
    - {name: b, workers: 1, wan: {bandwidthMbps: 0, latencyMs: 0}}
""" % (name, steps, steps, mode, "true" if tuner else "false")


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def finite_floats(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a, all(math.isfinite(x) for x in a)


def scrape(ns, side):
    code = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:%d/metrics',timeout=5).read().decode())"
    r = sh(ns.wrap(side, ["/usr/bin/python3", "-c", code % METRICS_PORT]), check=False)
    return r.stdout if r.returncode == 0 else ""


def metric(text, name, **labels):
    """The value of the first sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all('%s="%s"' % (k, v) in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_until(what, done, procs, limit):
    """Polls done() every 0.1 s; fails if a process exits meanwhile or after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = done()
        if value:
            return value
        for p in procs:
            check(p.popen.poll() is None, "%s exited while waiting for %s:\n%s" % (p.name, what, p.tail()))
        check(time.monotonic() < deadline, "no %s within %d s" % (what, limit))
        time.sleep(0.1)


def rank0_step(proc):
    return ([e.get("step", 0) for e in proc.events("progress")] or [0])[-1]


def run(args, work):
    runtime = os.path.join(os.path.abspath(args.bin), "stella-runtime")
    check(os.access(runtime, os.X_OK), "no stella-runtime at %s" % runtime)
    job = os.path.join(work, "job.yaml")
    with open(job, "w") as f:
        f.write(job_yaml("link-cut-" + args.mode, args.mode, args.max_steps, args.tuner))
    ns = Namespaces()
    procs = []
    try:
        ns.setup()
        base = ["--local-rank", "0", "--threads", "1"]
        wan = "%s:%d,%s:%d" % (ADDR["a"], WAN_PORT, ADDR["b"], WAN_PORT)
        cut = {}
        for i, side in enumerate("ab"):
            argv = [runtime, "--job", job] + base + [
                "--cluster-index", str(i), "--store-host", "127.0.0.1", "--store-port", str(29710 + i),
                "--bind-host", "127.0.0.1", "--wan-addresses", wan, "--wan-link-timeout-ms", str(LINK_TIMEOUT_MS),
                "--metrics-port", str(METRICS_PORT), "--dump-parameters", os.path.join(work, "cut-%s.bin" % side)]
            cut[side] = Proc("cut-" + side, ns.wrap(side, argv), work)
            procs.append(cut[side])

        # Cut once training is well under way.
        step_at_cut = wait_until("step %d" % args.cut_at_step,
                                 lambda: rank0_step(cut["a"]) >= args.cut_at_step and rank0_step(cut["a"]),
                                 procs, 180)
        ns.link(False)
        t_down = time.monotonic()
        print("link down at step %d" % step_at_cut, flush=True)

        # While cut: the metrics endpoint shows the link down and the
        # degraded steps counting.
        seen_on_metrics = False
        while time.monotonic() < t_down + args.cut_seconds:
            if not seen_on_metrics and time.monotonic() > t_down + LINK_TIMEOUT_MS / 1000.0 + 1:
                text = scrape(ns, "a")
                up = metric(text, "stella_wan_link_up", peer="b")
                degraded = metric(text, "stella_wan_degraded_steps_total")
                if up == 0 and degraded is not None and degraded > 0:
                    seen_on_metrics = True
                    print("metrics during the cut: stella_wan_link_up{peer=b} 0, "
                          "stella_wan_degraded_steps_total %g" % degraded, flush=True)
            time.sleep(0.5)
        # Where each cluster is when the link returns (they trained apart, at
        # their own speed: the one behind catches up before they re-join).
        steps_at_up = {side: metric(scrape(ns, side), "stella_steps_total") for side in "ab"}
        ns.link(True)
        t_up = time.monotonic()
        step_at_up = rank0_step(cut["a"])
        print("link up at step %d, %.1f s after the cut" % (step_at_up, t_up - t_down), flush=True)
        check(seen_on_metrics, "the cut never showed on cluster a's /metrics (stella_wan_link_up{peer=\"b\"} 0 "
                               "and stella_wan_degraded_steps_total > 0)")

        # Back in step: stella resyncs; ddp only reconnects.
        def back_in_step():
            if args.mode == "stella":
                return [e["step"] for e in cut["a"].events("wan_resync") if e["_t"] >= t_up]
            ups = [e for side in "ab" for e in cut[side].events("wan_link") if e["state"] == "up" and e["_t"] >= t_up]
            return len({e["cluster"] for e in ups}) == 2 and [rank0_step(cut["a"])]
        joined_at = min(wait_until("rejoin after the link came back", back_in_step, procs, 180))
        stop_at = joined_at + args.after_steps
        wait_until("step %d" % stop_at, lambda: rank0_step(cut["a"]) >= stop_at, procs, 300)
        cut["a"].popen.send_signal(signal.SIGTERM)  # a stop vote: both clusters stop at the same step
        for p in procs:
            rc = p.wait(timeout=120)
            check(rc == 0, "%s exited with %s:\n%s" % (p.name, rc, p.tail()))
        check(cut["a"].events("done") and cut["b"].events("done"), "a cut-run process sent no done event")
        steps = cut["a"].events("done")[-1]["steps"]
        check(cut["b"].events("done")[-1]["steps"] == steps,
              "the clusters stopped at different steps: %d and %d" % (steps, cut["b"].events("done")[-1]["steps"]))
        print("cut run stopped at step %d; reference run (uncut) for as many steps" % steps, flush=True)

        ref_job = os.path.join(work, "ref.yaml")
        with open(ref_job, "w") as f:
            f.write(job_yaml("link-cut-ref-" + args.mode, args.mode, steps, args.tuner))
        ref_ports = "%d,%d" % (free_port(), free_port())
        ref = {}
        for i, side in enumerate("ab"):
            argv = [runtime, "--job", ref_job] + base + [
                "--cluster-index", str(i), "--store-port", str(free_port()), "--wan-ports", ref_ports,
                "--dump-parameters", os.path.join(work, "ref-%s.bin" % side)]
            ref[side] = Proc("ref-" + side, argv, work)
            procs.append(ref[side])
        for side in "ab":
            rc = ref[side].wait(timeout=300)
            check(rc == 0, "%s exited with %s:\n%s" % (ref[side].name, rc, ref[side].tail()))

        done = {k: p.events("done")[-1] for k, p in
                [("cut-a", cut["a"]), ("cut-b", cut["b"]), ("ref-a", ref["a"])] if p.events("done")}
        check(len(done) == 3, "missing done events: have %s" % sorted(done))
        check(done["ref-a"]["steps"] == steps, "reference ran %d steps, not %d" % (done["ref-a"]["steps"], steps))
        acc_cut, acc_ref = done["cut-a"]["final_accuracy"], done["ref-a"]["final_accuracy"]
        check(math.isfinite(acc_cut) and acc_cut > 0, "cut run final accuracy %r" % acc_cut)
        check(abs(acc_cut - acc_ref) <= args.tolerance,
              "final accuracy %.4f after the cut vs %.4f uncut: more than %.3f apart" % (acc_cut, acc_ref,
                                                                                        args.tolerance))
        for p in (cut["a"], ref["a"]):
            losses = [e.get("loss") for e in p.events("progress")]
            check(losses and all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses),
                  "%s reported a non-finite loss" % p.name)
        for side in "ab":
            check(done["cut-" + side]["wan_degraded_steps"] > 0,
                  "cluster %s reports no degraded steps" % side)
            states = [(e["state"], e["_t"]) for e in cut[side].events("wan_link")]
            check(any(s == "down" and t_down <= t for s, t in states),
                  "cluster %s reported no link down: %s" % (side, states))
            check(any(s == "up" and t >= t_up for s, t in states),
                  "cluster %s reported no link up after the cut: %s" % (side, states))
        params = {}
        for name in ("cut-a", "cut-b", "ref-a", "ref-b"):
            params[name], ok = finite_floats(os.path.join(work, name + ".bin"))
            check(ok, "%s: non-finite parameters" % name)
        check(params["ref-a"] == params["ref-b"], "uncut reference: clusters differ")

        reconnect = min(t for e in (cut["a"].events("wan_link") + cut["b"].events("wan_link"))
                        for t in [e["_t"]] if e["state"] == "up" and t >= t_up) - t_up
        result = {
            "mode": args.mode, "tuner": args.tuner, "steps": steps, "cut_seconds": round(t_up - t_down, 1),
            "step_at_cut": step_at_cut, "step_at_restore": step_at_up,
            "steps_at_restore_by_cluster": steps_at_up,
            "degraded_steps": {s: done["cut-" + s]["wan_degraded_steps"] for s in "ab"},
            "final_accuracy": acc_cut, "final_accuracy_uncut": acc_ref,
            "reconnect_seconds_after_restore": round(reconnect, 2),
        }
        if args.mode == "stella":
            resyncs = [e["_t"] for e in cut["a"].events("wan_resync") + cut["b"].events("wan_resync")
                       if e["_t"] >= t_up]
            check(resyncs, "no resync round after the link came back")
            result["resync_seconds_after_restore"] = round(min(resyncs) - t_up, 2)
            result["resync_step"] = min(e["step"] for e in cut["a"].events("wan_resync") if e["_t"] >= t_up)
            t_reconnect = t_up + reconnect
            result["step_at_reconnect"] = max([e.get("step", 0) for e in cut["a"].events("progress")
                                               if e["_t"] <= t_reconnect] or [0])
            result["resyncs"] = {s: done["cut-" + s]["wan_resyncs"] for s in "ab"}
            check(params["cut-a"] == params["cut-b"],
                  "after the resync the clusters' final parameters differ (max |a-b| %.3g)" %
                  max(abs(x - y) for x, y in zip(params["cut-a"], params["cut-b"])))
            result["final_parameters_identical"] = True
        else:
            diff = max(abs(x - y) for x, y in zip(params["cut-a"], params["cut-b"]))
            result["final_parameters_max_abs_difference"] = diff
        print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2, sort_keys=True)
    finally:
        for p in procs:
            p.kill()
        ns.teardown()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="directory holding stella-runtime")
    ap.add_argument("--mode", choices=["stella", "ddp"], default="stella")
    ap.add_argument("--cut-seconds", type=float, default=30.0)
    ap.add_argument("--cut-at-step", type=int, default=100)
    ap.add_argument("--after-steps", type=int, default=200,
                    help="steps to train after the clusters are back in step, before stopping")
    ap.add_argument("--tuner", action="store_true",
                    help="stella mode: run the tuner (it rebalances batch sizes, so the clusters drift further "
                         "apart in steps while cut and the one behind takes longer to catch up)")
    ap.add_argument("--max-steps", type=int, default=100000, help="the cut job's step bound (it is stopped earlier)")
    ap.add_argument("--tolerance", type=float, default=0.03, help="allowed final accuracy difference")
    ap.add_argument("--json", help="write the measured figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, dumps)")
    args = ap.parse_args(argv)
    if args.cut_seconds <= 0 or args.after_steps < 1 or args.max_steps <= args.cut_at_step:
        ap.error("--cut-seconds and --after-steps must be > 0, --max-steps > --cut-at-step")

    if os.geteuid() != 0:
        skip("needs root (it creates network namespaces and takes a link down)")
    if not shutil.which("ip"):
        skip("no `ip` command (iproute2)")
    probe = "lcprobe%d" % os.getpid()
    if sh(["ip", "netns", "add", probe], check=False).returncode != 0:
        skip("`ip netns add` does not work here")
    sh(["ip", "netns", "del", probe], check=False)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    work = tempfile.mkdtemp(prefix="stella-link-cut-")
    try:
        run(args, work)
    except CheckFailed as e:
        print("FAILED: %s\n(logs in %s)" % (e, work), flush=True)
        return 1
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("work directory: " + work)
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
