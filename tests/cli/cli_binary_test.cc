// Runs the built `stella` binary: exit codes, usage errors, validation, and
// whole runs against a fake stella-runtime (a shell script that speaks the
// event protocol), so the CLI glue is tested without the real runtime.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "src/security/certs.h"
#include "tests/cli/test_util.h"

#ifndef STELLA_CLI_BINARY
#error "STELLA_CLI_BINARY must point at the built stella executable"
#endif
#ifndef STELLA_PROJECT_VERSION
#error "STELLA_PROJECT_VERSION must be CMake's PROJECT_VERSION"
#endif

namespace stella::cli {
namespace {

using ::stella::cli::testing::FileExists;
using ::stella::cli::testing::ReadFile;
using ::stella::cli::testing::TempDir;
using ::stella::cli::testing::WriteFile;
using ::stella::cli::testing::WriteScript;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

class CliTest : public ::testing::Test {
 protected:
  // Starts `stella args...` with stdout/stderr captured to files.
  pid_t Start(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv_strings = {STELLA_CLI_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::string out_path = dir_.Join("stdout"), err_path = dir_.Join("stderr");
    pid_t pid = fork();
    if (pid == 0) {
      int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, STDOUT_FILENO);
      dup2(err, STDERR_FILENO);
      for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  // Waits (bounded) for `pid`; a CLI that hangs is killed and fails the test.
  Result Wait(pid_t pid) {
    Result r;
    int status = 0;
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        ADD_FAILURE() << "stella did not exit within 60 s";
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      usleep(10000);
    }
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    r.out = ReadFile(dir_.Join("stdout"));
    r.err = ReadFile(dir_.Join("stderr"));
    return r;
  }

  Result RunStella(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    return Wait(Start(args, env));
  }

  // A two-cluster, one-worker-each manifest whose dataset is a directory of
  // empty placeholder files (the CLI only checks that they exist).
  std::string WriteJob(const std::string& dataset_path, int metrics_port = 0, const std::string& extra = "") {
    std::string path = dir_.Join("job.yaml");
    WriteFile(path,
              "apiVersion: stella.dev/v1alpha1\n"
              "kind: StellaJob\n"
              "metadata: {name: cli-test}\n"
              "spec:\n"
              "  model: {name: cnn}\n"
              "  dataset: {name: fashion-mnist, path: " +
                  dataset_path +
                  "}\n"
                  "  training: {steps: 10}\n"
                  "  sync: {mode: ddp}\n"
                  "  clusters:\n"
                  "    - {name: onprem, workers: 1, wan: {bandwidthMbps: 100, latencyMs: 5}}\n"
                  "    - {name: cloud, workers: 1, wan: {bandwidthMbps: 0, latencyMs: 0}}\n"
                  "  metrics: {port: " +
                  std::to_string(metrics_port) + "}\n" + extra);
    return path;
  }

  std::string MakeDataset() {
    std::string path = dir_.Join("dataset");
    std::filesystem::create_directories(path);
    for (const char* f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                          "t10k-labels-idx1-ubyte.gz"}) {
      WriteFile(path + "/" + f, "");
    }
    return path;
  }

  // A stand-in for stella-runtime. FAKE_MODE selects: "" a clean run,
  // "fail" cluster 1 exits 3, "hang" workers wait for SIGTERM, "crash"
  // cluster 1 is SIGKILLed unless started with --resume, "crash_always"
  // cluster 1 is always SIGKILLed. With --resume, rank 0 reports a resume
  // from step 6. With FAKE_DIR set, a worker given --tls-dir records the
  // path, the modes of the directory and key, and a copy of its certificate.
  std::string WriteFakeRuntime() {
    return WriteScript(dir_.Join("fake-runtime"), R"SH(
resume=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster-index) c=$2; shift ;;
    --local-rank) r=$2; shift ;;
    --job) job=$2; shift ;;
    --tls-dir) tls=$2; shift ;;
    --resume) resume=1 ;;
  esac
  shift
done
g=$c
ev() { echo "@stella {\"event\":\"$1\",\"cluster\":$c,\"cluster_name\":\"x\",\"local_rank\":$r,\"global_rank\":$g$2}"; }
echo "fake runtime for job $job"
if [ -n "$tls" ] && [ -n "$FAKE_DIR" ]; then
  echo "$tls" > "$FAKE_DIR/tlsdir.$g"
  stat -c '%a' "$tls" "$tls/tls.key" > "$FAKE_DIR/modes.$g"
  cp "$tls/tls.crt" "$FAKE_DIR/tls.crt.$g"
fi
ev start ',"world_size":2,"device":"cpu","mode":"ddp","parameters":10,"total_steps":10'
if [ "$resume" = 1 ]; then
  echo "resumed" >> "$FAKE_DIR/resumed.$g"
  if [ "$g" = 0 ]; then ev resume ',"step":6,"from_checkpoint":true'; fi
fi
case "$FAKE_MODE" in
  crash|crash_always)
    if [ "$FAKE_MODE" = crash_always ] || [ "$resume" = 0 ]; then
      # Rank 0 reports step 8, then cluster 1 dies.
      if [ "$g" = 0 ]; then ev progress ',"step":8,"applied":8,"total_steps":10'; touch "$FAKE_DIR/progressed"; sleep 60 & wait; fi
      while [ ! -e "$FAKE_DIR/progressed" ]; do sleep 0.01; done
      kill -9 $$
    fi ;;
esac
if [ "$g" = 0 ]; then
  ev progress ',"step":10,"total_steps":10,"samples_per_second":100,"loss":0.5,"wan_bytes_sent":1000000,"wan_bytes_received":1000000,"elapsed_seconds":1.0'
  ev eval ',"step":10,"test_accuracy":0.81,"test_loss":0.5,"elapsed_seconds":1.5'
fi
case "$FAKE_MODE" in
  fail)
    if [ "$g" = 1 ]; then echo "fake failure on cluster 1" >&2; exit 3; fi
    sleep 60 & wait ;;
  hang)
    trap "echo term > $FAKE_DIR/term.$g; exit 0" TERM
    touch "$FAKE_DIR/ready.$g"
    sleep 60 & wait ;;
esac
ev done ",\"steps\":10,\"resumed_from\":$((6 * resume)),\"samples\":640,\"final_accuracy\":0.81,\"wall_seconds\":2.0,\"wan_bytes_sent\":$((1000 * (g + 1))),\"wan_bytes_received\":0"
)SH");
  }

  TempDir dir_;
};

TEST_F(CliTest, Version) {
  Result r = RunStella({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, std::string("stella ") + STELLA_PROJECT_VERSION + "\n");
}

TEST_F(CliTest, Help) {
  Result r = RunStella({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("stella run JOB.yaml"));
  EXPECT_THAT(r.out, HasSubstr("stella validate JOB.yaml"));
}

TEST_F(CliTest, UsageErrorsExitTwoAndNameTheProblem) {
  Result flag = RunStella({"run", "job.yaml", "--bogus"});
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_THAT(flag.err, HasSubstr("unknown flag '--bogus'"));
  EXPECT_THAT(flag.err, HasSubstr("usage:"));

  Result top_flag = RunStella({"--frobnicate"});
  EXPECT_EQ(top_flag.exit_code, 2);
  EXPECT_THAT(top_flag.err, HasSubstr("'--frobnicate'"));

  Result command = RunStella({"deploy"});
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_THAT(command.err, HasSubstr("unknown command 'deploy'"));

  Result none = RunStella({});
  EXPECT_EQ(none.exit_code, 2);

  Result missing_value = RunStella({"run", "job.yaml", "--timeout"});
  EXPECT_EQ(missing_value.exit_code, 2);
  EXPECT_THAT(missing_value.err, HasSubstr("'--timeout' needs a value"));

  Result bad_timeout = RunStella({"run", "job.yaml", "--timeout=soon"});
  EXPECT_EQ(bad_timeout.exit_code, 2);
  EXPECT_THAT(bad_timeout.err, HasSubstr("got 'soon'"));

  Result tls_value = RunStella({"run", "job.yaml", "--no-tls=yes"});
  EXPECT_EQ(tls_value.exit_code, 2);
  EXPECT_THAT(tls_value.err, HasSubstr("--no-tls takes no value, got '--no-tls=yes'"));

  Result validate_flag = RunStella({"validate", "--strict", "job.yaml"});
  EXPECT_EQ(validate_flag.exit_code, 2);
  EXPECT_THAT(validate_flag.err, HasSubstr("'--strict'"));
}

// `stella tls JOB DIR`: one --tls-dir per cluster, each naming its gateway,
// all from one fresh CA; an existing DIR or a bad manifest is refused.
TEST_F(CliTest, TlsWritesOneGatewayDirectoryPerCluster) {
  const std::string out = dir_.Join("tls");
  Result r = RunStella({"tls", std::string(STELLA_SOURCE_DIR) + "/examples/demo.yaml", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, out + "/onprem\n" + out + "/cloud\n");
  for (const char* cluster : {"onprem", "cloud"}) {
    auto m = security::ReadTlsDir(out + "/" + cluster);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto cert = security::DescribeCertificate(m->tls_crt);
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    EXPECT_EQ(cert->identity.cluster, cluster);
    EXPECT_EQ(cert->identity.job, "fashion-cnn-demo");
  }
  // One CA for the whole job.
  EXPECT_EQ(security::ReadTlsDir(out + "/onprem")->ca_crt, security::ReadTlsDir(out + "/cloud")->ca_crt);
  EXPECT_EQ(std::filesystem::status(out).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);

  Result again = RunStella({"tls", std::string(STELLA_SOURCE_DIR) + "/examples/demo.yaml", out});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("tls: cannot create " + out + ": File exists"));
  Result missing = RunStella({"tls", dir_.Join("nope.yaml"), dir_.Join("tls2")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("tls2")));
  Result usage = RunStella({"tls", "only-one-arg"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("tls: expected JOB.yaml and DIR"));
}

TEST_F(CliTest, ValidateAcceptsTheDemoManifest) {
  Result r = RunStella({"validate", std::string(STELLA_SOURCE_DIR) + "/examples/demo.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
}

TEST_F(CliTest, ValidateListsEveryErrorWithFieldPaths) {
  std::string path = dir_.Join("bad.yaml");
  WriteFile(path,
            "apiVersion: stella.dev/v1alpha1\n"
            "kind: StellaJob\n"
            "metadata: {name: bad}\n"
            "spec:\n"
            "  model: {name: cnn}\n"
            "  dataset: {name: fashion-mnist}\n"
            "  training: {steps: 10}\n"
            "  batchSize: 0\n"
            "  clusters:\n"
            "    - {name: onprem, workers: 0}\n");
  Result r = RunStella({"validate", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("spec.batchSize"));
  EXPECT_THAT(r.err, HasSubstr("spec.clusters[0].workers"));
  EXPECT_THAT(r.out, Not(HasSubstr("ok")));

  Result missing = RunStella({"validate", dir_.Join("nope.yaml")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope.yaml"));
}

TEST_F(CliTest, RunChecksPrerequisites) {
  std::string job = WriteJob(MakeDataset());
  Result no_runtime = RunStella({"run", job, "--runtime", dir_.Join("no-runtime")});
  EXPECT_EQ(no_runtime.exit_code, 1);
  EXPECT_THAT(no_runtime.err, HasSubstr("runtime binary " + dir_.Join("no-runtime") + " does not exist"));

  WriteFile(dir_.Join("not-executable"), "");
  Result not_exec = RunStella({"run", job, "--runtime", dir_.Join("not-executable")});
  EXPECT_EQ(not_exec.exit_code, 1);
  EXPECT_THAT(not_exec.err, HasSubstr("is not an executable file"));

  std::string job_without_data = WriteJob(dir_.Join("no-dataset"));
  Result no_data = RunStella({"run", job_without_data, "--runtime", WriteFakeRuntime()});
  EXPECT_EQ(no_data.exit_code, 1);
  EXPECT_THAT(no_data.err, HasSubstr(dir_.Join("no-dataset") + "/train-images-idx3-ubyte.gz"));
  EXPECT_THAT(no_data.err, HasSubstr("install the Debian package dataset-fashion-mnist (make setup)"));
}

TEST_F(CliTest, RunPrintsProgressAndSummaryAndWritesJson) {
  std::string job = WriteJob(MakeDataset());
  std::string json_path = dir_.Join("summary.json");
  std::string log_dir = dir_.Join("logs");
  Result r = RunStella(
      {"run", job, "--runtime", WriteFakeRuntime(), "--json", json_path, "--log-dir", log_dir, "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("stella run: job cli-test, mode ddp, 2 worker(s) in 2 cluster(s)"));
  EXPECT_THAT(r.out, HasSubstr("cluster onprem: 1 worker(s), WAN 100 Mbit/s, 5 ms latency"));
  EXPECT_THAT(r.out, HasSubstr("cluster cloud: 1 worker(s), WAN unshaped, 0 ms latency"));
  EXPECT_THAT(r.out, HasSubstr("metrics: off"));
  EXPECT_THAT(r.out, HasSubstr("logs: " + log_dir));
  EXPECT_THAT(r.out, HasSubstr("start: world size 2, device cpu, mode ddp, 10 parameters, 10 steps\n"));
  EXPECT_THAT(r.out, HasSubstr("progress 100% step 10/10, 100.0 samples/s, loss 0.5000, WAN 2.00 MB/s"));
  EXPECT_THAT(r.out, HasSubstr("eval step 10/10: test accuracy 81.00%, test loss 0.5000, elapsed 1.5s\n"));
  EXPECT_THAT(r.out, HasSubstr("  final accuracy   81.00%\n"));
  EXPECT_THAT(r.out, HasSubstr("  samples/s        640.0\n"));
  EXPECT_THAT(r.out, HasSubstr("  WAN bytes sent   2.9 KiB (3000 B)\n"));

  nlohmann::json summary = nlohmann::json::parse(ReadFile(json_path));
  EXPECT_DOUBLE_EQ(summary.at("final_accuracy").get<double>(), 0.81);
  EXPECT_DOUBLE_EQ(summary.at("wall_seconds").get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(summary.at("samples_per_second").get<double>(), 640.0);
  EXPECT_EQ(summary.at("wan_bytes"), 3000);
  EXPECT_EQ(summary.at("steps"), 10);
  EXPECT_EQ(summary.at("job"), "cli-test");
  EXPECT_EQ(summary.at("clusters"), 2);
  EXPECT_EQ(summary.at("workers"), 2);
  EXPECT_EQ(summary.at("log_dir"), log_dir);

  // Workers got the absolute job path and wrote their logs.
  EXPECT_THAT(ReadFile(log_dir + "/onprem-0.log"), HasSubstr("fake runtime for job " + job));
  EXPECT_TRUE(FileExists(log_dir + "/cloud-0.log"));
}

// `stella run` gives each gateway a per-run certificate for its cluster in a
// private directory, and removes the directory when the run ends.
TEST_F(CliTest, RunGivesGatewaysPerRunCertificatesAndRemovesThem) {
  std::string fake_dir = dir_.Join("fake");
  std::filesystem::create_directories(fake_dir);
  Result r = RunStella({"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs"),
                        "--timeout", "60"},
                       {"FAKE_DIR=" + fake_dir});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("WAN links: mutual TLS 1.3, per-run job CA (certificates in "));
  const char* clusters[] = {"onprem", "cloud"};
  for (int g = 0; g < 2; ++g) {
    const std::string gs = std::to_string(g);
    ASSERT_TRUE(FileExists(fake_dir + "/tlsdir." + gs)) << "gateway " << g << " got no --tls-dir\n" << r.out;
    std::string tls_dir = ReadFile(fake_dir + "/tlsdir." + gs);
    tls_dir.pop_back();  // newline
    EXPECT_THAT(tls_dir, ::testing::EndsWith(std::string("/") + clusters[g]));
    EXPECT_EQ(ReadFile(fake_dir + "/modes." + gs), "700\n600\n");
    auto cert = security::DescribeCertificate(ReadFile(fake_dir + "/tls.crt." + gs));
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    EXPECT_EQ(cert->identity.Uri(), std::string("stella://default/cli-test/") + clusters[g]);
    EXPECT_FALSE(FileExists(tls_dir)) << "left behind: " << tls_dir;
    EXPECT_FALSE(FileExists(std::filesystem::path(tls_dir).parent_path().string()));
  }

  std::filesystem::remove_all(fake_dir);
  std::filesystem::create_directories(fake_dir);
  Result plain = RunStella(
      {"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs"), "--no-tls"},
      {"FAKE_DIR=" + fake_dir});
  ASSERT_EQ(plain.exit_code, 0) << plain.out << plain.err;
  EXPECT_THAT(plain.out, HasSubstr("WAN links: plain TCP, unencrypted (--no-tls)"));
  EXPECT_FALSE(FileExists(fake_dir + "/tlsdir.0"));
  EXPECT_FALSE(FileExists(fake_dir + "/tlsdir.1"));
}

TEST_F(CliTest, WorkerFailureExitsOneAndNamesTheWorker) {
  std::string json_path = dir_.Join("summary.json");
  Result r = RunStella({"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--json", json_path,
                        "--log-dir", dir_.Join("logs")},
                       {"FAKE_MODE=fail"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("worker cloud/0 exited with status 3; last lines:"));
  EXPECT_THAT(r.err, HasSubstr("fake failure on cluster 1"));
  EXPECT_FALSE(FileExists(json_path));  // only successful runs write a summary
}

// Without checkpointing a failure still ends the run at once, and the
// message says a checkpoint would have allowed a restart.
TEST_F(CliTest, WorkerFailureWithoutCheckpointsSaysCheckpointingWouldHaveRestarted) {
  Result r =
      RunStella({"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs")},
                {"FAKE_MODE=crash", "FAKE_DIR=" + dir_.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("worker cloud/0 was killed by signal 9"));
  EXPECT_THAT(r.err, HasSubstr("checkpointing would have allowed a restart"));
  EXPECT_FALSE(FileExists(dir_.Join("resumed.0")));
}

// With checkpointing, a killed worker restarts the whole job with --resume
// (every worker), the progress output says so, and the summary counts the
// restart and the steps lost (applied 8 reported, resumed at 6).
TEST_F(CliTest, KilledWorkerRestartsTheJobFromItsCheckpoint) {
  const std::string job =
      WriteJob(MakeDataset(), 0, "  checkpoint: {path: " + dir_.Join("ckpt") + ", intervalSteps: 3}\n");
  const std::string json_path = dir_.Join("summary.json");
  Result r =
      RunStella({"run", job, "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs"), "--json", json_path},
                {"FAKE_MODE=crash", "FAKE_DIR=" + dir_.path()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("restart 1/3: worker cloud/0 was killed by signal 9 (SIGKILL: Killed)"));
  EXPECT_THAT(r.out, HasSubstr("(at step 8)"));
  EXPECT_THAT(r.out, HasSubstr("resumed from checkpoint at step 6/10"));
  EXPECT_THAT(r.out, HasSubstr("  restarts         1 (2 steps lost; resumed at step 6)\n"));
  EXPECT_EQ(ReadFile(dir_.Join("resumed.0")), "resumed\n");  // each worker resumed once
  EXPECT_EQ(ReadFile(dir_.Join("resumed.1")), "resumed\n");
  EXPECT_TRUE(FileExists(dir_.Join("logs/restart-1/cloud-0.log")));  // the first attempt's logs are kept
  EXPECT_TRUE(FileExists(dir_.Join("logs/cloud-0.log")));
  nlohmann::json summary = nlohmann::json::parse(ReadFile(json_path));
  EXPECT_EQ(summary.at("restarts"), 1);
  EXPECT_EQ(summary.at("steps_lost"), 2);
  EXPECT_EQ(summary.at("restart_log").at(0).at("resumed_from"), 6);
}

TEST_F(CliTest, RestartsStopAtTheBackoffLimit) {
  const std::string job =
      WriteJob(MakeDataset(), 0,
               "  checkpoint: {path: " + dir_.Join("ckpt") + ", intervalSteps: 3}\n  runPolicy: {backoffLimit: 2}\n");
  Result r = RunStella({"run", job, "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs")},
                       {"FAKE_MODE=crash_always", "FAKE_DIR=" + dir_.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("restart 1/2"));
  EXPECT_THAT(r.out, HasSubstr("restart 2/2"));
  EXPECT_THAT(r.err, HasSubstr("no restart left: the job was restarted 2 time(s), spec.runPolicy.backoffLimit is 2"));
  EXPECT_EQ(ReadFile(dir_.Join("resumed.1")), "resumed\nresumed\n");
}

TEST_F(CliTest, ResumeFlagReachesEveryWorkerAndNeedsACheckpointPath) {
  Result no_path = RunStella({"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--resume"});
  EXPECT_EQ(no_path.exit_code, 1);
  EXPECT_THAT(no_path.err, HasSubstr("has no spec.checkpoint.path to resume from"));
  const std::string job =
      WriteJob(MakeDataset(), 0, "  checkpoint: {path: " + dir_.Join("ckpt") + ", intervalSteps: 3}\n");
  Result r = RunStella({"run", "--resume", job, "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs")},
                       {"FAKE_DIR=" + dir_.path()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("resumed from checkpoint at step 6/10"));
  EXPECT_EQ(ReadFile(dir_.Join("resumed.0")), "resumed\n");
  EXPECT_EQ(ReadFile(dir_.Join("resumed.1")), "resumed\n");
}

TEST_F(CliTest, TimeoutStopsTheRunAndExitsOne) {
  std::string fake_dir = dir_.Join("fake");
  std::filesystem::create_directories(fake_dir);
  Result r = RunStella({"run", WriteJob(MakeDataset(), /*metrics_port=*/19400), "--runtime", WriteFakeRuntime(),
                        "--log-dir", dir_.Join("logs"), "--timeout", "0.5"},
                       {"FAKE_MODE=hang", "FAKE_DIR=" + fake_dir});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("    onprem/0  http://127.0.0.1:19400/metrics\n"));
  EXPECT_THAT(r.out, HasSubstr("    cloud/0   http://127.0.0.1:19401/metrics\n"));
  EXPECT_THAT(r.err, HasSubstr("did not finish before its deadline"));
}

TEST_F(CliTest, InterruptStopsWorkersAndExits130) {
  std::string fake_dir = dir_.Join("fake");
  std::filesystem::create_directories(fake_dir);
  pid_t pid = Start({"run", WriteJob(MakeDataset()), "--runtime", WriteFakeRuntime(), "--log-dir", dir_.Join("logs")},
                    {"FAKE_MODE=hang", "FAKE_DIR=" + fake_dir});
  // Interrupt only once both workers have installed their SIGTERM traps.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(FileExists(fake_dir + "/ready.0") && FileExists(fake_dir + "/ready.1")) &&
         std::chrono::steady_clock::now() < give_up) {
    usleep(10000);
  }
  ASSERT_EQ(kill(pid, SIGINT), 0);
  Result r = Wait(pid);
  EXPECT_EQ(r.exit_code, 130) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("stopped on request"));
  EXPECT_TRUE(FileExists(fake_dir + "/term.0"));
  EXPECT_TRUE(FileExists(fake_dir + "/term.1"));
  // The per-run TLS directory is gone after Ctrl-C too.
  ASSERT_TRUE(FileExists(fake_dir + "/tlsdir.0"));
  std::string tls_dir = ReadFile(fake_dir + "/tlsdir.0");
  tls_dir.pop_back();
  EXPECT_FALSE(FileExists(std::filesystem::path(tls_dir).parent_path().string()));
}

// `stella bench` execs /usr/bin/python3 on bench/stella_bench.py.
TEST_F(CliTest, BenchHelpRunsTheHarness) {
  Result r = RunStella({"bench", "--help"},
                       {"STELLA_BENCH_SCRIPT=" + std::string(STELLA_SOURCE_DIR) + "/bench/stella_bench.py"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("usage: stella bench"));
  EXPECT_THAT(r.out, HasSubstr("--quick"));
  EXPECT_THAT(r.out, HasSubstr("--bandwidths"));
  EXPECT_THAT(r.out, HasSubstr("--scenario"));

  Result top = RunStella({"--help"});
  EXPECT_THAT(top.out, HasSubstr("stella bench"));
}

// Without STELLA_BENCH_SCRIPT the script is found next to the build tree
// (<exe_dir>/../../bench), which holds when the build folder sits directly
// in the source tree (build/, build-*/).
TEST_F(CliTest, BenchFindsTheScriptFromTheBuildTree) {
  const std::string exe = STELLA_CLI_BINARY;
  const std::string exe_dir = exe.substr(0, exe.rfind('/'));
  std::error_code ec;
  if (!std::filesystem::equivalent(exe_dir + "/../../bench/stella_bench.py",
                                   std::string(STELLA_SOURCE_DIR) + "/bench/stella_bench.py", ec)) {
    GTEST_SKIP() << "build folder is not <source>/<build>; relative lookup does not apply";
  }
  Result r = RunStella({"bench", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("usage: stella bench"));
}

TEST_F(CliTest, BenchPassesEveryArgumentAndTheBinaryFolder) {
  // A stand-in harness that prints the arguments it got as JSON.
  std::string script = dir_.Join("echo_args.py");
  WriteFile(script, "import json, sys\nprint(json.dumps(sys.argv[1:]))\nsys.exit(3)\n");
  Result r = RunStella({"bench", "--quick", "--bandwidths", "10,100", "--json", "out.json"},
                       {"STELLA_BENCH_SCRIPT=" + script});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // the harness's exit status is stella's
  nlohmann::json got = nlohmann::json::parse(r.out);
  const std::string exe = STELLA_CLI_BINARY;
  nlohmann::json want = {"--quick",
                         "--bandwidths",
                         "10,100",
                         "--json",
                         "out.json",
                         "--stella-bin",
                         std::filesystem::canonical(exe).parent_path().string()};
  EXPECT_EQ(got, want);
}

TEST_F(CliTest, BenchWithoutTheScriptExitsOneAndSaysWhere) {
  Result r = RunStella({"bench", "--quick"}, {"STELLA_BENCH_SCRIPT=" + dir_.Join("missing.py")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("missing.py"));
  EXPECT_THAT(r.err, HasSubstr("STELLA_BENCH_SCRIPT"));
}

}  // namespace
}  // namespace stella::cli
