#!/usr/bin/python3
"""Render the main Grafana dashboard panels of a live job into one PNG.

  scripts/render-dashboards.py [--build DIR] [--out FILE.png] [--seconds S]
                               [--bandwidth MBPS] [--prometheus PATH] [--keep]

Starts a real `stella run` of a small two-cluster `stella`-mode job (the
demo CNN, one worker per cluster, tuner on, metrics on, emulated WAN of
--bandwidth Mbit/s and 5 ms per gateway, as examples/wan10-stella.yaml), a real Prometheus (--prometheus, default /usr/bin/prometheus)
scraping both workers every second, lets the job train for --seconds
(default 75), then asks Prometheus for each panel's range data
(/api/v1/query_range) with the panel's own PromQL, read from dashboards/*.json
with the dashboard variables bound to this job, stops the job (Ctrl-C) and
draws the panels with gnuplot (pngcairo, else png) into --out (default
docs/img/dashboards.png, written atomically). The throughput panel also gets
sum(rate(stella_samples_total[1m])) as a dashed reference line.

Documentation, not a test: what it draws depends on the machine's load.
Exit status: 0 done, 1 the job, Prometheus or gnuplot failed (their logs are
printed), 2 bad arguments or a missing program.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = "dashboards-render"
STEP_S = 2  # query_range resolution

# (dashboard file, panel title, extra drawing options). The order is the
# order of the picture, row by row, four per row.
PANELS = [
    ("stella-job.json", "Throughput (samples/s, job-wide)", {"with_counted": True}),
    ("stella-job.json", "Step rate per worker", {"ylabel": "steps/s"}),
    ("stella-job.json", "Step time breakdown (last step, mean over selected workers)", {"title": "Step time by phase (last step, mean of workers)"}),
    ("stella-job.json", "Step time (p50 / p90)", {}),
    ("stella-job.json", "Compute busy (GPU utilization) per worker", {"title": "Compute busy per worker (GPU utilization proxy)"}),
    ("stella-job.json", "Test accuracy", {}),
    ("stella-job.json", "Loss", {}),
    ("stella-wan.json", "Pipeline steps in flight", {}),
    ("stella-wan.json", "Goodput per link (Mbit/s)", {"title": "WAN goodput and sent rate vs capacity (Mbit/s)", "with_sent": True}),
    ("stella-wan.json", "WAN bytes per step (per gateway)", {}),
    ("stella-wan.json", "Tuner density", {}),
    ("stella-wan.json", "Tuner batch sizes", {}),
]
SENT_PANEL = ("stella-wan.json", "Sent per link (Mbit/s, 1m average)")
# Not a dashboard query: the samples the workers counted, drawn beside the
# throughput gauge for comparison (docs/dashboards.md says why they differ).
COUNTED = 'sum(rate(stella_samples_total{stella_job="$job"}[1m]))'


def fail(message, code=1):
    print(f"render-dashboards: {message}", file=sys.stderr)
    sys.exit(code)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def prom_get(port, path, params):
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.load(r)


def bind(expr, values):
    for name, value in values.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def legend(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out.replace('"', "'")


def find_panel(dashboards, file, title):
    for p in dashboards[file]["panels"]:
        if p.get("title") == title:
            return p
    fail(f"dashboards/{file} has no panel titled {title!r}; update PANELS in this script", 2)


# Units of the dashboards -> (scale, axis label) for a readable picture.
def unit_scale(unit, peak):
    if unit == "percentunit":
        return 100.0, "%"
    if unit == "s":
        return (1000.0, "ms") if peak < 1 else (1.0, "s")
    if unit == "bytes":
        return (1 / 1024, "KiB") if peak < 1024 * 1024 else (1 / 1024 / 1024, "MiB")
    if unit == "Mbits":
        return 1.0, "Mbit/s"
    return 1.0, ""


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"), help="build directory holding bin/stella")
    ap.add_argument("--out", default=os.path.join(SOURCE, "docs", "img", "dashboards.png"))
    ap.add_argument("--seconds", type=int, default=75, help="training time recorded (30..600)")
    ap.add_argument("--bandwidth", type=float, default=10.0, help="emulated WAN egress per gateway, Mbit/s (> 0)")
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, TSDB, data files)")
    args = ap.parse_args()
    if not 30 <= args.seconds <= 600:
        fail(f"--seconds must be in 30..600, got {args.seconds}", 2)
    if not args.bandwidth > 0:
        fail(f"--bandwidth must be > 0 Mbit/s, got {args.bandwidth}", 2)
    if not args.out.endswith(".png"):
        fail(f"--out must name a .png file, got {args.out!r}", 2)
    stella = os.path.join(args.build, "bin", "stella")
    for prog in (stella, os.path.join(args.build, "bin", "stella-runtime"), args.prometheus):
        if not os.access(prog, os.X_OK):
            fail(f"{prog} is not an executable file (build the stella and stella-runtime targets, "
                 "or pass --build / --prometheus)", 2)
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        fail("gnuplot is not installed (apt-get install gnuplot-nox)", 2)
    terminals = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True)
    terminal = "pngcairo" if "pngcairo" in terminals.stdout + terminals.stderr else "png"

    dashboards = {}
    for f in {p[0] for p in PANELS}:
        with open(os.path.join(SOURCE, "dashboards", f)) as fh:
            dashboards[f] = json.load(fh)

    work = tempfile.mkdtemp(prefix="stella-render-")
    procs = []
    try:
        # Two consecutive free metrics ports (worker g serves port + g).
        for _ in range(50):
            metrics_base = free_port()
            if metrics_base < 65535 and port_free(metrics_base + 1):
                break
        else:
            fail("found no two consecutive free loopback ports for the workers' metrics")
        job = os.path.join(work, "job.yaml")
        with open(job, "w") as f:
            f.write(f"""apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: {JOB}
spec:
  model: {{name: cnn}}
  dataset: {{name: fashion-mnist}}
  optimizer: {{name: adam, learningRate: 0.002}}
  batchSize: 64
  training: {{steps: 100000000, evalEvery: 200}}
  sync: {{mode: stella, density: 0.01, minDensity: 0.001, maxDensity: 0.1, staleness: 1, tuner: true}}
  clusters:
    - name: east
      wan: {{bandwidthMbps: {args.bandwidth:g}, latencyMs: 5}}
    - name: west
      wan: {{bandwidthMbps: {args.bandwidth:g}, latencyMs: 5}}
  metrics: {{port: {metrics_base}}}
""")
        prom_port = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: stella\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_base}', "
                    f"'127.0.0.1:{metrics_base + 1}']\n")
        plog_path = os.path.join(work, "prometheus.log")
        procs.append(subprocess.Popen([args.prometheus, f"--config.file={work}/prometheus.yml",
                                       f"--storage.tsdb.path={work}/tsdb",
                                       f"--web.listen-address=127.0.0.1:{prom_port}"],
                                      stdout=open(plog_path, "w"), stderr=subprocess.STDOUT))
        out_path = os.path.join(work, "stella.out")
        t_start = time.time()
        run = subprocess.Popen([stella, "run", job, "--log-dir", os.path.join(work, "logs")],
                               stdout=open(out_path, "w"), stderr=subprocess.STDOUT)
        procs.append(run)
        print(f"render-dashboards: job {JOB} started (logs in {work}); waiting for both workers' metrics")

        deadline = time.time() + 120
        while True:
            time.sleep(1)
            if run.poll() is not None:
                fail(f"stella run exited with status {run.returncode} before the recording ended:\n"
                     + tail(out_path))
            if procs[0].poll() is not None:
                fail(f"prometheus exited with status {procs[0].returncode}:\n" + tail(plog_path))
            try:
                res = prom_get(prom_port, "/api/v1/query", {"query": f'stella_steps_total{{stella_job="{JOB}"}} > 0'})
                if len(res["data"]["result"]) == 2:
                    break
            except (OSError, KeyError, ValueError):
                pass
            if time.time() > deadline:
                fail("the workers' metrics did not reach Prometheus within 120 s:\n" + tail(out_path)
                     + tail(plog_path))
        t0 = time.time()
        print(f"render-dashboards: both workers are training; recording {args.seconds} s")
        while time.time() < t0 + args.seconds:
            time.sleep(1)
            if run.poll() is not None:
                fail(f"stella run exited with status {run.returncode} during the recording:\n" + tail(out_path))
        t1 = time.time()

        values = {"job": JOB, "cluster": ".*", "worker": ".*", "datasource": "prometheus"}
        sent_expr = bind(find_panel(dashboards, *SENT_PANEL)["targets"][0]["expr"], values)
        panels = []  # (title, unit, [(legend, [(t, v)])], options)
        for file, title, opt in PANELS:
            panel = find_panel(dashboards, file, title)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            targets = [(t.get("legendFormat", ""), bind(t["expr"], values)) for t in panel["targets"]]
            if opt.get("with_sent"):
                targets.append(("{{cluster}} -> {{peer}} sent (1m avg)", sent_expr))
            if opt.get("with_counted"):
                targets.append(("samples counted, rate 1m (reference)", bind(COUNTED, values)))
            series = []
            for fmt, expr in targets:
                res = prom_get(prom_port, "/api/v1/query_range",
                               {"query": expr, "start": f"{t0:.3f}", "end": f"{t1:.3f}", "step": STEP_S})
                if res.get("status") != "success":
                    fail(f"panel {title!r}: query {expr} failed: {res}")
                for r in sorted(res["data"]["result"], key=lambda r: sorted(r["metric"].items())):
                    pts = [(float(ts) - t0, float(v)) for ts, v in r["values"] if math.isfinite(float(v))]
                    if pts:
                        series.append((legend(fmt, r["metric"]), pts))
            if not series:
                fail(f"panel {title!r} has no data for {[e for _, e in targets]}")
            panels.append((opt.get("title", title), unit, series, opt))
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        summary = [line.strip() for line in open(out_path) if line.startswith("eval step")]
        print("render-dashboards: job stopped; last evaluation: " + (summary[-1] if summary else "none"))

        # gnuplot: one data file per series, one multiplot.
        commit = subprocess.run(["git", "-C", SOURCE, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        cols, rows = 4, (len(panels) + 3) // 4
        tmp_png = os.path.join(work, "out.png")
        g = [f'set terminal {terminal} size 1800,{390 * rows + 40} font "DejaVu Sans,10"' +
             (" linewidth 1.5" if terminal == "pngcairo" else ""),
             f'set output "{tmp_png}"',
             f'set multiplot layout {rows},{cols} title "Stella dashboards rendered from a live job (commit {commit}): '
             f'2 clusters x 1 worker, stella mode with the tuner, CNN on Fashion-MNIST\\n{args.bandwidth:g} Mbit/s + '
             f'5 ms emulated WAN per gateway; x axis: seconds since both workers were training" '
             f'font "DejaVu Sans,13"',
             "set grid", "set key top left font ',9' samplen 2",
             "set xrange [0:%d]" % args.seconds, "set format y '%g'", "set tmargin 3"]
        for i, (title, unit, series, opt) in enumerate(panels):
            peak = max(v for _, pts in series for _, v in pts)
            scale, ylabel = unit_scale(unit, peak)
            if opt.get("ylabel"):
                ylabel = opt["ylabel"]
            g.append(f'set title "{title}"')
            g.append(f'set ylabel "{ylabel}"')
            g.append("set yrange [0:*]")
            # Head room above the data for the legend, one line per series.
            entries = len(series) + (1 if opt.get("with_sent") else 0)
            g.append(f"set offsets 0, 0, graph {0.06 + 0.075 * entries:.2f}, 0")
            plots = []
            for j, (name, pts) in enumerate(series):
                path = os.path.join(work, f"p{i}_{j}.dat")
                with open(path, "w") as f:
                    for t, v in pts:
                        f.write(f"{t:.1f} {v * scale:.6g}\n")
                dash = " dt 2" if "sent" in name or "reference" in name else ""
                plots.append(f'"{path}" using 1:2 with lines lw 2{dash} title "{name}"')
            if opt.get("with_sent"):
                plots.append(f"{args.bandwidth:g} with lines lw 2 lc rgb 'black' dt 3 title 'capacity (bandwidthMbps)'")
            g.append("plot " + ", ".join(plots))
        g.append("unset multiplot")
        script = os.path.join(work, "dashboards.gp")
        with open(script, "w") as f:
            f.write("\n".join(g) + "\n")
        gp = subprocess.run([gnuplot, script], capture_output=True, text=True)
        if gp.returncode != 0 or not os.path.exists(tmp_png):
            fail(f"gnuplot failed (status {gp.returncode}):\n{gp.stderr[-3000:]}")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        partial = args.out + ".tmp"
        shutil.copyfile(tmp_png, partial)
        os.replace(partial, args.out)
        print(f"render-dashboards: wrote {args.out} ({os.path.getsize(args.out) // 1024} KiB, {len(panels)} panels, "
              f"{terminal} terminal, {t1 - t_start:.0f} s after the job started)")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p is procs[-1] else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if args.keep:
            print(f"render-dashboards: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
