// Convergence of the stella mode against ddp on real Fashion-MNIST: 2 clusters
// x 1 worker, cnn, one epoch, through the `stella` CLI (real processes).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/testing/process_util.h"

namespace {

using stella::testing::BuildDir;
using stella::testing::ReadFile;

// Runs `stella run` on the manifest; returns the JSON summary (null on failure).
nlohmann::json RunJob(const std::string& dir, const std::string& name, const std::string& yaml) {
  const std::string job = dir + "/" + name + ".yaml";
  std::ofstream(job) << yaml;
  const std::string json = dir + "/" + name + ".json";
  const std::string out = dir + "/" + name + ".out";
  const std::vector<std::string> args = {BuildDir() + "/bin/stella", "run", job, "--json", json, "--log-dir",
                                         dir + "/logs-" + name};
  pid_t pid = stella::testing::Spawn(args, out);
  int status = stella::testing::WaitFor(pid, std::chrono::seconds(300));  // ~100 s each on an idle 2-core machine
  const bool exited = status != -1;
  EXPECT_TRUE(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0) << name << "\n" << ReadFile(out);
  if (!exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return nullptr;
  return nlohmann::json::parse(ReadFile(json));
}

std::string Manifest(const std::string& name, const std::string& sync, double mbps) {
  std::string y = "apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata:\n  name: " + name +
                  "\nspec:\n  model: {name: cnn}\n  dataset: {name: fashion-mnist}\n"
                  // Plain SGD: lazily updated momentum buffers (sparse steps) and
                  // a one-step delay both weaken heavy-ball momentum; see the
                  // pipeline report for the measured gaps with momentum 0.9.
                  "  optimizer: {name: sgd, learningRate: 0.2, momentum: 0.0}\n  batchSize: 64\n"
                  "  training: {epochs: 1, evalEvery: 1000000, seed: 1}\n  sync: " +
                  sync + "\n  metrics: {port: 0}\n  clusters:\n";
  for (const char* c : {"alpha", "beta"}) {
    y += std::string("    - name: ") + c + "\n      workers: 1\n      wan: {bandwidthMbps: " + std::to_string(mbps) +
         ", latencyMs: 5}\n";
  }
  return y;
}

// One epoch (469 steps of 2 x 64): stella at 1% density, one step stale, over
// a 10 Mbit/s link reaches the accuracy of ddp within one point. The ddp
// reference runs unshaped: its accuracy does not depend on the link, and at
// 10 Mbit/s it would take ~2 minutes (187 KB per step each way) of the
// 4-minute budget.
TEST(PipelineConvergenceTest, StellaAtOnePercentMatchesDdpAccuracyWithinOnePoint) {
  char tmpl[] = "/tmp/stella-conv-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto stella = RunJob(dir, "stella",
                       Manifest("conv-stella",
                                "{mode: stella, density: 0.01, staleness: 1, compressor: topk, errorFeedback: true, "
                                "tuner: false}",
                                10));
  auto ddp = RunJob(dir, "ddp", Manifest("conv-ddp", "{mode: ddp}", 0));
  ASSERT_FALSE(stella.is_null());
  ASSERT_FALSE(ddp.is_null());
  const double a_stella = stella["final_accuracy"].get<double>();
  const double a_ddp = ddp["final_accuracy"].get<double>();
  std::printf("one epoch: stella %.2f%% (%.0f samples/s at 10 Mbit/s), ddp %.2f%% (unshaped)\n", 100 * a_stella,
              stella["samples_per_second"].get<double>(), 100 * a_ddp);
  EXPECT_EQ(stella["steps"].get<int64_t>(), 469);
  EXPECT_GT(a_ddp, 0.8);  // the reference itself trained
  EXPECT_GE(a_stella, a_ddp - 0.01);
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
