// End-to-end: real stella-runtime processes (and the stella CLI) training on
// the real Fashion-MNIST over loopback, shaped in-process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process_util.h"

namespace {

using stella::testing::BuildDir;
using stella::testing::FreePort;
using stella::testing::ReadFile;
using stella::testing::Spawn;
using stella::testing::TempDir;
using stella::testing::WaitFor;
using stella::testing::WriteFile;

std::string JobYaml(const std::string& name, int workers_per_cluster, int steps, const std::string& extra_spec = "",
                    int metrics_port = 0) {
  std::string y = "apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata:\n  name: " + name +
                  "\nspec:\n  model: {name: mlp, hidden: 64}\n  dataset: {name: fashion-mnist}\n"
                  "  optimizer: {name: sgd, learningRate: 0.05, momentum: 0.9}\n  batchSize: 32\n"
                  "  training: {steps: " +
                  std::to_string(steps) + ", evalEvery: 1000000}\n  clusters:\n";
  for (const char* c : {"alpha", "beta"}) {
    y += std::string("    - name: ") + c + "\n      workers: " + std::to_string(workers_per_cluster) +
         "\n      wan: {bandwidthMbps: 50, latencyMs: 2}\n";
  }
  y += "  metrics: {port: " + std::to_string(metrics_port) + "}\n" + extra_spec;
  return y;
}

// Runs a 2 clusters x 2 workers job to the end with --dump-parameters and
// returns the four dumps (order 0-0, 0-1, 1-0, 1-1); fails the test (and
// returns nothing) if a worker fails or hangs.
std::vector<std::string> RunTwoByTwo(const TempDir& dir, const std::string& name, const std::string& yaml) {
  const std::string job = dir.path() + "/" + name + ".yaml";
  WriteFile(job, yaml);
  const std::string runtime = BuildDir() + "/bin/stella-runtime";
  const std::string wan_ports = std::to_string(FreePort()) + "," + std::to_string(FreePort());
  std::vector<std::string> store_ports = {std::to_string(FreePort()), std::to_string(FreePort())};
  std::vector<pid_t> pids;
  std::vector<std::string> tags;
  for (int c = 0; c < 2; ++c) {
    for (int r = 0; r < 2; ++r) {
      const std::string tag = name + "-" + std::to_string(c) + "-" + std::to_string(r);
      tags.push_back(tag);
      pids.push_back(Spawn({runtime, "--job", job, "--cluster-index", std::to_string(c), "--local-rank",
                            std::to_string(r), "--store-port", store_ports[c], "--wan-ports", wan_ports,
                            "--dump-parameters", dir.path() + "/params-" + tag + ".bin"},
                           dir.path() + "/log-" + tag + ".txt"));
    }
  }
  bool ok = true;
  for (size_t i = 0; i < pids.size(); ++i) {
    int status = WaitFor(pids[i], std::chrono::seconds(240));
    const bool exited = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    EXPECT_TRUE(exited) << name << " worker " << tags[i] << " status " << status << "\n"
                        << ReadFile(dir.path() + "/log-" + tags[i] + ".txt");
    ok = ok && exited;
  }
  if (!ok) return {};
  std::vector<std::string> dumps;
  for (const auto& tag : tags) dumps.push_back(ReadFile(dir.path() + "/params-" + tag + ".bin"));
  return dumps;
}

std::vector<float> AsFloats(const std::string& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// max|a - b| / max|a|: elementwise relative error is meaningless for
// parameters near zero.
double MagnitudeRelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(a[i])));
  }
  return max_abs > 0 ? max_diff / max_abs : max_diff;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

// Stella mode at density 1, staleness 0, fp32, top-k with error feedback is
// the dense algorithm done differently: the sparse aggregate equals the dense
// all-reduce bit for bit, and the CPU optimizer matches libtorch's to ~1e-7 of
// the largest parameter. So after 20 steps the parameters of the two modes
// agree to 1e-5 (magnitude-relative), for SGD with momentum and for Adam.
TEST(RuntimeE2eTest, StellaModeAtDensityOneMatchesDdp) {
  TempDir dir;
  const std::string dense_sync = "  sync: {mode: ddp}\n";
  const std::string stella_sync =
      "  sync: {mode: stella, density: 1.0, minDensity: 0.001, maxDensity: 1.0, staleness: 0, "
      "valuePrecision: fp32, errorFeedback: true, compressor: topk, tuner: false}\n";
  const std::string sgd = JobYaml("exact", 2, 20);
  const std::string adam = Replace(sgd, "optimizer: {name: sgd, learningRate: 0.05, momentum: 0.9}",
                                   "optimizer: {name: adam, learningRate: 0.002}");
  std::vector<std::vector<float>> finals;  // ddp-sgd, stella-sgd, ddp-adam, stella-adam (worker 0-0)
  for (const auto& [name, yaml] :
       std::vector<std::pair<std::string, std::string>>{{"ddp-sgd", sgd + dense_sync},
                                                        {"stella-sgd", sgd + stella_sync},
                                                        {"ddp-adam", adam + dense_sync},
                                                        {"stella-adam", adam + stella_sync}}) {
    auto dumps = RunTwoByTwo(dir, name, yaml);
    ASSERT_EQ(dumps.size(), 4u) << name;
    ASSERT_GT(dumps[0].size(), 1000u) << name;
    for (size_t w = 1; w < 4; ++w) EXPECT_TRUE(dumps[w] == dumps[0]) << name << ": worker " << w << " diverged";
    finals.push_back(AsFloats(dumps[0]));
  }
  const double sgd_diff = MagnitudeRelativeDifference(finals[0], finals[1]);
  const double adam_diff = MagnitudeRelativeDifference(finals[2], finals[3]);
  EXPECT_LE(sgd_diff, 1e-5) << "sgd: stella vs ddp";
  EXPECT_LE(adam_diff, 1e-5) << "adam: stella vs ddp";
  // The measure can see a real difference: the two optimizers end far apart.
  EXPECT_GT(MagnitudeRelativeDifference(finals[0], finals[2]), 1e-2);
  std::printf("stella vs ddp after 20 steps: sgd %.3g, adam %.3g (magnitude-relative)\n", sgd_diff, adam_diff);
}

// Sparse (1%), one step stale: every worker of both clusters applies the same
// aggregate to the same master copy, so all four end bit-identical; and the
// run really was sparse and reported its density.
TEST(RuntimeE2eTest, StellaSparseStaleRunKeepsParametersIdenticalOnAllWorkers) {
  TempDir dir;
  const std::string yaml = JobYaml("sparse-identical", 2, 25) +
                           "  sync: {mode: stella, density: 0.01, staleness: 1, compressor: topk, tuner: false}\n";
  auto dumps = RunTwoByTwo(dir, "sparse", yaml);
  ASSERT_EQ(dumps.size(), 4u);
  ASSERT_GT(dumps[0].size(), 1000u);
  for (size_t w = 1; w < 4; ++w) EXPECT_TRUE(dumps[w] == dumps[0]) << "worker " << w << " diverged from worker 0-0";
  const std::string log = ReadFile(dir.path() + "/log-sparse-0-0.txt");
  EXPECT_NE(log.find("\"density\":0.01"), std::string::npos) << log;
  EXPECT_NE(log.find("\"event\":\"done\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"steps\":25"), std::string::npos) << log;
  // A dense step of this MLP is ~52,650 floats = 210 KB per peer; 25 sparse
  // steps must send far less than one dense step each.
  const size_t pos = log.rfind("\"wan_bytes_sent\":");
  ASSERT_NE(pos, std::string::npos);
  const long long sent = std::atoll(log.c_str() + pos + std::strlen("\"wan_bytes_sent\":"));
  EXPECT_GT(sent, 0);
  EXPECT_LT(sent, 25LL * 210000 / 10);
}

// With the tuner on, every worker runs the same deterministic tuner on the
// same (exchanged) telemetry, so density and batch decisions are identical
// everywhere and take effect at the same step: parameters stay bit-identical.
// Starting at density 0.5 (~160 KB per step) on a 50 Mbit/s link, while this
// MLP computes a step in a few milliseconds, the link is overloaded and the
// tuner must lower the density.
TEST(RuntimeE2eTest, TunedStellaRunStaysConsistentAndLowersDensityOnASlowLink) {
  TempDir dir;
  const std::string yaml = JobYaml("tuned", 2, 60) +
                           "  sync: {mode: stella, density: 0.5, minDensity: 0.001, maxDensity: 0.5, "
                           "staleness: 1, compressor: cacheline, tuner: true}\n";
  auto dumps = RunTwoByTwo(dir, "tuned", yaml);
  ASSERT_EQ(dumps.size(), 4u);
  ASSERT_GT(dumps[0].size(), 1000u);
  for (size_t w = 1; w < 4; ++w) EXPECT_TRUE(dumps[w] == dumps[0]) << "worker " << w << " diverged from worker 0-0";
  const std::string log = ReadFile(dir.path() + "/log-tuned-0-0.txt");
  EXPECT_NE(log.find("stella: tuner:"), std::string::npos) << log;
  EXPECT_NE(log.find("density down 0.5 ->"), std::string::npos) << log;
  EXPECT_NE(log.find("\"steps\":60"), std::string::npos) << log;
}

// Parameters stay bit-identical on all four workers of a 2 x 2 job: the
// hierarchical all-reduce gives every worker the same averaged gradient.
TEST(RuntimeE2eTest, DenseRunKeepsParametersIdenticalOnAllWorkers) {
  TempDir dir;
  const std::string job = dir.path() + "/job.yaml";
  WriteFile(job, JobYaml("identical-params", 2, 25));
  const std::string runtime = BuildDir() + "/bin/stella-runtime";
  const std::string wan_ports = std::to_string(FreePort()) + "," + std::to_string(FreePort());
  std::vector<std::string> store_ports = {std::to_string(FreePort()), std::to_string(FreePort())};
  std::vector<pid_t> pids;
  for (int c = 0; c < 2; ++c) {
    for (int r = 0; r < 2; ++r) {
      const std::string tag = std::to_string(c) + "-" + std::to_string(r);
      pids.push_back(Spawn({runtime, "--job", job, "--cluster-index", std::to_string(c), "--local-rank",
                            std::to_string(r), "--store-port", store_ports[c], "--wan-ports", wan_ports,
                            "--dump-parameters", dir.path() + "/params-" + tag + ".bin"},
                           dir.path() + "/log-" + tag + ".txt"));
    }
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    int status = WaitFor(pids[i], std::chrono::seconds(240));
    ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "worker " << i << " status " << status << "\n"
        << ReadFile(dir.path() + "/log-" + std::to_string(i / 2) + "-" + std::to_string(i % 2) + ".txt");
  }
  const std::string reference = ReadFile(dir.path() + "/params-0-0.bin");
  ASSERT_GT(reference.size(), 1000u);
  // The initial parameters of this MLP are not the final ones: training moved them.
  for (const char* tag : {"0-1", "1-0", "1-1"}) {
    EXPECT_TRUE(ReadFile(dir.path() + "/params-" + std::string(tag) + ".bin") == reference)
        << "worker " << tag << " diverged from worker 0-0";
  }
  // The gateway reported WAN traffic; the non-gateway none.
  EXPECT_NE(ReadFile(dir.path() + "/log-0-0.txt").find("\"wan_bytes_sent\":"), std::string::npos);
  // Without --tls-dir each gateway (only) warns once that its links are plain.
  const std::string warning = "warning: WAN links are unencrypted and unauthenticated (no --tls-dir)";
  for (const char* tag : {"0-0", "1-0"}) {
    const std::string log = ReadFile(dir.path() + "/log-" + std::string(tag) + ".txt");
    const size_t first = log.find(warning);
    EXPECT_NE(first, std::string::npos) << "gateway " << tag;
    EXPECT_EQ(log.find(warning, first + 1), std::string::npos) << "gateway " << tag << " warned twice";
  }
  EXPECT_EQ(ReadFile(dir.path() + "/log-0-1.txt").find(warning), std::string::npos);
}

// `stella run` trains over mutual TLS (its default), prints a summary and
// writes the JSON summary.
TEST(RuntimeE2eTest, CliRunWritesSummaryJson) {
  TempDir dir;
  const std::string job = dir.path() + "/job.yaml";
  WriteFile(job, JobYaml("cli-summary", 1, 150));
  const std::string json = dir.path() + "/summary.json";
  pid_t pid = Spawn({BuildDir() + "/bin/stella", "run", job, "--json", json, "--log-dir", dir.path() + "/logs"},
                    dir.path() + "/out.txt");
  int status = WaitFor(pid, std::chrono::seconds(240));
  const std::string out = ReadFile(dir.path() + "/out.txt");
  ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  auto summary = nlohmann::json::parse(ReadFile(json));
  for (const char* key : {"final_accuracy", "wall_seconds", "samples_per_second", "wan_bytes", "steps"}) {
    EXPECT_TRUE(summary.contains(key)) << key << " missing in " << summary.dump();
  }
  EXPECT_EQ(summary["steps"].get<int64_t>(), 150);
  // 150 steps of SGD on Fashion-MNIST are far above chance (10%).
  EXPECT_GT(summary["final_accuracy"].get<double>(), 0.6);
  EXPECT_GT(summary["wan_bytes"].get<double>(), 0);
  EXPECT_NE(out.find("WAN links: mutual TLS 1.3"), std::string::npos) << out;
  const std::string gateway_log = ReadFile(dir.path() + "/logs/alpha-0.log");
  EXPECT_NE(gateway_log.find("\"event\":\"done\""), std::string::npos) << gateway_log;
  EXPECT_EQ(gateway_log.find("unencrypted"), std::string::npos) << gateway_log;
}

// Without checkpoints, a worker killed mid-run fails the whole run quickly,
// naming the worker and the signal, and leaves no worker behind (with
// checkpoints the run restarts instead: checkpoint_e2e_test).
TEST(RuntimeE2eTest, KilledWorkerFailsTheRunQuickly) {
  TempDir dir;
  const std::string job = dir.path() + "/job.yaml";
  WriteFile(job, JobYaml("killed-worker", 1, 1000000));
  const std::string logs = dir.path() + "/logs";
  pid_t cli = Spawn({BuildDir() + "/bin/stella", "run", job, "--log-dir", logs}, dir.path() + "/out.txt");
  // Wait until the cloud worker trains (its log shows the start event).
  pid_t victim = -1;
  for (int i = 0; i < 600 && victim < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    FILE* p = popen(("pgrep -f -- 'stella-[r]untime --job " + job + " --cluster-index 1'").c_str(), "r");
    int v = -1;
    if (p && fscanf(p, "%d", &v) == 1 &&
        ReadFile(logs + "/beta-0.log").find("\"event\":\"start\"") != std::string::npos) {
      victim = v;
    }
    if (p) pclose(p);
  }
  ASSERT_GT(victim, 0) << "worker beta/0 never started\n" << ReadFile(dir.path() + "/out.txt");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  int status = WaitFor(cli, std::chrono::seconds(60));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  const std::string out = ReadFile(dir.path() + "/out.txt");
  ASSERT_NE(status, -1) << "stella run hung after a worker was killed\n" << out;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << out;
  EXPECT_NE(out.find("beta/0"), std::string::npos) << out;
  EXPECT_NE(out.find("signal 9"), std::string::npos) << out;
  // Without spec.checkpoint there is nothing to restart from; the message says so.
  EXPECT_NE(out.find("checkpointing would have allowed a restart"), std::string::npos) << out;
  EXPECT_LT(seconds, 30.0);
  // No worker of this job survives. (The [r] keeps pgrep from matching the
  // shell that runs it.)
  EXPECT_NE(std::system(("pgrep -f -- 'stella-[r]untime --job " + job + "' > /dev/null").c_str()), 0);
}

}  // namespace
