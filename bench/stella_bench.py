#!/usr/bin/python3
"""stella bench: Stella side by side with real PyTorch DDP on shaped WAN links.

  stella bench [--quick] [--json FILE] [--plot FILE.png]
               [--scenario steady|fluctuating] [--bandwidths 10,100,1000]
               [--job MANIFEST] [--systems ideal,pytorch-ddp,stella-ddp,stella]
               [--shaper auto|kernel|inprocess] [--target-accuracy X]

(`stella bench` runs this script with /usr/bin/python3 and adds --stella-bin,
the folder holding the stella and stella-runtime binaries.)

Systems, all measured in the same run, two emulated clusters of one worker:
  ideal        each worker trains alone, no communication, concurrently
               (stella-runtime; samples/s summed). Bandwidth-independent, so
               measured once and used for every bandwidth.
  pytorch-ddp  real torch.nn.parallel.DistributedDataParallel (Gloo), the same
               model, data, batch size and optimizer (bench/pytorch_ddp.py)
  stella-ddp   stella-runtime, spec.sync.mode ddp (dense all-reduce)
  stella       stella-runtime, spec.sync.mode stella (compressed, pipelined,
               tuner on)
ideal-pytorch (the DDP script training alone) is measured too, so that the
compute speed of the two stacks can be compared apart from the network.

Link shaping. As root with working `ip netns`: two network namespaces joined
by a veth pair (198.18.0.1/24, 198.18.0.2/24), egress of both ends shaped by
`tc ... tbf` (the kernel's shaper); workers run inside the namespaces and the
manifests say wan.bandwidthMbps 0. Otherwise: Stella's in-process shaper
(`stella run`, wan.bandwidthMbps = rate) and, for DDP, a token-bucket comm
hook of the same rate. Latency is not emulated (netem is not available in
these kernels); latencyMs is 0 in every manifest. Namespaces and qdiscs are
always removed at the end (also on failure and Ctrl-C), and leftovers of a
crashed earlier run are removed at start.

Throughput excludes evaluation pauses: samples/s = samples / (wall time -
time rank 0 spent evaluating the test set); time-to-accuracy is measured on
the same training clock.
"""

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

SYSTEMS = ["ideal", "pytorch-ddp", "stella-ddp", "stella"]
# One colour per system in every plot panel.
COLORS = {"ideal": "#7f7f7f", "ideal-pytorch": "#bcbd22", "pytorch-ddp": "#d62728", "stella-ddp": "#1f77b4",
          "stella": "#2ca02c"}
DENSE_SYSTEMS = ("pytorch-ddp", "stella-ddp")
NS_PREFIX = "stb"  # namespaces stb<pid>-a/-b, veths stb<pid>a/b
ADDR_A, ADDR_B = "198.18.0.1", "198.18.0.2"
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_JOB = os.path.join(REPO, "examples", "demo.yaml")
# stella-runtime's answer while spec.sync.mode stella is not built in.
UNAVAILABLE_MARKER = "is not available in this build"


class Interrupted(Exception):
    """SIGTERM/SIGHUP arrived; unwinds to the cleanup like Ctrl-C."""


class BenchError(Exception):
    """A run could not be set up or a smoke check failed."""


# --------------------------------------------------------------------------
# Pure helpers (unit-tested in tests/bench/stella_bench_test.py)
# --------------------------------------------------------------------------

def parse_ip_link_stats(text):
    """Byte/packet counters from `ip -s link show dev X` output.

    Handles both iproute2 layouts ("RX: bytes packets errors ..." and
    "RX:  bytes packets errors dropped  missed   mcast"): the header line
    names the columns, the next line holds the numbers. Returns
    {"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"}.
    """
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        words = line.split()
        if not words or words[0] not in ("RX:", "TX:") or i + 1 >= len(lines):
            continue
        names = words[1:]
        if "bytes" not in names:
            continue
        values = lines[i + 1].split()
        if len(values) < len(names):
            raise ValueError("ip -s link: counter line %r does not match header %r" % (lines[i + 1], line))
        direction = words[0][:2].lower()
        for name, value in zip(names, values):
            if name in ("bytes", "packets"):
                out["%s_%s" % (direction, name)] = int(value)
    for key in ("rx_bytes", "tx_bytes"):
        if key not in out:
            raise ValueError("ip -s link: no %s counter in output:\n%s" % (key, text))
    return out


def tbf_burst_bytes(rate_mbit):
    """tbf bucket size: 10 ms worth of tokens, at least 32 KiB."""
    return int(max(32 * 1024, rate_mbit * 1e6 / 8 * 0.010))


def tbf_args(dev, rate_mbit, verb="replace"):
    return ["tc", "qdisc", verb, "dev", dev, "root", "tbf", "rate", "%gmbit" % rate_mbit,
            "burst", str(tbf_burst_bytes(rate_mbit)), "latency", "100ms"]


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the
    denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def link_utilization(wan_bytes, seconds, rate_mbit, directions=2):
    """Bytes on the link (both directions) over the shaped capacity of
    `directions` directions during `seconds`."""
    if wan_bytes is None or not seconds or not rate_mbit:
        return None
    return wan_bytes * 8 / (seconds * rate_mbit * 1e6 * directions)


def time_to_accuracy(points, target):
    """First training time at which test accuracy reached `target`, from
    [(train_seconds, accuracy), ...]; None if never."""
    for seconds, accuracy in points:
        if accuracy is not None and accuracy >= target:
            return seconds
    return None


def job_steps(spec, workers):
    """Steps the manifest asks for (steps, or epochs over 60,000 images)."""
    training = spec.get("training") or {}
    if int(training.get("steps", 0) or 0) > 0:
        return int(training["steps"])
    epochs = float(training.get("epochs", 0) or 0)
    return int(math.ceil(epochs * 60000 / (int(spec.get("batchSize", 64)) * workers)))


def make_manifest(base, name, mode, steps, eval_every, bandwidth_mbps, clusters=2):
    """A per-run StellaJob derived from the --job manifest: `clusters`
    clusters of one worker, a fixed step budget (targetAccuracy and epochs
    removed, so every system trains the same number of samples), the given
    sync mode, WAN bandwidth (0 = unshaped: the kernel shapes), no latency,
    metrics off."""
    m = json.loads(json.dumps(base))  # deep copy of plain YAML data
    m["metadata"] = {"name": name}
    spec = m["spec"]
    training = dict(spec.get("training") or {})
    training.pop("targetAccuracy", None)
    training.pop("epochs", None)
    training["steps"] = int(steps)
    training["evalEvery"] = int(eval_every)
    spec["training"] = training
    sync = dict(spec.get("sync") or {})
    sync["mode"] = mode
    spec["sync"] = sync
    old = spec.get("clusters") or []
    names = [c.get("name") for c in old if c.get("name")]
    defaults = ["onprem", "cloud", "edge", "lab"]
    spec["clusters"] = []
    for i in range(clusters):
        cname = names[i] if i < len(names) else defaults[i % len(defaults)] + ("" if i < 4 else str(i))
        spec["clusters"].append({"name": cname, "workers": 1,
                                 "wan": {"bandwidthMbps": bandwidth_mbps, "latencyMs": 0}})
    spec["metrics"] = {"port": 0}
    return m


def cap_steps(steps, compute_seconds_per_step, parameters, rate_mbit, max_seconds):
    """Step budget for a dense system at `rate_mbit`: the estimated step time
    is compute + one fp32 gradient over the link; if `steps` of them would
    take longer than max_seconds, fewer steps. Returns (steps, capped)."""
    if not max_seconds or not rate_mbit or parameters is None:
        return steps, False
    per_step = (compute_seconds_per_step or 0) + parameters * 4 * 8 / (rate_mbit * 1e6)
    if per_step <= 0 or steps * per_step <= max_seconds:
        return steps, False
    return max(10, int(max_seconds / per_step)), True


def summarize_runtime_events(events, batch_size, target):
    """Figures of one stella-runtime job from its "@stella" events (all ranks).

    Evaluation time is taken out of the clock: rank 0 emits "progress" just
    before evaluating at that step, so eval.elapsed - progress.elapsed at the
    same step is the evaluation's duration (or eval - previous eval of the
    same step); evaluations without such an anchor count the median of the
    others.
    """
    done = {e["global_rank"]: e for e in events if e.get("event") == "done"}
    if 0 not in done:
        raise BenchError("no \"done\" event from global rank 0")
    r0 = [e for e in events if e.get("global_rank") == 0]
    starts = [e for e in r0 if e.get("event") == "start"]
    world = int(starts[0]["world_size"]) if starts else len(done)
    if len(done) != world:
        raise BenchError("%d of %d workers reported \"done\"" % (len(done), world))
    # Walk rank 0's stream in order: an evaluation starts right after the
    # event before it if that one is at the same step (the progress event of
    # that step, or a previous evaluation of it, as in a final evaluation
    # after a pipeline drains).
    evals, durations, previous = [], [], None
    for e in r0:
        kind = e.get("event")
        if kind == "eval":
            evals.append(e)
            same_step = previous is not None and previous.get("step") == e["step"]
            durations.append(max(0.0, e["elapsed_seconds"] - previous["elapsed_seconds"]) if same_step else None)
        if kind in ("progress", "eval"):
            previous = e
    known = [d for d in durations if d is not None]
    fill = statistics.median(known) if known else 0.0
    durations = [fill if d is None else d for d in durations]
    points, eval_total = [], 0.0
    for e, d in zip(evals, durations):
        points.append([round(e["elapsed_seconds"] - d - eval_total, 4), e["test_accuracy"]])
        eval_total += d
    d0 = done[0]
    wall = float(d0["wall_seconds"])
    train = wall - eval_total
    if train <= 0:
        raise BenchError("evaluation time (%.2f s) is not less than the wall time (%.2f s)" % (eval_total, wall))
    samples = sum(int(d["samples"]) for d in done.values())
    densities = [e["density"] for e in r0 if e.get("event") == "progress" and "density" in e]
    return {
        "steps": int(d0["steps"]),
        "samples": samples,
        "world_size": world,
        "wall_seconds": wall,
        "train_seconds": train,
        "eval_seconds": eval_total,
        "samples_per_second": samples / train,
        "final_accuracy": d0.get("final_accuracy"),
        "accuracy_points": points,
        "time_to_accuracy_seconds": time_to_accuracy(points, target),
        "runtime_wan_bytes": sum(int(d.get("wan_bytes_sent", 0)) for d in done.values()),
        "parameters": starts[0].get("parameters") if starts else None,
        "last_density": densities[-1] if densities else None,
    }


def throughput_series(progress, global_batch, t0):
    """[(t, samples/s over the interval ending at t), ...] from
    [(arrival_time, step), ...] progress samples, t relative to t0."""
    out = []
    for (ta, sa), (tb, sb) in zip(progress, progress[1:]):
        if tb > ta and sb >= sa:
            out.append((round(tb - t0, 3), (sb - sa) * global_batch / (tb - ta)))
    return out


def phase_throughput(progress, global_batch, t0, phases):
    """Average samples/s per rate phase [(rate, seconds), ...] starting at t0,
    from [(arrival_time, step), ...] (step count interpolated at the phase
    boundaries)."""
    def steps_at(t):
        if not progress or t <= progress[0][0]:
            return progress[0][1] if progress else 0
        for (ta, sa), (tb, sb) in zip(progress, progress[1:]):
            if ta <= t <= tb:
                return sa + (sb - sa) * (t - ta) / (tb - ta) if tb > ta else sb
        return progress[-1][1]

    out, start = [], t0
    for rate, seconds in phases:
        end = start + seconds
        end_seen = min(end, progress[-1][0]) if progress else end
        span = end_seen - start
        sps = (steps_at(end_seen) - steps_at(start)) * global_batch / span if span > 0 else None
        out.append({"rate_mbps": rate, "seconds": seconds, "samples_per_second": sps})
        start = end
    return out


def parse_netns_list(text):
    """Namespace names from `ip netns list` ("name (id: N)" or "name")."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def stale_bench_names(names, alive):
    """Our names (stb<pid>-a/-b namespaces, stb<pid>a/b veths) whose <pid>
    is not a running process: leftovers of a crashed run."""
    out = []
    for n in names:
        m = re.fullmatch(NS_PREFIX + r"(\d+)-?[ab]", n)
        if m and not alive(int(m.group(1))):
            out.append(n)
    return out


def read_loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def cpu_model(cpuinfo_text):
    for line in cpuinfo_text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def fmt(v, spec):
    if v is None:
        return "-"
    if spec == "pct":
        return "%.1f%%" % (100 * v)
    if spec == "x":
        return "%.2fx" % v
    if spec == "bytes":
        for unit, div in (("MB", 1e6), ("kB", 1e3)):
            if v >= div:
                return "%.1f %s" % (v / div, unit)
        return "%d B" % v
    return spec % v


TABLE_COLUMNS = [
    ("link", "bandwidth_mbps", None),
    ("system", "system", None),
    ("steps", "steps", "%d"),
    ("samples/s", "samples_per_second", "%.0f"),
    ("efficiency", "efficiency", "pct"),
    ("vs DDP", "speedup_vs_pytorch_ddp", "x"),
    ("final acc", "final_accuracy", "pct"),
    ("t-to-acc", "time_to_accuracy_seconds", "%.1fs"),
    ("WAN/step", "wan_bytes_per_step", "bytes"),
    ("link util", "link_utilization", "pct"),
    ("note", "note", None),
]


def format_table(records):
    """Aligned text table, one row per record (numbers right-aligned)."""
    rows = [[c[0] for c in TABLE_COLUMNS]]
    for r in records:
        row = []
        for _, key, spec in TABLE_COLUMNS:
            v = r.get(key)
            if key == "bandwidth_mbps":
                row.append(r.get("link_label") or ("%g Mbit/s" % v if v is not None else "-"))
            elif spec is None:
                row.append("" if v is None else str(v))
            else:
                row.append(fmt(v, spec))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            numeric = TABLE_COLUMNS[i][2] is not None
            last = i == len(row) - 1
            cells.append(cell.rjust(widths[i]) if numeric and n > 0 else (cell if last else cell.ljust(widths[i])))
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def add_derived(records, ideal_sps):
    """Fills efficiency and speedup_vs_pytorch_ddp for every record."""
    ddp = {}
    for r in records:
        if r["system"] == "pytorch-ddp" and r.get("samples_per_second"):
            ddp[r.get("link_label") or r.get("bandwidth_mbps")] = r["samples_per_second"]
    for r in records:
        sps = r.get("samples_per_second")
        r["efficiency"] = ratio(sps, ideal_sps)
        r["speedup_vs_pytorch_ddp"] = ratio(sps, ddp.get(r.get("link_label") or r.get("bandwidth_mbps")))


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

def _die_with_parent():
    """Runs in the child before exec: SIGKILL it if the harness dies (even by
    SIGKILL), so no worker outlives a crashed bench. Survives exec."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    """A child process whose output lines are read by a thread, timestamped
    (time.monotonic) and copied to a log file."""

    def __init__(self, argv, log_path, env=None, registry=None):
        self.argv = argv
        self.name = os.path.basename(log_path)[:-len(".log")]
        self.log_path = log_path
        self.lines = []  # [(monotonic time, line)]
        self.lock = threading.Lock()
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      bufsize=1, env=env, stdin=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
        if registry is not None:
            registry.append(self)
        self.reader = threading.Thread(target=self._read, name="bench-reader", daemon=False)
        self.reader.start()

    def _read(self):
        with open(self.log_path, "w") as log:
            log.write("$ %s\n" % " ".join(shlex.quote(a) for a in self.argv))
            for line in self.popen.stdout:
                with self.lock:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                log.write(line)
                log.flush()

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def events(self, prefix):
        """JSON objects of lines that start with `prefix` ("@stella " or "{")."""
        out = []
        for t, line in self.snapshot():
            if line.startswith(prefix):
                text = line[len("@stella "):] if prefix == "@stella " else line
                try:
                    obj = json.loads(text)
                except ValueError:
                    continue
                obj["_t"] = t
                out.append(obj)
        return out

    def tail(self, n=15):
        return "\n".join(line for _, line in self.snapshot()[-n:])

    def stop(self, grace=3.0):
        if self.popen.poll() is None:
            try:
                self.popen.terminate()
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.reader.join(timeout=10)


def wait_all(procs, timeout):
    """Waits for every process; on timeout or a failure stops the rest.
    Returns None on success, else a message naming what went wrong."""
    deadline = time.monotonic() + timeout
    failure = None
    while True:
        codes = [p.popen.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        bad = [(p, c) for p, c in zip(procs, codes) if c not in (None, 0)]
        if bad:
            failure = "%s exited %d" % (bad[0][0].name, bad[0][1])
            time.sleep(2)  # let the peers notice and exit on their own
            break
        if time.monotonic() > deadline:
            failure = "timed out after %.0f s" % timeout
            break
        time.sleep(0.05)
    for p in procs:
        p.stop()
    for p in procs:
        rc = p.popen.returncode
        if failure is None and rc != 0:
            failure = "exit status %d" % rc
    return failure


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if check and r.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


# --------------------------------------------------------------------------
# Kernel link: two namespaces, one veth pair, tbf on both ends
# --------------------------------------------------------------------------

class KernelLink:
    """The emulated WAN between cluster a and cluster b (needs root)."""

    def __init__(self):
        pid = os.getpid()
        self.ns = {"a": "%s%d-a" % (NS_PREFIX, pid), "b": "%s%d-b" % (NS_PREFIX, pid)}
        self.dev = {"a": "%s%da" % (NS_PREFIX, pid), "b": "%s%db" % (NS_PREFIX, pid)}
        self.addr = {"a": ADDR_A, "b": ADDR_B}
        self.rate = None
        self.up = False

    @staticmethod
    def available():
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
            return False
        return sh(["ip", "netns", "list"], check=False).returncode == 0

    @staticmethod
    def clean_leftovers():
        """Removes namespaces/veths of earlier runs whose process is gone."""
        def alive(pid):
            try:
                os.kill(pid, 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        removed = []
        for ns in stale_bench_names(parse_netns_list(sh(["ip", "netns", "list"]).stdout), alive):
            sh(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
        links = [l.split(":")[1].strip().split("@")[0]
                 for l in sh(["ip", "-o", "link", "show"]).stdout.splitlines() if l.count(":") >= 2]
        for dev in stale_bench_names(links, alive):
            sh(["ip", "link", "del", dev], check=False)
            removed.append(dev)
        return removed

    def setup(self, rate_mbit):
        self.up = True  # from here on, teardown has something to undo
        for side in "ab":
            sh(["ip", "netns", "add", self.ns[side]])
        sh(["ip", "link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"]])
        for side in "ab":
            sh(["ip", "link", "set", self.dev[side], "netns", self.ns[side]])
            sh(["ip", "-n", self.ns[side], "addr", "add", self.addr[side] + "/24", "dev", self.dev[side]])
            sh(["ip", "-n", self.ns[side], "link", "set", self.dev[side], "up"])
            sh(["ip", "-n", self.ns[side], "link", "set", "lo", "up"])
        self.set_rate(rate_mbit, verb="replace")

    def set_rate(self, rate_mbit, verb="change"):
        for side in "ab":
            sh(["ip", "netns", "exec", self.ns[side]] + tbf_args(self.dev[side], rate_mbit, verb))
        self.rate = rate_mbit

    def counters(self):
        """Bytes sent + received by cluster a's end: all WAN traffic."""
        c = parse_ip_link_stats(sh(["ip", "-n", self.ns["a"], "-s", "link", "show", "dev", self.dev["a"]]).stdout)
        return c["tx_bytes"] + c["rx_bytes"]

    def qdisc(self):
        return sh(["ip", "netns", "exec", self.ns["a"], "tc", "qdisc", "show", "dev", self.dev["a"]]).stdout.strip()

    def wrap(self, side, argv):
        return ["ip", "netns", "exec", self.ns[side]] + argv

    def teardown(self):
        if not self.up:
            return
        for side in "ab":
            sh(["ip", "netns", "exec", self.ns[side], "tc", "qdisc", "del", "dev", self.dev[side], "root"],
               check=False)
            sh(["ip", "netns", "del", self.ns[side]], check=False)
        sh(["ip", "link", "del", self.dev["a"]], check=False)  # only if the move into a namespace failed
        self.up = False

    def remaining(self):
        names = parse_netns_list(sh(["ip", "netns", "list"]).stdout)
        return [n for n in names if n in self.ns.values()]


# --------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.stella_bin)
        self.runtime = os.path.join(self.bin, "stella-runtime")
        self.cli = os.path.join(self.bin, "stella")
        self.work = tempfile.mkdtemp(prefix="stella-bench-")
        self.procs = []
        self.link = None
        self.kernel = False
        self.port = 29600
        with open(args.job) as f:
            self.base = yaml.safe_load(f)
        self.batch = int(self.base["spec"].get("batchSize", 64))
        self.notes = []
        self.loadavg_at_start = read_loadavg()
        self.phase_seconds = 0.0

    def next_port(self):
        self.port += 2
        return self.port

    def log(self, msg):
        print(msg, flush=True)

    def write_manifest(self, manifest):
        path = os.path.join(self.work, manifest["metadata"]["name"] + ".yaml")
        with open(path, "w") as f:
            yaml.safe_dump(manifest, f, sort_keys=False)
        r = sh([self.cli, "validate", path], check=False)
        if r.returncode != 0:
            raise BenchError("generated manifest %s is invalid: %s" % (path, (r.stderr or r.stdout).strip()))
        return path

    def proc(self, argv, name, env=None):
        return Proc(argv, os.path.join(self.work, name + ".log"), env=env, registry=self.procs)

    def runtime_argv(self, job, cluster, wan, tls_dirs=None):
        return [self.runtime, "--job", job, "--cluster-index", str(cluster), "--local-rank", "0",
                "--store-host", "127.0.0.1", "--bind-host", "127.0.0.1", "--threads", "1"] + (
                    ["--wan-addresses", wan] if wan else []) + (
                    ["--tls-dir", tls_dirs[cluster]] if tls_dirs else [])

    def tls_dirs(self, job):
        """Per-cluster TLS directories of a fresh job CA (`stella tls`): the
        default WAN path, as `stella run` and the operator set it up. None
        with --no-tls."""
        if self.args.no_tls:
            return None
        out = os.path.join(self.work, os.path.basename(job) + ".tls")
        r = sh([self.cli, "tls", job, out], check=False)
        if r.returncode != 0:
            raise BenchError("stella tls %s failed: %s" % (job, (r.stderr or r.stdout).strip()))
        return r.stdout.split()

    def ddp_argv(self, job, steps, eval_every, rank, world, master, port, extra=()):
        return [PYTHON, os.path.join(HERE, "pytorch_ddp.py"), "--job", job, "--steps", str(steps),
                "--eval-every", str(eval_every), "--target-accuracy", str(self.target), "--rank", str(rank),
                "--world-size", str(world), "--master-addr", master, "--master-port", str(port)] + list(extra)

    # -- one run of each kind -------------------------------------------------

    def run_ideal(self, system, steps, eval_every):
        """Two workers alone, concurrently; samples/s summed."""
        name = "bench-%s" % system
        if system == "ideal":
            job = self.write_manifest(make_manifest(self.base, name, "ddp", steps, eval_every, 0, clusters=1))
            procs = [self.proc(self.runtime_argv(job, 0, None), "%s-%d" % (name, i)) for i in range(2)]
        else:
            job = self.write_manifest(make_manifest(self.base, name, "ddp", steps, eval_every, 0, clusters=1))
            procs = [self.proc(self.ddp_argv(job, steps, eval_every, i, 2, "127.0.0.1", 0, ["--ideal"]),
                               "%s-%d" % (name, i)) for i in range(2)]
        failure = wait_all(procs, timeout=steps * 0.5 + 120)
        if failure:
            raise BenchError("%s: %s\n%s" % (system, failure, procs[0].tail()))
        parts = []
        for p in procs:
            if system == "ideal":
                parts.append(summarize_runtime_events(p.events("@stella "), self.batch, self.target))
            else:
                s = [e for e in p.events("{") if e.get("event") == "summary"][0]
                parts.append(s)
        first = parts[0]
        return {"steps": first["steps"], "samples": sum(p["samples"] for p in parts),
                "samples_per_second": sum(p["samples_per_second"] for p in parts),
                "final_accuracy": first["final_accuracy"], "accuracy_points": first["accuracy_points"],
                "time_to_accuracy_seconds": first["time_to_accuracy_seconds"],
                "train_seconds": first["train_seconds"], "wan_bytes": 0,
                "parameters": first.get("parameters"),
                "note": "2 workers alone, no communication"}

    def run_stella(self, mode, rate, steps, eval_every, stop_at=None, timeout=600):
        name = "bench-stella-%s-%g" % (mode, rate)
        name = name.replace(".", "p")
        if self.kernel:
            job = self.write_manifest(make_manifest(self.base, name, mode, steps, eval_every, 0))
            port = self.next_port()
            wan = "%s:%d,%s:%d" % (ADDR_A, port, ADDR_B, port)
            tls = self.tls_dirs(job)
            procs = [self.proc(self.link.wrap(side, self.runtime_argv(job, i, wan, tls)), "%s-%s" % (name, side))
                     for i, side in enumerate("ab")]
        else:
            job = self.write_manifest(make_manifest(self.base, name, mode, steps, eval_every, rate))
            logs = os.path.join(self.work, name + "-logs")
            procs = [self.proc([self.cli, "run", job, "--log-dir", logs, "--timeout", str(timeout)] +
                               (["--no-tls"] if self.args.no_tls else []), name)]
        return procs, name

    def collect_stella(self, procs, name):
        if self.kernel:
            events = procs[0].events("@stella ") + procs[1].events("@stella ")
        else:
            events = []
            logs = os.path.join(self.work, name + "-logs")
            for fn in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, fn)) as f:
                    for line in f:
                        if line.startswith("@stella "):
                            try:
                                events.append(json.loads(line[len("@stella "):]))
                            except ValueError:
                                pass
        return events

    def run_ddp(self, rate, steps, eval_every, stop_check=False):
        name = ("bench-pytorch-ddp-%g" % rate).replace(".", "p")
        job = self.write_manifest(make_manifest(self.base, name, "ddp", steps, eval_every, 0))
        extra = ["--stop-check"] if stop_check else []
        if self.kernel:
            port = self.next_port()
            procs = []
            for rank, side in enumerate("ab"):
                env = dict(os.environ, GLOO_SOCKET_IFNAME=self.link.dev[side])
                procs.append(self.proc(self.link.wrap(side, self.ddp_argv(job, steps, eval_every, rank, 2, ADDR_A,
                                                                          port, extra)),
                                       "%s-%s" % (name, side), env=env))
        else:
            port = free_port()
            procs = [self.proc(self.ddp_argv(job, steps, eval_every, rank, 2, "127.0.0.1", port,
                                             extra + ["--emulate-mbps", str(rate)]), "%s-%d" % (name, rank))
                     for rank in range(2)]
        return procs, name

    def collect_ddp(self, procs):
        summaries = []
        for p in procs:
            s = [e for e in p.events("{") if e.get("event") == "summary"]
            if not s:
                raise BenchError("a DDP rank printed no summary:\n" + p.tail())
            summaries.append(s[-1])
        summaries.sort(key=lambda s: s["rank"])
        r0 = summaries[0]
        checks = {
            "ddp_ranks": len(summaries),
            "ddp_world_sizes": [s["world_size"] for s in summaries],
            "ddp_all_ranks_ddp": all(s["ddp"] for s in summaries),
            "ddp_same_steps": len({s["steps"] for s in summaries}) == 1,
            "ddp_replicas_identical": len({s["parameter_checksum"] for s in summaries}) == 1,
        }
        out = {"steps": r0["steps"], "samples": r0["samples"], "samples_per_second": r0["samples_per_second"],
               "final_accuracy": r0["final_accuracy"], "accuracy_points": r0["accuracy_points"],
               "time_to_accuracy_seconds": r0["time_to_accuracy_seconds"], "train_seconds": r0["train_seconds"],
               "wall_seconds": r0["wall_seconds"], "parameters": r0["parameters"]}
        out.update(checks)
        if not self.kernel:
            out["wan_bytes"] = sum(s.get("estimated_bytes_sent", 0) for s in summaries)
        return out

    # -- steady scenario ----------------------------------------------------------

    def measure(self, system, rate, steps, eval_every):
        """One (system, bandwidth) record."""
        rec = {"system": system, "bandwidth_mbps": rate, "shaper": self.shaper, "status": "ok",
               "budget_steps": steps}
        before = self.link.counters() if self.kernel else None
        timeout = steps * 2.0 + 180
        if system == "pytorch-ddp":
            procs, name = self.run_ddp(rate, steps, eval_every)
        else:
            procs, name = self.run_stella("ddp" if system == "stella-ddp" else "stella", rate, steps, eval_every,
                                          timeout=timeout)
        failure = wait_all(procs, timeout=timeout)
        after = self.link.counters() if self.kernel else None
        try:
            if failure:
                raise BenchError(failure)
            if system == "pytorch-ddp":
                rec.update(self.collect_ddp(procs))
            else:
                rec.update(summarize_runtime_events(self.collect_stella(procs, name), self.batch, self.target))
                rec["wan_bytes"] = rec["runtime_wan_bytes"]
        except BenchError as e:
            text = "\n".join(p.tail(40) for p in procs)
            logs = os.path.join(self.work, name + "-logs")
            if os.path.isdir(logs):
                for fn in os.listdir(logs):
                    with open(os.path.join(logs, fn)) as f:
                        text += "\n" + f.read()[-4000:]
            if system == "stella" and UNAVAILABLE_MARKER in text:
                rec["status"] = "unavailable"
                rec["note"] = "sync.mode stella not in this build of stella-runtime"
                rec["error"] = [l.strip() for l in text.splitlines() if UNAVAILABLE_MARKER in l][0]
            else:
                rec["status"] = "failed"
                rec["note"] = "failed: %s" % str(e).splitlines()[0]
                rec["error"] = "%s\n%s" % (e, text[-3000:])
            return rec
        if self.kernel:
            rec["wan_bytes"] = after - before  # the kernel's count, headers included
        rec["wan_bytes_per_step"] = ratio(rec.get("wan_bytes"), rec["steps"])
        rec["link_utilization"] = link_utilization(rec.get("wan_bytes"), rec.get("train_seconds"), rate)
        if rec["steps"] < steps:
            rec["note"] = "capped"
        return rec

    def steady(self):
        a = self.args
        ideal_steps = self.steps
        records = []
        ideal = None
        if "ideal" in self.systems or any(s in self.systems for s in DENSE_SYSTEMS):
            self.log("ideal: 2 stella-runtime workers alone, %d steps each" % ideal_steps)
            ideal = self.run_ideal("ideal", ideal_steps, self.eval_every)
            self.log("  %.0f samples/s" % ideal["samples_per_second"])
            self.log("ideal-pytorch: 2 PyTorch workers alone, %d steps each" % ideal_steps)
            ideal_pt = self.run_ideal("ideal-pytorch", ideal_steps, self.eval_every)
            self.log("  %.0f samples/s" % ideal_pt["samples_per_second"])
        compute_per_step = ideal["train_seconds"] / ideal["steps"] if ideal else None
        parameters = ideal.get("parameters") if ideal else None
        for rate in self.bandwidths:
            if self.kernel:
                self.link.set_rate(rate)
            for system in self.systems:
                if system == "ideal":
                    for which, res in (("ideal", ideal), ("ideal-pytorch", ideal_pt)):
                        rec = dict(res, system=which, bandwidth_mbps=rate, shaper=self.shaper, status="ok",
                                   budget_steps=ideal_steps, measured_once=True)
                        rec["wan_bytes_per_step"] = 0
                        records.append(rec)
                    continue
                steps, capped = self.steps, False
                if system in DENSE_SYSTEMS:
                    steps, capped = cap_steps(self.steps, compute_per_step, parameters, rate, self.max_seconds)
                eval_every = min(self.eval_every, steps)
                self.log("%s at %g Mbit/s: %d steps%s" % (system, rate, steps,
                                                          " (capped from %d)" % self.steps if capped else ""))
                rec = self.measure(system, rate, steps, eval_every)
                if capped and rec["status"] == "ok":
                    rec["note"] = "capped at %d of %d steps" % (steps, self.steps)
                    rec["capped"] = True
                records.append(rec)
                if rec["status"] == "ok":
                    self.log("  %.0f samples/s, final accuracy %s, WAN %s/step" % (
                        rec["samples_per_second"], fmt(rec["final_accuracy"], "pct"),
                        fmt(rec.get("wan_bytes_per_step"), "bytes")))
                else:
                    self.log("  %s: %s" % (rec["status"], rec.get("note")))
        add_derived(records, ideal["samples_per_second"] if ideal else None)
        return records

    # -- fluctuating scenario -----------------------------------------------------

    def fluctuating(self):
        if not self.kernel:
            raise BenchError("--scenario fluctuating needs the kernel shaper (root and ip netns): the in-process "
                             "shaper's rate is fixed for a run")
        phase = self.phase_seconds = self.args.phase_seconds or (10.0 if self.args.quick else 30.0)
        phases = [(100.0, phase), (10.0, phase), (50.0, phase)]
        records = []
        ideal_steps = min(self.steps, 300)  # throughput only; no need for the full budget
        ideal = self.run_ideal("ideal", ideal_steps, ideal_steps)
        self.log("ideal: %.0f samples/s" % ideal["samples_per_second"])
        label = "->".join("%g" % r for r, _ in phases)
        for system in [s for s in self.systems if s != "ideal"]:
            self.link.set_rate(phases[0][0])
            self.log("%s: %s Mbit/s, %g s each" % (system, label, phase))
            before = self.link.counters()
            big = 1000000
            if system == "pytorch-ddp":
                procs, name = self.run_ddp(phases[0][0], big, big, stop_check=True)
                start_prefix = "{"
            else:
                procs, name = self.run_stella("ddp" if system == "stella-ddp" else "stella", phases[0][0], big, big)
                start_prefix = "@stella "
            rec = {"system": system, "bandwidth_mbps": None, "link_label": label + " Mbit/s",
                   "shaper": self.shaper, "scenario": "fluctuating", "status": "ok"}
            t0 = None
            deadline = time.monotonic() + 180
            while t0 is None and time.monotonic() < deadline and all(p.popen.poll() is None for p in procs):
                starts = [e for e in procs[0].events(start_prefix) if e.get("event") == "start"]
                if starts:
                    t0 = starts[0]["_t"]
                time.sleep(0.05)
            schedule = []
            if t0 is not None:
                schedule.append((0.0, phases[0][0]))
                elapsed = 0.0
                for rate, seconds in phases[1:] + [(None, phases[-1][1])]:
                    elapsed += seconds if rate is not None else phases[-1][1]
                    while time.monotonic() < t0 + elapsed and all(p.popen.poll() is None for p in procs):
                        time.sleep(0.05)
                    if rate is None:
                        break
                    self.link.set_rate(rate)
                    schedule.append((round(time.monotonic() - t0, 3), rate))
                for p in procs:
                    if p.popen.poll() is None:
                        p.popen.send_signal(signal.SIGTERM)
            failure = wait_all(procs, timeout=120) if t0 is not None else "never started"
            after = self.link.counters()
            try:
                if failure:
                    raise BenchError(failure)
                if system == "pytorch-ddp":
                    rec.update(self.collect_ddp(procs))
                    prog = [(e["_t"], e["step"]) for e in procs[0].events("{") if e.get("event") == "progress"]
                    dens = []
                else:
                    events = procs[0].events("@stella ")
                    rec.update(summarize_runtime_events(events + procs[1].events("@stella "), self.batch,
                                                        self.target))
                    prog = [(e["_t"], e["step"]) for e in events if e.get("event") == "progress"]
                    dens = [(round(e["_t"] - t0, 3), e["density"]) for e in events
                            if e.get("event") == "progress" and "density" in e]
            except BenchError as e:
                text = "\n".join(p.tail(40) for p in procs)
                rec["status"] = "unavailable" if UNAVAILABLE_MARKER in text else "failed"
                rec["note"] = ("sync.mode stella not in this build of stella-runtime" if rec["status"] ==
                               "unavailable" else "failed: %s" % e)
                rec["error"] = text[-3000:]
                records.append(rec)
                self.log("  %s" % rec["note"])
                continue
            gb = self.batch * rec["world_size"] if "world_size" in rec else self.batch * 2
            rec["wan_bytes"] = after - before
            rec["wan_bytes_per_step"] = ratio(rec["wan_bytes"], rec["steps"])
            rec["throughput_series"] = throughput_series(prog, gb, t0)
            rec["density_series"] = dens
            rec["rate_schedule"] = schedule
            rec["phases"] = phase_throughput(prog, gb, t0, phases)
            rec["time_to_accuracy_seconds"] = None  # only a final evaluation in this scenario
            # Over the whole run (startup excluded, evaluation excluded).
            rec["link_utilization"] = link_utilization(rec["wan_bytes"], rec.get("train_seconds"),
                                                       sum(r * s for r, s in phases) / sum(s for _, s in phases))
            rec["note"] = "per phase: " + ", ".join("%g:%s" % (p["rate_mbps"], fmt(p["samples_per_second"], "%.0f"))
                                                    for p in rec["phases"])
            records.append(rec)
            self.log("  " + rec["note"])
        records.insert(0, dict(ideal, system="ideal", bandwidth_mbps=None, link_label=label + " Mbit/s",
                               shaper=self.shaper, status="ok", wan_bytes_per_step=0))
        add_derived(records, ideal["samples_per_second"])
        return records

    # -- output -------------------------------------------------------------------

    def header(self):
        def git(*a):
            r = subprocess.run(["git", "-C", REPO] + list(a), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
            return r.stdout.strip() if r.returncode == 0 else None
        try:
            with open("/proc/cpuinfo") as f:
                model = cpu_model(f.read())
        except OSError:
            model = "unknown"
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        torch_version = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return {
            "command": "stella bench " + " ".join(shlex.quote(a) for a in self.args.passthrough),
            "git_commit": commit, "git_dirty": dirty,
            "machine": {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
                        "python": platform.python_version(), "torch": torch_version,
                        # Shared machines: other work skews absolute figures; ratios hold better.
                        "loadavg_at_start": self.loadavg_at_start, "loadavg_at_end": read_loadavg()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "scenario": self.args.scenario, "wan_tls": not self.args.no_tls, "shaper": self.shaper, "shaper_detail": self.shaper_detail,
            "bandwidths_mbps": self.bandwidths, "systems": self.systems, "budget_steps": self.steps,
            "eval_every": self.eval_every, "target_accuracy": self.target, "batch_size_per_worker": self.batch,
            "job": os.path.abspath(self.args.job), "clusters": 2, "workers_per_cluster": 1,
            "latency": "not emulated (netem unavailable); latencyMs 0 everywhere",
            "throughput_clock": "samples / (wall - rank 0 evaluation time)",
            "notes": self.notes,
        }

    def plot(self, path, records):
        gnuplot = shutil.which("gnuplot")
        if not gnuplot:
            self.log("plot: gnuplot not found (Debian package gnuplot-nox); no plot written")
            return False
        terms = subprocess.run([gnuplot, "-e", "set terminal"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True).stdout
        term = "pngcairo size %d,%d font ',10'" if "pngcairo" in terms else "png size %d,%d"
        ok = [r for r in records if r.get("status") == "ok"]
        systems = [s for s in SYSTEMS + ["ideal-pytorch"] if any(r["system"] == s for r in ok)]
        script = []
        if self.args.scenario == "fluctuating":
            script.append("set terminal " + term % (1000, 700))
            script.append("set output '%s'" % path)
            script.append("set multiplot layout 2,1")
            blocks = []
            for i, r in enumerate(x for x in ok if x.get("throughput_series")):
                script.append("$t%d << EOD" % i)
                script += ["%g %g" % p for p in r["throughput_series"]]
                script.append("EOD")
                blocks.append("$t%d using 1:2 with fsteps lw 2 lc rgb '%s' title '%s'" % (i, COLORS[r["system"]],
                                                                                        r["system"]))
            sched = ok[1]["rate_schedule"] if len(ok) > 1 else []
            script.append("$rate << EOD")
            for (t, rate), nxt in zip(sched, sched[1:] + [(None, None)]):
                script.append("%g %g" % (t, rate))
                script.append("%g %g" % (nxt[0] if nxt[0] is not None else t + self.phase_seconds, rate))
            script.append("EOD")
            script += ["set title 'throughput (samples/s per progress interval) under a changing link'",
                       "set xlabel 'seconds since start'", "set ylabel 'samples/s'", "set y2label 'link Mbit/s'",
                       "set y2tics", "set y2range [0:*]", "set yrange [0:*]", "set key outside right",
                       "set grid"]
            script.append("plot " + ", ".join(blocks + ["$rate using 1:2 axes x1y2 with lines dt 2 lc 'black' "
                                                        "title 'link rate'"]))
            dens = [r for r in ok if r.get("density_series")]
            script += ["unset y2tics", "unset y2label", "set title 'tuner density (Stella)'",
                       "set ylabel 'density'", "set logscale y", "set yrange [*:*]"]
            if dens:
                parts = []
                for i, r in enumerate(dens):
                    script.append("$d%d << EOD" % i)
                    script += ["%g %g" % p for p in r["density_series"]]
                    script.append("EOD")
                    parts.append("$d%d using 1:2 with steps lw 2 lc rgb '%s' title '%s'" % (i, COLORS[r["system"]],
                                                                                      r["system"]))
                script.append("plot " + ", ".join(parts))
            else:
                script += ["unset logscale y", "set label 1 'no density reported by the runtime' at graph 0.3,0.5",
                           "plot [0:1][0:1] NaN notitle"]
            script.append("unset multiplot")
        else:
            rates = self.bandwidths
            script.append("set terminal " + term % (420 * len(rates) + 120, 420))
            script.append("set output '%s'" % path)
            script.append("set multiplot layout 1,%d title 'test accuracy vs training time (%s shaper)'" % (
                len(rates), self.shaper))
            script += ["set xlabel 'training seconds'", "set ylabel 'test accuracy'", "set grid",
                       "set key bottom right", "set yrange [0.5:1]"]
            n = 0
            for rate in rates:
                parts = []
                for s in systems:
                    r = [x for x in ok if x["system"] == s and x["bandwidth_mbps"] == rate]
                    if not r or not r[0].get("accuracy_points"):
                        continue
                    script.append("$a%d << EOD" % n)
                    script += ["%g %g" % (t, a) for t, a in r[0]["accuracy_points"]]
                    script.append("EOD")
                    parts.append("$a%d using 1:2 with linespoints lw 2 lc rgb '%s' title '%s'" % (n, COLORS[s], s))
                    n += 1
                script.append("set title '%g Mbit/s'" % rate)
                script.append("plot " + (", ".join(parts) if parts else "NaN notitle"))
            script.append("unset multiplot")
        r = subprocess.run([gnuplot], input="\n".join(script) + "\n", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise BenchError("gnuplot failed: %s" % r.stdout.strip())
        self.log("plot written to %s" % path)
        return True

    # -- main ---------------------------------------------------------------------

    def configure(self):
        a = self.args
        want = a.shaper
        if want in ("auto", "kernel") and KernelLink.available():
            self.kernel = True
        elif want == "kernel":
            raise BenchError("--shaper kernel needs root and a working `ip netns` (and tc)")
        self.shaper = "kernel-tbf" if self.kernel else "in-process"
        self.shaper_detail = (
            "two network namespaces joined by a veth pair, tc tbf on both ends (burst max(32 KiB, 10 ms of rate), "
            "latency 100ms queue bound); WAN bytes from the veth counters (headers included)"
            if self.kernel else
            "not root or no ip netns: Stella's in-process token-bucket shaper (stella run, wan.bandwidthMbps) and a "
            "token-bucket DDP comm hook on loopback; WAN bytes as reported by the runtimes (DDP: ring all-reduce "
            "volume estimate)")
        if a.smoke:
            self.bandwidths = [100.0]
            self.steps, self.eval_every, self.max_seconds = a.steps or 30, 30, 0
            self.target = a.target_accuracy or 0.5
        elif a.quick:
            self.bandwidths = a.bandwidths
            self.steps, self.eval_every, self.max_seconds = a.steps or 300, 50, 75
            self.target = a.target_accuracy or 0.80
        else:
            self.bandwidths = a.bandwidths
            spec = self.base["spec"]
            self.steps = a.steps or job_steps(spec, 2)
            self.eval_every = int((spec.get("training") or {}).get("evalEvery", 100))
            self.max_seconds = 300
            self.target = a.target_accuracy or float((spec.get("training") or {}).get("targetAccuracy", 0) or 0) or 0.85
        self.systems = a.systems
        if a.scenario == "fluctuating":
            self.notes.append("fluctuating: the kernel tbf rate is changed with `tc qdisc change` on both ends; "
                              "each system runs for the whole schedule and is stopped with SIGTERM (all ranks "
                              "stop at the same step)")
        self.notes.append("ideal is bandwidth-independent: measured once (2 concurrent stella-runtime workers "
                          "training alone) and repeated in every bandwidth's rows; ideal-pytorch likewise with "
                          "the DDP script's model")
        for p in (self.runtime, self.cli):
            if not os.access(p, os.X_OK):
                raise BenchError("%s is missing: build the stella and stella-runtime targets "
                                 "(or pass --stella-bin DIR)" % p)

    def run(self):
        self.configure()
        self.log("stella bench: %s scenario, %s shaper, systems %s, %d steps per system (batch %d per worker, "
                 "2 clusters x 1 worker)" % (self.args.scenario, self.shaper, ",".join(self.systems), self.steps,
                                              self.batch))
        if self.kernel:
            removed = KernelLink.clean_leftovers()
            if removed:
                self.log("removed leftovers of an earlier run: %s" % ", ".join(removed))
            self.link = KernelLink()
            self.link.setup(self.bandwidths[0] if self.bandwidths else 100.0)
            self.log("link: %s <-> %s, %s" % (self.link.ns["a"], self.link.ns["b"], self.link.qdisc()))
        else:
            self.log("link: in-process shaper (not root or ip netns unavailable)")
        records = self.steady() if self.args.scenario == "steady" else self.fluctuating()
        return records

    def cleanup(self):
        for p in self.procs:
            try:
                p.stop()
            except Exception as e:  # keep cleaning up
                print("stella bench: stopping %s: %s" % (p.argv[0], e), file=sys.stderr)
        if self.link is not None:
            self.link.teardown()
        if self.args.keep_logs:
            print("manifests and worker logs kept in %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def smoke_checks(bench, records, json_path):
    """--smoke: what the ctest asserts. Returns a list of failures."""
    problems = []
    by_system = {r["system"]: r for r in records}
    for s in SYSTEMS:
        r = by_system.get(s)
        if r is None:
            problems.append("no record for system %s" % s)
        elif r["status"] == "unavailable" and s == "stella":
            print("smoke: stella mode not in this build of stella-runtime (%s); accepted" % r.get("error"))
        elif r["status"] != "ok":
            problems.append("%s: %s %s" % (s, r["status"], r.get("error", "")[:2000]))
        elif not r.get("samples_per_second") or r.get("final_accuracy") is None:
            problems.append("%s: no throughput or accuracy: %r" % (s, r))
    ddp = by_system.get("pytorch-ddp")
    if ddp and ddp["status"] == "ok":
        if ddp.get("ddp_ranks") != 2 or ddp.get("ddp_world_sizes") != [2, 2] or not ddp.get("ddp_all_ranks_ddp"):
            problems.append("pytorch-ddp did not run DDP on 2 ranks: %r" % {k: v for k, v in ddp.items()
                                                                            if k.startswith("ddp")})
        if not ddp.get("ddp_replicas_identical"):
            problems.append("pytorch-ddp: the two replicas ended with different parameters")
        gradient_bytes = (ddp.get("parameters") or 0) * 4
        if not ddp.get("wan_bytes_per_step") or ddp["wan_bytes_per_step"] < gradient_bytes:
            problems.append("pytorch-ddp: %s WAN bytes/step, expected at least one gradient (%d bytes)" % (
                ddp.get("wan_bytes_per_step"), gradient_bytes))
    sddp = by_system.get("stella-ddp")
    if ddp and sddp and ddp["status"] == "ok" and sddp["status"] == "ok" and ddp.get("parameters") != sddp.get(
            "parameters"):
        problems.append("pytorch-ddp trains %s parameters, stella-ddp %s: not the same model" % (
            ddp.get("parameters"), sddp.get("parameters")))
    if sddp and sddp["status"] == "ok" and (sddp.get("wan_bytes_per_step") or 0) < (sddp.get("parameters") or 0) * 4:
        problems.append("stella-ddp: %s WAN bytes/step, expected at least one gradient" % sddp.get("wan_bytes_per_step"))
    if bench.kernel:
        left = [n for n in parse_netns_list(sh(["ip", "netns", "list"]).stdout)
                if n in (bench.link.ns.values() if bench.link else [])]
        if left:
            problems.append("namespaces left behind: %s" % left)
    try:
        with open(json_path) as f:
            doc = json.load(f)
        for key in ("system", "bandwidth_mbps", "samples_per_second", "final_accuracy", "time_to_accuracy_seconds",
                    "wan_bytes_per_step", "efficiency", "speedup_vs_pytorch_ddp", "shaper", "steps"):
            if any(key not in r for r in doc["records"] if r["status"] == "ok"):
                problems.append("JSON records lack %s" % key)
        for key in ("command", "git_commit", "machine"):
            if key not in doc["header"]:
                problems.append("JSON header lacks %s" % key)
    except (OSError, ValueError, KeyError) as e:
        problems.append("JSON output %s does not parse: %s" % (json_path, e))
    return problems


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="stella bench",
        description="Stella vs real PyTorch DDP on kernel-shaped (tc tbf) WAN links: ideal, pytorch-ddp, stella-ddp, "
                    "stella; samples/s, efficiency, speedup, accuracy, time-to-accuracy, WAN bytes/step.")
    p.add_argument("--quick", action="store_true", help="small budgets: the whole run in < 10 min on 2 cores")
    p.add_argument("--json", metavar="FILE", help="write a header and one record per (system, bandwidth)")
    p.add_argument("--plot", metavar="FILE.png", help="gnuplot PNG: accuracy vs time (steady) or throughput and "
                                                      "density vs time (fluctuating)")
    p.add_argument("--scenario", choices=["steady", "fluctuating"], default="steady",
                   help="steady: one fixed rate per run; fluctuating: 100 -> 10 -> 50 Mbit/s (kernel shaper only)")
    p.add_argument("--bandwidths", default="10,100,1000", help="Mbit/s, comma separated (default 10,100,1000)")
    p.add_argument("--job", default=DEFAULT_JOB, help="base StellaJob manifest (default examples/demo.yaml)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="subset of " + ",".join(SYSTEMS))
    p.add_argument("--shaper", choices=["auto", "kernel", "inprocess"], default="auto",
                   help="auto: kernel when root with ip netns, else in-process")
    p.add_argument("--steps", type=int, default=0, help="sample budget in steps per system (default: by mode)")
    p.add_argument("--target-accuracy", type=float, default=0.0,
                   help="for time-to-accuracy (default 0.80 with --quick, else the manifest's or 0.85)")
    p.add_argument("--phase-seconds", type=float, default=0.0, help="fluctuating: seconds per rate (30; --quick 10)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain TCP between Stella's gateways (default: mutual TLS, the path users get)")
    p.add_argument("--keep-logs", action="store_true", help="keep the work folder (manifests, worker logs)")
    p.add_argument("--smoke", action="store_true", help="tiny run of all systems that asserts its own results")
    p.add_argument("--stella-bin", default=os.path.join(REPO, "build", "bin"),
                   help="folder with the stella and stella-runtime binaries (set by `stella bench`)")
    args = p.parse_args(argv)
    args.passthrough = [a for i, a in enumerate(argv)
                        if not a.startswith("--stella-bin") and (i == 0 or argv[i - 1] != "--stella-bin")]
    try:
        args.bandwidths = [float(x) for x in args.bandwidths.split(",") if x.strip()]
    except ValueError:
        p.error("--bandwidths: expected comma-separated numbers (Mbit/s), got %r" % args.bandwidths)
    if not args.bandwidths or any(b <= 0 for b in args.bandwidths):
        p.error("--bandwidths: every rate must be > 0 Mbit/s")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error("--systems: unknown %s (known: %s)" % (",".join(unknown), ",".join(SYSTEMS)))
    args.systems = [s for s in SYSTEMS if s in args.systems]
    if args.smoke:
        args.systems = list(SYSTEMS)
        args.scenario = "steady"
    return args


def main(argv):
    args = parse_args(argv)
    if args.smoke and not args.json:
        args.json = os.path.join(tempfile.gettempdir(), "stella-bench-smoke-%d.json" % os.getpid())

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bench = None
    rc = 0
    records = None
    try:
        bench = Bench(args)
        records = bench.run()
    except (KeyboardInterrupt, Interrupted) as e:
        print("\nstella bench: interrupted (%s); cleaning up" % (str(e) or "Ctrl-C"), file=sys.stderr)
        rc = 130
    except BenchError as e:
        print("stella bench: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        if bench is not None:
            bench.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    if records is None:
        return rc or 1
    header = bench.header()
    m = header["machine"]
    budget = ("%d steps/system, target accuracy %.2f" % (bench.steps, bench.target) if args.scenario == "steady"
              else "%g s per rate, stopped by SIGTERM" % bench.phase_seconds)
    print("\nstella bench (%s shaper, %s scenario, %s)" % (bench.shaper, args.scenario, budget))
    print("commit %s%s; %d cores, %s; load average %s at start, %s at end" % (
        (header["git_commit"] or "unknown")[:12], " (dirty)" if header["git_dirty"] else "", m["nproc"],
        m["cpu_model"], m["loadavg_at_start"], m["loadavg_at_end"]))
    print(format_table(records), end="")
    for r in records:
        if r.get("status") == "failed":
            print("\n%s at %s failed:\n%s" % (r["system"], r.get("bandwidth_mbps"), r.get("error", "")[-1500:]))
    if args.json:
        doc = {"header": header, "records": records}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, args.json)
        print("results written to %s" % args.json)
    if args.plot:
        try:
            bench.plot(args.plot, records)
        except BenchError as e:
            print("stella bench: %s" % e, file=sys.stderr)
            rc = 1
    if args.smoke:
        problems = smoke_checks(bench, records, args.json)
        for p in problems:
            print("smoke FAILED: %s" % p, file=sys.stderr)
        if problems:
            return 1
        print("smoke: ok")
    if any(r.get("status") == "failed" for r in records):
        rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
