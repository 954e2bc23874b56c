// The checkpoint promise end to end, with real stella-runtime processes (and
// the stella CLI) training on the real Fashion-MNIST over loopback:
//  - workers SIGKILLed mid-run, or stopped by SIGTERM, and resumed continue
//    bit for bit: the final parameters equal an uninterrupted run's, in ddp
//    and in stella mode (staleness 2, random-k, error feedback);
//  - a truncated newest checkpoint is skipped (logged) and the previous one
//    used, still bit for bit;
//  - `stella run` survives a SIGKILLed worker: it restarts the job from the
//    last complete checkpoint, reaches the uninterrupted run's test accuracy
//    (within 1 point), and reports at most one checkpoint interval of steps
//    lost in its summary.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
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

constexpr int kSteps = 300;
constexpr int kInterval = 50;

// Two clusters of one worker; a small MLP so 300 steps take a few seconds.
std::string JobYaml(const std::string& name, const std::string& checkpoint_dir, const std::string& sync) {
  return "apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata:\n  name: " + name +
         "\nspec:\n  model: {name: mlp, hidden: 16}\n  dataset: {name: fashion-mnist}\n"
         "  optimizer: {name: adam, learningRate: 0.002}\n  batchSize: 32\n"
         "  training: {steps: " +
         std::to_string(kSteps) +
         ", evalEvery: 100}\n  clusters:\n"
         "    - name: alpha\n      wan: {bandwidthMbps: 20, latencyMs: 1}\n"
         "    - name: beta\n      wan: {bandwidthMbps: 20, latencyMs: 1}\n"
         "  metrics: {port: 0}\n" +
         sync + "  checkpoint: {path: " + checkpoint_dir + ", intervalSteps: " + std::to_string(kInterval) + "}\n";
}

std::string StepFile(const std::string& dir, int step) {
  char name[64];
  std::snprintf(name, sizeof(name), "/step-%020d.ckpt", step);
  return dir + name;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

struct Workers {
  std::vector<pid_t> pids;
  std::vector<std::string> logs;
  std::vector<std::string> dumps;
};

Workers StartWorkers(const std::string& dir, const std::string& job, const std::string& tag, bool resume) {
  Workers w;
  const std::string runtime = BuildDir() + "/bin/stella-runtime";
  const std::string wan_ports = std::to_string(FreePort()) + "," + std::to_string(FreePort());
  for (int c = 0; c < 2; ++c) {
    w.logs.push_back(dir + "/log-" + tag + "-" + std::to_string(c) + ".txt");
    w.dumps.push_back(dir + "/params-" + tag + "-" + std::to_string(c) + ".bin");
    std::vector<std::string> args = {runtime,
                                     "--job",
                                     job,
                                     "--cluster-index",
                                     std::to_string(c),
                                     "--local-rank",
                                     "0",
                                     "--store-port",
                                     std::to_string(FreePort()),
                                     "--wan-ports",
                                     wan_ports,
                                     "--dump-parameters",
                                     w.dumps.back()};
    if (resume) args.push_back("--resume");
    w.pids.push_back(Spawn(args, w.logs.back()));
  }
  return w;
}

// Waits for both workers to exit 0; returns their parameter dumps ({} and a
// test failure otherwise).
std::vector<std::string> Finish(const Workers& w) {
  bool ok = true;
  for (size_t i = 0; i < w.pids.size(); ++i) {
    const int status = WaitFor(w.pids[i], std::chrono::seconds(240));
    const bool exited = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    EXPECT_TRUE(exited) << "worker " << i << " status " << status << "\n" << ReadFile(w.logs[i]);
    ok = ok && exited;
  }
  if (!ok) return {};
  return {ReadFile(w.dumps[0]), ReadFile(w.dumps[1])};
}

// The step of the "resume" event in a worker log, -1 if none.
int64_t ResumedStep(const std::string& log) {
  const size_t at = log.find("\"event\":\"resume\"");
  if (at == std::string::npos) return -1;
  const size_t line_start = log.rfind('\n', at) + 1;
  const size_t line_end = log.find('\n', at);
  auto event = nlohmann::json::parse(log.substr(line_start + 8, line_end - line_start - 8));  // after "@stella "
  return event.value("step", int64_t{-1});
}

class ResumeTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(Modes, ResumeTest, ::testing::Values("ddp", "stella"),
                         [](const auto& info) { return info.param; });

TEST_P(ResumeTest, KilledOrStoppedWorkersResumeBitForBitAndATruncatedCheckpointIsSkipped) {
  TempDir dir;
  const std::string sync =
      GetParam() == "ddp" ? "  sync: {mode: ddp}\n"
                          : "  sync: {mode: stella, density: 0.05, staleness: 2, compressor: randomk, tuner: false}\n";
  // The uninterrupted reference (with checkpoints too: they must not change
  // the training).
  const std::string ref_job = dir.path() + "/ref.yaml";
  WriteFile(ref_job, JobYaml("resume-" + GetParam(), dir.path() + "/ref-ckpt", sync));
  const std::vector<std::string> reference = Finish(StartWorkers(dir.path(), ref_job, "ref", false));
  ASSERT_EQ(reference.size(), 2u);
  ASSERT_GT(reference[0].size(), 1000u);
  ASSERT_EQ(reference[0], reference[1]);

  // The same job, SIGKILLed once both workers hold checkpoint 100.
  const std::string ckpt = dir.path() + "/ckpt";
  const std::string job = dir.path() + "/job.yaml";
  WriteFile(job, JobYaml("resume-" + GetParam(), ckpt, sync));
  Workers killed = StartWorkers(dir.path(), job, "killed", false);
  bool saved = false;
  for (int i = 0; i < 2400 && !saved; ++i) {
    saved = Exists(StepFile(ckpt + "/alpha-0", 100)) && Exists(StepFile(ckpt + "/beta-0", 100));
    if (!saved) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(saved) << ReadFile(killed.logs[0]);
  for (pid_t pid : killed.pids) kill(pid, SIGKILL);
  for (pid_t pid : killed.pids) WaitFor(pid, std::chrono::seconds(30));
  ASSERT_EQ(ReadFile(killed.logs[0]).find("\"event\":\"done\""), std::string::npos) << "finished before the kill";

  Workers resumed = StartWorkers(dir.path(), job, "resumed", true);
  const std::vector<std::string> after_kill = Finish(resumed);
  ASSERT_EQ(after_kill.size(), 2u);
  const int64_t resumed_at = ResumedStep(ReadFile(resumed.logs[0]));
  EXPECT_GE(resumed_at, 100);
  EXPECT_EQ(resumed_at % kInterval, 0);
  EXPECT_EQ(ResumedStep(ReadFile(resumed.logs[1])), resumed_at);  // every worker agreed
  EXPECT_TRUE(after_kill[0] == reference[0]) << "resumed at step " << resumed_at << ": parameters differ";
  EXPECT_TRUE(after_kill[1] == reference[1]);

  // The run ended with checkpoints 250 and 300 (the end of training). Cut
  // beta's newest in half: it is skipped and both resume from 250.
  const std::string newest = StepFile(ckpt + "/beta-0", kSteps);
  const std::string bytes = ReadFile(newest);
  ASSERT_GT(bytes.size(), 1000u);
  WriteFile(newest, bytes.substr(0, bytes.size() / 2));
  Workers again = StartWorkers(dir.path(), job, "truncated", true);
  const std::vector<std::string> after_truncation = Finish(again);
  ASSERT_EQ(after_truncation.size(), 2u);
  const std::string beta_log = ReadFile(again.logs[1]);
  EXPECT_NE(beta_log.find("checkpoint: skipping checkpoint " + newest + ": truncated"), std::string::npos) << beta_log;
  EXPECT_EQ(ResumedStep(ReadFile(again.logs[0])), kSteps - kInterval);
  EXPECT_EQ(ResumedStep(beta_log), kSteps - kInterval);
  EXPECT_TRUE(after_truncation[0] == reference[0]) << "parameters differ after resuming from step 250";

  // A graceful stop (SIGTERM, as Ctrl-C or an evicted pod) between two
  // checkpoints writes a checkpoint of the agreed stop step; resuming from it
  // is bit for bit too (in stella mode the steps in flight are dropped and
  // recomputed).
  const std::string stop_ckpt = dir.path() + "/stop-ckpt";
  const std::string stop_job = dir.path() + "/stop.yaml";
  WriteFile(stop_job, JobYaml("resume-" + GetParam(), stop_ckpt, sync));
  Workers stopped = StartWorkers(dir.path(), stop_job, "stopped", false);
  bool started = false;
  for (int i = 0; i < 2400 && !started; ++i) {
    started = Exists(StepFile(stop_ckpt + "/alpha-0", 50)) && Exists(StepFile(stop_ckpt + "/beta-0", 50));
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(started) << ReadFile(stopped.logs[0]);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (pid_t pid : stopped.pids) kill(pid, SIGTERM);
  for (size_t i = 0; i < stopped.pids.size(); ++i) {
    const int status = WaitFor(stopped.pids[i], std::chrono::seconds(60));
    ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(stopped.logs[i]);
  }
  const std::string stop_log = ReadFile(stopped.logs[0]);
  ASSERT_NE(stop_log.find("\"stopped\":true"), std::string::npos) << "the run ended before the stop\n" << stop_log;
  Workers continued = StartWorkers(dir.path(), stop_job, "continued", true);
  const std::vector<std::string> after_stop = Finish(continued);
  ASSERT_EQ(after_stop.size(), 2u);
  const int64_t stop_step = ResumedStep(ReadFile(continued.logs[0]));
  EXPECT_GE(stop_step, 50);
  std::printf("%s: stopped at step %lld, resumed there\n", GetParam().c_str(), static_cast<long long>(stop_step));
  EXPECT_TRUE(after_stop[0] == reference[0]) << "parameters differ after a stop at step " << stop_step;
}

// --resume with nothing to resume from starts at step 0 (logged), it does
// not fail: the operator restarts pods with --resume unconditionally.
TEST(ResumeWithoutCheckpointTest, StartsAtStepZero) {
  TempDir dir;
  const std::string job = dir.path() + "/job.yaml";
  WriteFile(job, JobYaml("fresh", dir.path() + "/none", ""));
  Workers w = StartWorkers(dir.path(), job, "fresh", true);
  ASSERT_EQ(Finish(w).size(), 2u);
  const std::string log = ReadFile(w.logs[0]);
  EXPECT_NE(log.find("no checkpoint that every worker holds complete"), std::string::npos) << log;
  EXPECT_EQ(ResumedStep(log), 0);
  EXPECT_NE(log.find("\"steps\":300"), std::string::npos);
}

// `stella run` with a worker SIGKILLed mid-run: the job restarts from the
// last complete checkpoint and ends where an uninterrupted run ends.
TEST(CliRestartTest, KilledWorkerRestartsAndReachesTheSameAccuracy) {
  TempDir dir;
  // The demo job (optimizer, batch, links) with a small MLP instead of the
  // CNN and 300 steps, so the two runs take well under a minute on 2 cores.
  auto yaml = [&](const std::string& ckpt) {
    return "apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata:\n  name: cli-restart\nspec:\n"
           "  model: {name: mlp, hidden: 64}\n  dataset: {name: fashion-mnist}\n"
           "  optimizer: {name: adam, learningRate: 0.002}\n  batchSize: 64\n"
           "  training: {steps: 300, evalEvery: 100}\n  sync: {mode: ddp}\n  clusters:\n"
           "    - name: onprem\n      wan: {bandwidthMbps: 100, latencyMs: 5}\n"
           "    - name: cloud\n      wan: {bandwidthMbps: 100, latencyMs: 5}\n"
           "  metrics: {port: 0}\n  checkpoint: {path: " +
           ckpt + ", intervalSteps: " + std::to_string(kInterval) + "}\n";
  };
  auto run = [&](const std::string& tag, bool kill_a_worker) -> nlohmann::json {
    const std::string job = dir.path() + "/" + tag + ".yaml";
    const std::string ckpt = dir.path() + "/" + tag + "-ckpt";
    WriteFile(job, yaml(ckpt));
    const std::string json = dir.path() + "/" + tag + ".json";
    const std::string out = dir.path() + "/" + tag + ".out";
    pid_t cli =
        Spawn({BuildDir() + "/bin/stella", "run", job, "--json", json, "--log-dir", dir.path() + "/" + tag}, out);
    if (kill_a_worker) {
      // Once both workers hold checkpoint 100, kill cloud/0.
      pid_t victim = -1;
      for (int i = 0; i < 2400 && victim < 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (!Exists(StepFile(ckpt + "/cloud-0", 100)) || !Exists(StepFile(ckpt + "/onprem-0", 100))) continue;
        FILE* p = popen(("pgrep -f -- 'stella-[r]untime --job " + job + " --cluster-index 1'").c_str(), "r");
        int v = -1;
        if (p != nullptr && std::fscanf(p, "%d", &v) == 1) victim = v;
        if (p != nullptr) pclose(p);
      }
      EXPECT_GT(victim, 0) << "checkpoint 100 never appeared\n" << ReadFile(out);
      if (victim > 0) {
        EXPECT_EQ(kill(victim, SIGKILL), 0);
      }
    }
    const int status = WaitFor(cli, std::chrono::seconds(300));
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(out);
    EXPECT_NE(std::system(("pgrep -f -- 'stella-[r]untime --job " + job + "' > /dev/null").c_str()), 0)
        << "a worker outlived the run";
    const std::string text = ReadFile(json);
    if (text.empty()) return nlohmann::json::object();
    if (kill_a_worker) {
      const std::string printed = ReadFile(out);
      EXPECT_NE(printed.find("restart 1/3: worker cloud/0 was killed by signal 9"), std::string::npos) << printed;
      EXPECT_NE(printed.find("resumed from checkpoint at step"), std::string::npos) << printed;
    }
    return nlohmann::json::parse(text);
  };
  const nlohmann::json uninterrupted = run("whole", false);
  const nlohmann::json restarted = run("killed", true);
  ASSERT_TRUE(uninterrupted.contains("final_accuracy") && restarted.contains("final_accuracy"));
  const double a = uninterrupted["final_accuracy"].get<double>();
  const double b = restarted["final_accuracy"].get<double>();
  std::printf("uninterrupted %.4f, restarted %.4f; restarts %d, steps lost %lld, resumed at %lld\n", a, b,
              restarted.value("restarts", -1), static_cast<long long>(restarted.value("steps_lost", int64_t{-1})),
              static_cast<long long>(restarted.value("resumed_from", int64_t{-1})));
  EXPECT_GT(a, 0.7);  // really trained
  EXPECT_NEAR(b, a, 0.01);
  EXPECT_EQ(uninterrupted.value("restarts", -1), 0);
  EXPECT_EQ(restarted.value("restarts", -1), 1);
  EXPECT_EQ(restarted.value("steps", int64_t{-1}), 300);
  const int64_t lost = restarted.value("steps_lost", int64_t{-1});
  EXPECT_GE(lost, 0);
  EXPECT_LE(lost, kInterval);
  const int64_t resumed = restarted.value("resumed_from", int64_t{-1});
  EXPECT_GE(resumed, 100);
  EXPECT_EQ(resumed % kInterval, 0);
  EXPECT_EQ(restarted["restart_log"][0].value("resumed_from", int64_t{-1}), resumed);
}

}  // namespace
