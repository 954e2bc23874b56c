// The `stella` command: runs and validates StellaJob manifests on one machine.
//
//   stella run JOB.yaml [--json FILE] [--log-dir DIR] [--runtime PATH] [--timeout SECONDS] [--no-tls] [--resume]
//   stella validate JOB.yaml [--runtime PATH]
//   stella bench [ARGS...]   (runs bench/stella_bench.py with /usr/bin/python3)
//   stella --version | --help
//
// Exit codes: 0 success; 1 invalid manifest, failed run or missing
// prerequisite; 2 usage error; 130 stopped by Ctrl-C (SIGINT/SIGTERM).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/base/clock.h"
#include "src/base/flags.h"
#include "src/base/status.h"
#include "src/cli/format.h"
#include "src/cli/launch_plan.h"
#include "src/cli/progress.h"
#include "src/cli/restart.h"
#include "src/cli/run_tls.h"
#include "src/cli/summary.h"
#include "src/cli/supervisor.h"
#include "src/spec/stella_job.h"

#ifndef STELLA_VERSION
#error "STELLA_VERSION must be defined by the build (CMake PROJECT_VERSION)"
#endif

namespace stella::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

// The write end of the signal self-pipe. The one piece of global mutable
// state: a signal handler can reach nothing else. Set once, before the
// handlers are installed, and never changed afterwards.
int g_signal_pipe_write_fd = -1;

extern "C" void OnStopSignal(int) {
  int saved_errno = errno;
  char byte = 's';
  // Non-blocking: if the pipe is full, enough requests are already queued.
  ssize_t ignored = write(g_signal_pipe_write_fd, &byte, 1);
  (void)ignored;
  errno = saved_errno;
}

constexpr char kUsage[] =
    "usage:\n"
    "  stella run JOB.yaml [--json FILE] [--log-dir DIR] [--runtime PATH] [--timeout SECONDS] [--no-tls] [--resume]\n"
    "      Runs the job on this machine: one stella-runtime process per worker per cluster.\n"
    "      With spec.checkpoint, a failed worker restarts the whole job from its last complete\n"
    "      checkpoint (up to spec.runPolicy.backoffLimit times).\n"
    "      --json FILE       write the run summary as JSON to FILE (on success only)\n"
    "      --log-dir DIR     worker logs (default /tmp/stella-<job name>-<pid>)\n"
    "      --runtime PATH    the stella-runtime binary (default: next to this program)\n"
    "      --timeout SECONDS stop the run after this long (default: no limit)\n"
    "      --no-tls          plain TCP between cluster gateways (default: mutual TLS with a per-run CA)\n"
    "      --resume          continue from the newest checkpoint under spec.checkpoint.path\n"
    "                        (step 0 when there is none)\n"
    "  stella validate JOB.yaml [--runtime PATH]\n"
    "      Checks the manifest; prints \"ok\" or every problem. With your own model\n"
    "      (spec.model.torchscript) or data (spec.dataset.format tokens|npy) it also opens them\n"
    "      through `stella-runtime --check-model` (libtorch lives there, not in this CLI).\n"
    "  stella tls JOB.yaml DIR\n"
    "      Writes a fresh job CA's gateway certificates to DIR/<cluster>/ (for --tls-dir of\n"
    "      stella-runtime when starting workers by hand; DIR must not exist).\n"
    "  stella bench [--quick] [--json FILE] [--plot FILE.png] [--scenario steady|fluctuating]\n"
    "               [--bandwidths 10,100,1000] [--job MANIFEST] ...\n"
    "      Stella vs real PyTorch DDP on shaped WAN links (stella bench --help for all flags).\n"
    "  stella --version\n"
    "  stella --help\n";

int UsageError(const std::string& message) {
  std::cerr << "stella: " << message << "\n" << kUsage;
  return kExitUsage;
}

struct RunArgs {
  std::string job_path;
  std::string json_path;
  std::string log_dir;
  std::string runtime_path;
  std::optional<double> timeout_seconds;
  bool no_tls = false;
  bool resume = false;
};

// One "run" flag with a value.
std::optional<std::string> SetRunFlag(const FlagArg& a, RunArgs* out) {
  if (a.value.empty()) return "run: flag '" + a.flag + "' needs a non-empty value";
  if (a.flag == "--json") {
    out->json_path = a.value;
  } else if (a.flag == "--log-dir") {
    out->log_dir = a.value;
  } else if (a.flag == "--runtime") {
    out->runtime_path = a.value;
  } else {  // --timeout
    char* end = nullptr;
    const double seconds = std::strtod(a.value.c_str(), &end);
    if (end == a.value.c_str() || *end != '\0' || !std::isfinite(seconds) || seconds <= 0) {
      return "run: --timeout must be a positive number of seconds, got '" + a.value + "'";
    }
    out->timeout_seconds = seconds;
  }
  return std::nullopt;
}

// Parses "run" arguments; returns an error message for a usage error.
std::optional<std::string> ParseRunArgs(const std::vector<std::string>& args, RunArgs* out) {
  StatusOr<std::vector<FlagArg>> parsed =
      SplitFlags(args, {"--json", "--log-dir", "--runtime", "--timeout"}, {"--no-tls", "--resume"});
  if (!parsed.ok()) return "run: " + parsed.status().message();
  for (const FlagArg& a : *parsed) {
    if (a.flag.empty()) {
      if (!out->job_path.empty()) return "run: unexpected argument '" + a.value + "' (one JOB.yaml expected)";
      out->job_path = a.value;
    } else if (a.flag == "--no-tls") {
      out->no_tls = true;
    } else if (a.flag == "--resume") {
      out->resume = true;
    } else if (std::optional<std::string> error = SetRunFlag(a, out)) {
      return error;
    }
  }
  if (out->job_path.empty()) return "run: missing JOB.yaml";
  return std::nullopt;
}

// The folder holding this executable ("." if /proc/self/exe is unreadable).
std::string ExecutableDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string self(buf, static_cast<size_t>(n));
  size_t slash = self.rfind('/');
  return slash == std::string::npos ? std::string(".") : self.substr(0, slash);
}

std::string DefaultRuntimePath() { return ExecutableDir() + "/stella-runtime"; }

Status CheckRuntime(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return NotFoundError("runtime binary " + path +
                         " does not exist; build the stella-runtime target or pass --runtime PATH");
  }
  if (!S_ISREG(st.st_mode) || access(path.c_str(), X_OK) != 0) {
    return FailedPreconditionError("runtime binary " + path + " is not an executable file");
  }
  return Status::Ok();
}

Status CheckDataset(const spec::DatasetSpec& dataset) {
  if (dataset.name != "fashion-mnist") return Status::Ok();
  std::string missing;
  for (const char* file : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"}) {
    std::string path = dataset.path + "/" + file;
    if (access(path.c_str(), R_OK) != 0) missing += "\n  " + path;
  }
  if (missing.empty()) return Status::Ok();
  return NotFoundError("dataset fashion-mnist is missing files:" + missing +
                       "\ninstall the Debian package dataset-fashion-mnist (make setup)");
}

// The user's own model and data need libtorch and the data readers to check:
// stella-runtime --check-model does it (its stderr reaches the user as is).
Status CheckOwnModelAndData(const spec::StellaJob& job, const std::string& job_path, const std::string& runtime) {
  if (job.spec.model.torchscript.empty() && job.spec.dataset.format == spec::DatasetFormat::kIdx) {
    return Status::Ok();
  }
  if (Status s = CheckRuntime(runtime); !s.ok()) {
    return s.WithContext("checking spec.model.torchscript / spec.dataset needs stella-runtime");
  }
  std::vector<std::string> args = {runtime, "--check-model", job_path};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  posix_spawn_file_actions_t quiet;  // its "ok" is ours to print; errors go to stderr
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, runtime.c_str(), &quiet, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&quiet);
  if (err != 0) return ErrnoError("spawn " + runtime, err);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  return InvalidArgumentError(job_path + ": the model or data check failed (above)");
}

std::string ShortNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

std::string WanText(const spec::WanSpec& wan) {
  std::string bandwidth =
      wan.bandwidth_mbps > 0 ? ShortNumber(wan.bandwidth_mbps) + " Mbit/s" : std::string("unshaped");
  return "WAN " + bandwidth + ", " + ShortNumber(wan.latency_ms) + " ms latency";
}

void PrintBanner(const spec::StellaJob& job, const LaunchPlan& plan, const std::string& log_dir,
                 const EphemeralTls* tls) {
  const auto& clusters = job.spec.clusters;
  std::cout << "stella run: job " << job.metadata.name << ", mode " << spec::ToString(job.spec.sync.mode) << ", "
            << job.TotalWorkers() << " worker(s) in " << clusters.size() << " cluster(s)\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    std::cout << "  cluster " << clusters[c].name << ": " << clusters[c].workers << " worker(s), "
              << WanText(clusters[c].wan) << "; store port " << plan.store_ports[c] << ", gateway port "
              << plan.wan_ports[c] << "\n";
  }
  if (job.spec.metrics.port > 0) {
    std::cout << "  metrics:\n";
    size_t width = 0;
    for (const WorkerLaunch& w : plan.workers) width = std::max(width, w.name.size());
    for (const WorkerLaunch& w : plan.workers) {
      std::cout << "    " << w.name << std::string(width - w.name.size() + 2, ' ')
                << "http://127.0.0.1:" << w.metrics_port << "/metrics\n";
    }
  } else {
    std::cout << "  metrics: off (spec.metrics.port is 0)\n";
  }
  if (clusters.size() > 1) {
    if (tls != nullptr) {
      std::cout << "  WAN links: mutual TLS 1.3, per-run job CA (certificates in " << tls->root() << ")\n";
    } else {
      std::cout << "  WAN links: plain TCP, unencrypted (--no-tls)\n";
    }
  }
  std::cout << "  logs: " << log_dir << "\n";
  std::cout.flush();
}

// Installs SIGINT/SIGTERM handlers that write to a self-pipe; returns its
// read end (for SupervisorOptions::stop_fd).
StatusOr<int> InstallStopSignals() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoError("pipe for signals", errno);
  g_signal_pipe_write_fd = fds[1];
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM}) {
    if (sigaction(sig, &sa, nullptr) != 0) return ErrnoError("sigaction", errno);
  }
  return fds[0];
}

int Validate(const std::vector<std::string>& raw) {
  std::vector<std::string> args;
  std::string runtime = DefaultRuntimePath();
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == "--runtime" && i + 1 < raw.size()) {
      runtime = raw[++i];
    } else if (raw[i].size() > 1 && raw[i][0] == '-') {
      return UsageError("validate: unknown flag '" + raw[i] + "'");
    } else {
      args.push_back(raw[i]);
    }
  }
  if (args.empty()) return UsageError("validate: missing JOB.yaml");
  if (args.size() > 1) return UsageError("validate: unexpected argument '" + args[1] + "' (one JOB.yaml expected)");
  StatusOr<spec::StellaJob> job = spec::LoadStellaJobFile(args[0]);
  if (!job.ok()) {
    std::cerr << job.status().message() << "\n";
    return kExitFailure;
  }
  if (Status s = CheckOwnModelAndData(*job, args[0], runtime); !s.ok()) {
    std::cerr << "stella: validate: " << s.message() << "\n";
    return kExitFailure;
  }
  std::cout << "ok\n";
  return kExitOk;
}

// `stella tls JOB.yaml DIR`: the TLS directories `stella run` makes per run,
// for workers started another way (stella bench with kernel shaping).
int Tls(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a.size() > 1 && a[0] == '-') return UsageError("tls: unknown flag '" + a + "'");
  }
  if (args.size() != 2) return UsageError("tls: expected JOB.yaml and DIR");
  StatusOr<spec::StellaJob> job = spec::LoadStellaJobFile(args[0]);
  if (!job.ok()) {
    std::cerr << job.status().message() << "\n";
    return kExitFailure;
  }
  // mkdir fails if DIR exists: never mix two CAs' files or reuse old keys.
  if (mkdir(args[1].c_str(), 0700) != 0) {
    std::cerr << "stella: tls: cannot create " << args[1] << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  StatusOr<std::vector<std::string>> dirs = WriteJobTls(*job, args[1]);
  if (!dirs.ok()) {
    std::cerr << "stella: tls: " << dirs.status().message() << "\n";
    return kExitFailure;
  }
  for (const std::string& d : *dirs) std::cout << d << "\n";
  return kExitOk;
}

constexpr char kBenchPython[] = "/usr/bin/python3";

// `stella bench`: the harness is Python (it drives real PyTorch DDP), so this
// only finds bench/stella_bench.py and execs the interpreter on it, passing
// every argument through plus --stella-bin (where stella-runtime lives).
// Lookup order: $STELLA_BENCH_SCRIPT, the source tree next to a build tree
// (<exe_dir>/../../bench), an install tree (<exe_dir>/../share/stella/bench).
int Bench(const std::vector<std::string>& args) {
  const std::string exe_dir = ExecutableDir();
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("STELLA_BENCH_SCRIPT"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  } else {
    candidates.push_back(exe_dir + "/../../bench/stella_bench.py");
    candidates.push_back(exe_dir + "/../share/stella/bench/stella_bench.py");
  }
  std::string script;
  for (const std::string& c : candidates) {
    if (access(c.c_str(), R_OK) == 0) {
      script = c;
      break;
    }
  }
  if (script.empty()) {
    std::string tried;
    for (const std::string& c : candidates) tried += "\n  " + c;
    std::cerr << "stella: bench: the harness script was not found; looked at:" << tried
              << "\nset STELLA_BENCH_SCRIPT to bench/stella_bench.py of a Stella checkout\n";
    return kExitFailure;
  }
  if (access(kBenchPython, X_OK) != 0) {
    std::cerr << "stella: bench: " << kBenchPython
              << " is missing; install python3, python3-torch and python3-yaml (make setup)\n";
    return kExitFailure;
  }
  std::vector<std::string> argv_strings = {kBenchPython, script};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  argv_strings.push_back("--stella-bin");
  argv_strings.push_back(exe_dir);
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  execv(kBenchPython, argv.data());
  std::cerr << "stella: bench: exec " << kBenchPython << ": " << std::strerror(errno) << "\n";
  return kExitFailure;
}

int Run(const std::vector<std::string>& raw_args) {
  RunArgs args;
  if (auto usage = ParseRunArgs(raw_args, &args)) return UsageError(*usage);

  StatusOr<spec::StellaJob> loaded = spec::LoadStellaJobFile(args.job_path);
  if (!loaded.ok()) {
    std::cerr << loaded.status().message() << "\n";
    return kExitFailure;
  }
  const spec::StellaJob& job = *loaded;
  if (args.runtime_path.empty()) args.runtime_path = DefaultRuntimePath();
  if (args.log_dir.empty()) {
    args.log_dir = "/tmp/stella-" + job.metadata.name + "-" + std::to_string(getpid());
  }
  for (const Status& s : {CheckRuntime(args.runtime_path), CheckDataset(job.spec.dataset)}) {
    if (!s.ok()) {
      std::cerr << "stella: " << s.message() << "\n";
      return kExitFailure;
    }
  }
  // A bad model or data file is refused here, not by every worker at once.
  if (Status s = CheckOwnModelAndData(job, args.job_path, args.runtime_path); !s.ok()) {
    std::cerr << "stella: " << s.message() << "\n";
    return kExitFailure;
  }

  // Per-run TLS material, removed when Run returns (every path below,
  // Ctrl-C included: the signal handler only writes to the stop pipe).
  std::unique_ptr<EphemeralTls> tls;
  if (!args.no_tls && job.spec.clusters.size() > 1) {
    StatusOr<std::unique_ptr<EphemeralTls>> created = EphemeralTls::Create(job);
    if (!created.ok()) {
      std::cerr << "stella: " << created.status().message() << "\n";
      return kExitFailure;
    }
    tls = std::move(created).value();
  }

  if (args.resume && job.spec.checkpoint.path.empty()) {
    std::cerr << "stella: run --resume: " << args.job_path
              << " has no spec.checkpoint.path to resume from; set spec.checkpoint.path (and intervalSteps)\n";
    return kExitFailure;
  }

  StatusOr<int> stop_fd = InstallStopSignals();
  if (!stop_fd.ok()) {
    std::cerr << "stella: " << stop_fd.status().message() << "\n";
    return kExitFailure;
  }

  const bool tty = isatty(STDOUT_FILENO) == 1;
  winsize window{};
  const int columns = tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0 ? window.ws_col : 0;
  ProgressView progress(std::cout, tty, columns);
  RestartTracker restarts(job);
  const Clock& clock = SystemClock::Get();
  const Clock::TimePoint run_start = clock.Now();
  Clock::TimePoint deadline = Clock::TimePoint::max();
  if (args.timeout_seconds) {
    deadline =
        run_start + std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(*args.timeout_seconds));
  }

  // One attempt per loop: a fresh launch plan (fresh ports) and supervisor;
  // a restart resumes every worker from the newest checkpoint they all hold.
  bool resume = args.resume;
  SummaryCollector collector;
  for (int attempt = 0;; ++attempt) {
    const std::string log_dir = attempt == 0 ? args.log_dir : args.log_dir + "/restart-" + std::to_string(attempt);
    LaunchPlanOptions plan_options;
    plan_options.job_path = args.job_path;
    plan_options.runtime_path = args.runtime_path;
    plan_options.resume = resume;
    if (tls) plan_options.gateway_tls_dirs = tls->cluster_dirs();
    StatusOr<LaunchPlan> plan = BuildLaunchPlan(job, plan_options);
    if (!plan.ok()) {
      progress.Finish();
      std::cerr << "stella: " << plan.status().message() << "\n";
      return kExitFailure;
    }
    if (attempt == 0) PrintBanner(job, *plan, log_dir, tls.get());

    collector = SummaryCollector();  // only the successful attempt's results count
    restarts.BeginAttempt();
    SupervisorOptions sup_options;
    sup_options.log_dir = log_dir;
    sup_options.stop_fd = *stop_fd;
    sup_options.noun = "worker";
    sup_options.on_event = [&](const std::string& name, const nlohmann::json& event) {
      progress.OnEvent(name, event);
      collector.OnEvent(event);
      restarts.OnEvent(event);
    };
    sup_options.on_warning = [&](const std::string& warning) { progress.PrintLine("warning: " + warning); };
    StatusOr<std::unique_ptr<Supervisor>> supervisor = Supervisor::Create(sup_options, plan->processes);
    if (!supervisor.ok()) {
      progress.Finish();
      std::cerr << "stella: " << supervisor.status().message() << "\n";
      return kExitFailure;
    }
    Status result = (*supervisor)->Run(deadline);
    if (result.ok()) break;
    if (result.code() == StatusCode::kCancelled) {
      progress.Finish();
      std::cerr << "stella: " << result.message() << "; logs in " << args.log_dir << "\n";
      return kExitInterrupted;
    }
    RestartTracker::Verdict verdict = restarts.OnFailure(result);
    if (!verdict.restart) {
      progress.Finish();
      std::cerr << "stella: run failed: " << verdict.message << "\n";
      return kExitFailure;
    }
    progress.PrintLine(verdict.message + "; logs in " + args.log_dir + "/restart-" + std::to_string(attempt + 1));
    resume = true;
  }
  progress.Finish();

  JobInfo info;
  info.job = job.metadata.name;
  info.mode = spec::ToString(job.spec.sync.mode);
  info.clusters = static_cast<int>(job.spec.clusters.size());
  info.workers = job.TotalWorkers();
  info.log_dir = args.log_dir;
  StatusOr<RunSummary> summary = collector.Summarize(info);
  if (!summary.ok()) {
    std::cerr << "stella: every worker exited 0, but " << summary.status().message() << "\n";
    return kExitFailure;
  }
  summary->total_wall_seconds = SecondsBetween(run_start, clock.Now());
  summary->restarts = restarts.records();
  std::cout << "\nsummary\n" << RenderSummaryTable(*summary);
  if (!args.json_path.empty()) {
    Status written = WriteJsonAtomically(args.json_path, SummaryToJson(*summary));
    if (!written.ok()) {
      std::cerr << "stella: " << written.message() << "\n";
      return kExitFailure;
    }
    std::cout << "summary written to " << args.json_path << "\n";
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return UsageError("missing command");
  const std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "--version" || command == "version") {
    std::cout << "stella " << STELLA_VERSION << "\n";
    return kExitOk;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (command == "run") return Run(rest);
  if (command == "validate") return Validate(rest);
  if (command == "bench") return Bench(rest);
  if (command == "tls") return Tls(rest);
  if (command.size() > 1 && command[0] == '-') return UsageError("unknown flag '" + command + "'");
  return UsageError("unknown command '" + command + "'");
}

}  // namespace
}  // namespace stella::cli

int main(int argc, char** argv) { return stella::cli::Main(argc, argv); }
