"""Unit tests of the pure helpers of bench/stella_bench.py (no processes, no
namespaces): `ip -s link` parsing, the derived figures, manifest generation,
event summaries, phase averaging and the table."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

import stella_bench as sb  # noqa: E402

# iproute2 6.x layout.
IP_LINK_NEW = """\
6: stb1a@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc tbf state UP mode DEFAULT group default qlen 1000
    link/ether 6e:71:4f:44:30:48 brd ff:ff:ff:ff:ff:ff link-netns stb1-b
    RX:  bytes packets errors dropped  missed   mcast
      11927904    8110      0       0       0       0
    TX:  bytes packets errors dropped carrier collsns
      12116352    8304      0       3       0       0
"""

# iproute2 5.x layout, with -s -s extra error lines.
IP_LINK_OLD = """\
4: veth0@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000
    link/ether 0a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff link-netnsid 0
    RX: bytes  packets  errors  dropped overrun mcast
    4242       17       0       0       0       0
    RX errors: length   crc     frame   fifo    missed
               0        0       0       0       0
    TX: bytes  packets  errors  dropped carrier collsns
    99         2        0       0       0       0
    TX errors: aborted  fifo   window heartbeat transns
               0        0       0       0       2
"""

BASE = {
    "apiVersion": "stella.dev/v1alpha1",
    "kind": "StellaJob",
    "metadata": {"name": "fashion-cnn-demo"},
    "spec": {
        "model": {"name": "cnn"},
        "dataset": {"name": "fashion-mnist", "path": "/usr/share/datasets/fashion-mnist"},
        "optimizer": {"name": "adam", "learningRate": 0.002},
        "batchSize": 64,
        "training": {"epochs": 2, "targetAccuracy": 0.86, "evalEvery": 100, "seed": 1},
        "sync": {"mode": "ddp", "density": 0.02},
        "clusters": [
            {"name": "onprem", "workers": 3, "wan": {"bandwidthMbps": 100, "latencyMs": 5}},
            {"name": "cloud", "workers": 1, "wan": {"bandwidthMbps": 100, "latencyMs": 5}},
        ],
        "metrics": {"port": 9400},
    },
}


class IpLinkTest(unittest.TestCase):
    def test_new_layout(self):
        c = sb.parse_ip_link_stats(IP_LINK_NEW)
        self.assertEqual(c, {"rx_bytes": 11927904, "rx_packets": 8110, "tx_bytes": 12116352, "tx_packets": 8304})

    def test_old_layout_ignores_error_detail_lines(self):
        c = sb.parse_ip_link_stats(IP_LINK_OLD)
        self.assertEqual((c["rx_bytes"], c["tx_bytes"], c["rx_packets"], c["tx_packets"]), (4242, 99, 17, 2))

    def test_missing_counters_is_an_error(self):
        with self.assertRaises(ValueError):
            sb.parse_ip_link_stats("6: x: <UP> mtu 1500\n    link/ether 00:00:00:00:00:00\n")

    def test_truncated_counter_line_is_an_error(self):
        with self.assertRaises(ValueError):
            sb.parse_ip_link_stats("    RX:  bytes packets errors\n      12\n")


class MathTest(unittest.TestCase):
    def test_ratio(self):
        self.assertAlmostEqual(sb.ratio(900.0, 1000.0), 0.9)
        self.assertIsNone(sb.ratio(None, 1000.0))
        self.assertIsNone(sb.ratio(5.0, None))
        self.assertIsNone(sb.ratio(5.0, 0.0))

    def test_efficiency_and_speedup(self):
        records = [
            {"system": "ideal", "bandwidth_mbps": 10, "samples_per_second": 16000.0},
            {"system": "pytorch-ddp", "bandwidth_mbps": 10, "samples_per_second": 800.0},
            {"system": "stella", "bandwidth_mbps": 10, "samples_per_second": 14400.0},
            {"system": "pytorch-ddp", "bandwidth_mbps": 100, "samples_per_second": 6400.0},
            {"system": "stella", "bandwidth_mbps": 100, "samples_per_second": 15200.0},
            {"system": "stella", "bandwidth_mbps": 1000, "samples_per_second": None},  # failed run
        ]
        sb.add_derived(records, 16000.0)
        self.assertAlmostEqual(records[2]["efficiency"], 0.9)
        self.assertAlmostEqual(records[2]["speedup_vs_pytorch_ddp"], 18.0)  # same bandwidth's DDP only
        self.assertAlmostEqual(records[4]["speedup_vs_pytorch_ddp"], 15200 / 6400)
        self.assertAlmostEqual(records[1]["speedup_vs_pytorch_ddp"], 1.0)
        self.assertIsNone(records[5]["efficiency"])
        self.assertIsNone(records[5]["speedup_vs_pytorch_ddp"])

    def test_link_utilization(self):
        # 2.5 MB both ways in 1 s on a 10 Mbit/s link each way: 100%.
        self.assertAlmostEqual(sb.link_utilization(2.5e6, 1.0, 10), 1.0)
        self.assertAlmostEqual(sb.link_utilization(1.25e6, 2.0, 10), 0.25)
        self.assertIsNone(sb.link_utilization(None, 1.0, 10))

    def test_tbf_burst(self):
        self.assertEqual(sb.tbf_burst_bytes(10), 32 * 1024)  # 12.5 kB of tokens: floor applies
        self.assertEqual(sb.tbf_burst_bytes(1000), 1250000)  # 10 ms at 1 Gbit/s
        args = sb.tbf_args("veth0", 100)
        self.assertEqual(args[:7], ["tc", "qdisc", "replace", "dev", "veth0", "root", "tbf"])
        self.assertIn("100mbit", args)
        self.assertEqual(args[args.index("burst") + 1], "125000")
        self.assertEqual(sb.tbf_args("v", 10, "change")[2], "change")

    def test_time_to_accuracy(self):
        points = [[1.0, 0.70], [2.0, 0.79], [3.0, 0.81], [4.0, 0.85]]
        self.assertEqual(sb.time_to_accuracy(points, 0.80), 3.0)
        self.assertEqual(sb.time_to_accuracy(points, 0.70), 1.0)
        self.assertIsNone(sb.time_to_accuracy(points, 0.90))

    def test_cap_steps(self):
        # 50k params = 200 kB of gradient; at 10 Mbit/s 0.16 s + 0.01 s compute per step.
        self.assertEqual(sb.cap_steps(300, 0.01, 50000, 10, 100), (300, False))  # 51 s fits
        steps, capped = sb.cap_steps(1000, 0.01, 50000, 10, 100)
        self.assertTrue(capped)
        self.assertEqual(steps, int(100 / 0.17))
        self.assertEqual(sb.cap_steps(1000, 0.01, 50000, 10, 0), (1000, False))  # no cap asked

    def test_job_steps(self):
        self.assertEqual(sb.job_steps(BASE["spec"], 2), 938)  # 2 epochs, 128 samples per step
        self.assertEqual(sb.job_steps({"training": {"steps": 77}}, 2), 77)


class ManifestTest(unittest.TestCase):
    def test_fixed_budget_two_single_worker_clusters(self):
        m = sb.make_manifest(BASE, "bench-stella-10", "stella", 300, 50, 0)
        spec = m["spec"]
        self.assertEqual(m["metadata"], {"name": "bench-stella-10"})
        self.assertNotIn("targetAccuracy", spec["training"])
        self.assertNotIn("epochs", spec["training"])
        self.assertEqual(spec["training"]["steps"], 300)
        self.assertEqual(spec["training"]["evalEvery"], 50)
        self.assertEqual(spec["training"]["seed"], 1)
        self.assertEqual(spec["sync"], {"mode": "stella", "density": 0.02})  # other sync knobs kept
        self.assertEqual([c["name"] for c in spec["clusters"]], ["onprem", "cloud"])
        for c in spec["clusters"]:
            self.assertEqual(c["workers"], 1)
            self.assertEqual(c["wan"], {"bandwidthMbps": 0, "latencyMs": 0})
        self.assertEqual(spec["metrics"], {"port": 0})
        self.assertEqual(spec["optimizer"], BASE["spec"]["optimizer"])
        # The base manifest is not modified.
        self.assertEqual(BASE["spec"]["training"]["targetAccuracy"], 0.86)
        self.assertEqual(BASE["spec"]["clusters"][0]["workers"], 3)

    def test_in_process_shaper_rate_and_single_cluster(self):
        m = sb.make_manifest(BASE, "x", "ddp", 10, 10, 100.0)
        self.assertEqual([c["wan"]["bandwidthMbps"] for c in m["spec"]["clusters"]], [100.0, 100.0])
        one = sb.make_manifest(BASE, "y", "ddp", 10, 10, 0, clusters=1)
        self.assertEqual(len(one["spec"]["clusters"]), 1)

    def test_cluster_names_filled_when_base_has_fewer(self):
        base = {"spec": {"clusters": [{"name": "lab"}]}}
        m = sb.make_manifest(base, "z", "ddp", 10, 10, 0)
        self.assertEqual([c["name"] for c in m["spec"]["clusters"]], ["lab", "cloud"])


def ev(rank, event, **fields):
    return dict(fields, event=event, global_rank=rank)


class SummaryTest(unittest.TestCase):
    def test_runtime_events_exclude_evaluation_time(self):
        events = [
            ev(0, "start", world_size=2, parameters=46730),
            ev(1, "start", world_size=2, parameters=46730),
            ev(0, "progress", step=10, elapsed_seconds=1.0),
            ev(0, "progress", step=20, elapsed_seconds=2.0),
            ev(0, "eval", step=20, test_accuracy=0.75, elapsed_seconds=3.0),  # 1 s evaluating
            ev(0, "progress", step=30, elapsed_seconds=4.0),
            ev(0, "progress", step=40, elapsed_seconds=5.0),
            ev(0, "eval", step=40, test_accuracy=0.82, elapsed_seconds=6.5),  # 1.5 s evaluating
            ev(0, "done", steps=40, samples=2560, final_accuracy=0.82, wall_seconds=6.5, wan_bytes_sent=1000),
            ev(1, "done", steps=40, samples=2560, final_accuracy=-1, wall_seconds=6.4, wan_bytes_sent=900),
        ]
        s = sb.summarize_runtime_events(events, 64, 0.80)
        self.assertEqual(s["steps"], 40)
        self.assertEqual(s["samples"], 5120)
        self.assertAlmostEqual(s["eval_seconds"], 2.5)
        self.assertAlmostEqual(s["train_seconds"], 4.0)
        self.assertAlmostEqual(s["samples_per_second"], 1280.0)
        self.assertEqual(s["accuracy_points"], [[2.0, 0.75], [4.0, 0.82]])
        self.assertEqual(s["time_to_accuracy_seconds"], 4.0)
        self.assertEqual(s["runtime_wan_bytes"], 1900)
        self.assertEqual(s["final_accuracy"], 0.82)
        self.assertEqual(s["parameters"], 46730)

    def test_eval_without_progress_uses_median_duration(self):
        events = [
            ev(0, "start", world_size=1),
            ev(0, "progress", step=10, elapsed_seconds=1.0),
            ev(0, "eval", step=10, test_accuracy=0.5, elapsed_seconds=2.0),
            ev(0, "eval", step=13, test_accuracy=0.6, elapsed_seconds=3.5),  # stopped early
            ev(0, "done", steps=13, samples=832, final_accuracy=0.6, wall_seconds=3.5),
        ]
        s = sb.summarize_runtime_events(events, 64, 0.9)
        self.assertAlmostEqual(s["eval_seconds"], 2.0)
        self.assertAlmostEqual(s["train_seconds"], 1.5)
        self.assertIsNone(s["time_to_accuracy_seconds"])

    def test_final_evaluation_at_the_same_step(self):
        # Stella mode evaluates at step 20 (evalEvery), then again at the end
        # after the pipeline has applied the last updates.
        events = [
            ev(0, "start", world_size=1),
            ev(0, "progress", step=20, elapsed_seconds=2.0),
            ev(0, "eval", step=20, test_accuracy=0.70, elapsed_seconds=3.0),
            ev(0, "eval", step=20, test_accuracy=0.71, elapsed_seconds=4.2),
            ev(0, "done", steps=20, samples=1280, final_accuracy=0.71, wall_seconds=4.2),
        ]
        s = sb.summarize_runtime_events(events, 64, 0.9)
        self.assertAlmostEqual(s["eval_seconds"], 2.2)
        self.assertAlmostEqual(s["train_seconds"], 2.0)
        self.assertEqual(s["accuracy_points"], [[2.0, 0.70], [2.0, 0.71]])
        self.assertEqual(s["final_accuracy"], 0.71)

    def test_missing_worker_is_an_error(self):
        events = [ev(0, "start", world_size=2), ev(0, "done", steps=1, samples=64, wall_seconds=1)]
        with self.assertRaises(sb.BenchError):
            sb.summarize_runtime_events(events, 64, 0.8)
        with self.assertRaises(sb.BenchError):
            sb.summarize_runtime_events([ev(0, "start", world_size=1)], 64, 0.8)

    def test_throughput_and_phases(self):
        # 10 steps per second for 10 s, then 1 step per second for 10 s; global batch 128.
        progress = [(100.0 + t, 10 * t) for t in range(0, 11)] + [(110.0 + t, 100 + t) for t in range(1, 11)]
        series = sb.throughput_series(progress, 128, 100.0)
        self.assertEqual(series[0], (1.0, 1280.0))
        self.assertEqual(series[-1], (20.0, 128.0))
        phases = sb.phase_throughput(progress, 128, 100.0, [(100, 10), (10, 10), (50, 10)])
        self.assertAlmostEqual(phases[0]["samples_per_second"], 1280.0)
        self.assertAlmostEqual(phases[1]["samples_per_second"], 128.0)
        self.assertIsNone(phases[2]["samples_per_second"])  # the run ended before this phase


class NamesAndTableTest(unittest.TestCase):
    def test_netns_list_and_stale_names(self):
        names = sb.parse_netns_list("stb123-b (id: 1)\nstb123-a (id: 0)\nother\nstb456-a\n\n")
        self.assertEqual(names, ["stb123-b", "stb123-a", "other", "stb456-a"])
        alive = {456}.__contains__
        self.assertEqual(sb.stale_bench_names(names, alive), ["stb123-b", "stb123-a"])
        self.assertEqual(sb.stale_bench_names(["stb99a", "stb99b", "stbx-a", "eth0"], lambda pid: False),
                         ["stb99a", "stb99b"])

    def test_cpu_model(self):
        self.assertEqual(sb.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"), "AMD EPYC 7B13")
        self.assertEqual(sb.cpu_model("nothing"), "unknown")

    def test_table_is_aligned(self):
        records = [
            {"system": "pytorch-ddp", "bandwidth_mbps": 10.0, "steps": 300, "samples_per_second": 780.4,
             "efficiency": 0.0488, "speedup_vs_pytorch_ddp": 1.0, "final_accuracy": 0.83,
             "time_to_accuracy_seconds": 31.25, "wan_bytes_per_step": 403500, "link_utilization": 0.984},
            {"system": "stella", "bandwidth_mbps": 1000.0, "steps": None, "note": "unavailable"},
        ]
        lines = sb.format_table(records).splitlines()
        self.assertEqual(len(lines), 4)
        self.assertTrue(lines[1].startswith("----"))
        self.assertIn("10 Mbit/s", lines[2])
        self.assertIn("780", lines[2])
        self.assertIn("4.9%", lines[2])
        self.assertIn("1.00x", lines[2])
        self.assertIn("31.2s", lines[2])
        self.assertIn("403.5 kB", lines[2])
        self.assertIn("98.4%", lines[2])
        # Columns line up: every column starts at the same offset in every row.
        self.assertEqual(lines[0].index("samples/s") + len("samples/s"), lines[2].index("780") + 3)
        self.assertEqual(lines[2].index("pytorch-ddp"), lines[3].index("stella"))


class ArgsTest(unittest.TestCase):
    def test_defaults_and_passthrough(self):
        a = sb.parse_args(["--quick", "--bandwidths", "10,100", "--stella-bin", "/x/bin"])
        self.assertEqual(a.bandwidths, [10.0, 100.0])
        self.assertEqual(a.systems, sb.SYSTEMS)
        self.assertEqual(a.stella_bin, "/x/bin")
        self.assertEqual(a.passthrough, ["--quick", "--bandwidths", "10,100"])

    def test_bad_values_are_usage_errors(self):
        for argv in (["--bandwidths", "fast"], ["--bandwidths", "0"], ["--systems", "horovod"]):
            with self.assertRaises(SystemExit) as cm:
                with open(os.devnull, "w") as devnull:
                    stderr, sys.stderr = sys.stderr, devnull
                    try:
                        sb.parse_args(argv)
                    finally:
                        sys.stderr = stderr
            self.assertEqual(cm.exception.code, 2)


if __name__ == "__main__":
    unittest.main()
