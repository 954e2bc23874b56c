// stella-runtime: one worker process of a StellaJob.
//
//   stella-runtime --job JOB.yaml --cluster-index C --local-rank R
//                  [--store-port P] [--store-host H] [--bind-host H]
//                  [--wan-ports p0,p1,...] [--wan-addresses h0:p0,h1:p1,...]
//                  [--metrics-port M] [--metrics-bind A] [--threads T] [--device auto|cpu|cuda]
//                  [--tls-dir DIR] [--resume] [--wan-link-timeout-ms MS] [--wan-round-timeout-ms MS]
//                  [--progress-every N]
//   stella-runtime --check-model JOB.yaml
//
// --check-model opens the job's data and (spec.model.torchscript) its model
// with this binary's libtorch, runs one forward on a dummy batch of the
// data's shape, prints "ok" or the problem, and exits 0 or 1: `stella
// validate` and `stella run` call it so that a bad file is refused before
// any worker starts, without libtorch in the CLI.
//
// The `stella` CLI starts one per worker on a laptop; the operator starts one
// per pod. --tls-dir DIR (ca.crt, tls.crt, tls.key; src/security/certs.h)
// makes every WAN link of a gateway mutual TLS; without it they are plain
// TCP. SIGINT/SIGTERM stop training at the next step boundary (all
// workers agree on the step; with checkpointing a checkpoint of that step is
// written), then the process exits 0. --resume continues from the newest
// checkpoint every worker holds (spec.checkpoint.path), or starts at step 0
// when there is none.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/worker/check_job.h"
#include "runtime/worker/events.h"
#include "runtime/worker/worker.h"
#include "src/base/flags.h"
#include "src/spec/stella_job.h"

namespace {

constexpr char kUsage[] =
    "usage: stella-runtime --job FILE|env:VAR --cluster-index C --local-rank R [--store-host H] [--store-port P]\n"
    "       [--bind-host H] [--wan-ports p0,p1,...] [--wan-addresses h0:p0,...] [--metrics-port M]\n"
    "       [--metrics-bind ADDR] [--threads T] [--device auto|cpu|cuda] [--dump-parameters FILE] [--resume]\n"
    "       [--wan-link-timeout-ms MS] [--wan-round-timeout-ms MS] [--progress-every N]\n"
    "       stella-runtime --check-model JOB.yaml   (check the job's data and TorchScript model, then exit)\n"
    "       [--tls-dir DIR]   (ca.crt, tls.crt, tls.key: mutual TLS on every WAN link)\n";

constexpr char kProgram[] = "stella-runtime";

bool ParseInt(const std::string& flag, const std::string& text, int lo, int hi, int* out) {
  return stella::ParseIntFlag(kProgram, flag, text, lo, hi, out);
}

int CheckModel(const std::string& job_path) {
  auto job = stella::spec::LoadStellaJobFile(job_path);
  stella::Status st = job.ok() ? stella::worker::CheckJobInputs(*job) : job.status();
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  std::printf("ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string job_path, wan_ports, wan_addresses;
  stella::worker::WorkerOptions o;
  bool have_cluster = false, have_rank = false;
  auto args = stella::SplitFlags(
      {argv + 1, argv + argc},
      {"--job", "--cluster-index", "--local-rank", "--store-host", "--store-port", "--bind-host", "--wan-ports",
       "--wan-addresses", "--metrics-port", "--metrics-bind", "--threads", "--device", "--dump-parameters", "--tls-dir",
       "--wan-link-timeout-ms", "--wan-round-timeout-ms", "--progress-every", "--check-model"},
      {"--help", "-h", "--resume"});
  if (!args.ok()) {
    std::fprintf(stderr, "%s: %s\n%s", kProgram, args.status().message().c_str(), kUsage);
    return 2;
  }
  for (const stella::FlagArg& a : *args) {
    const std::string& flag = a.flag;
    const std::string& value = a.value;
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    bool ok = true;
    if (flag == "--check-model") return CheckModel(value);
    if (flag == "--job")
      job_path = value;
    else if (flag == "--cluster-index")
      ok = have_cluster = ParseInt(flag, value, 0, 1 << 20, &o.cluster_index);
    else if (flag == "--local-rank")
      ok = have_rank = ParseInt(flag, value, 0, 1 << 20, &o.local_rank);
    else if (flag == "--store-host")
      o.store_host = value;
    else if (flag == "--store-port")
      ok = ParseInt(flag, value, 0, 65535, &o.store_port);
    else if (flag == "--bind-host")
      o.bind_host = value;
    else if (flag == "--wan-ports")
      wan_ports = value;
    else if (flag == "--wan-addresses")
      wan_addresses = value;
    else if (flag == "--metrics-port")
      ok = ParseInt(flag, value, 0, 65535, &o.metrics_port);
    else if (flag == "--metrics-bind")
      o.metrics_bind = value;
    else if (flag == "--threads")
      ok = ParseInt(flag, value, 1, 256, &o.threads);
    else if (flag == "--device")
      o.device = value;
    else if (flag == "--dump-parameters")
      o.dump_parameters_path = value;
    else if (flag == "--tls-dir")
      o.tls_dir = value;
    else if (flag == "--progress-every")
      ok = ParseInt(flag, value, 1, 1 << 30, &o.progress_every);
    else if (flag == "--resume")
      o.resume = true;
    else if (flag == "--wan-link-timeout-ms" || flag == "--wan-round-timeout-ms") {
      int ms = 0;
      ok = ParseInt(flag, value, 10, 3600 * 1000, &ms);
      (flag == "--wan-link-timeout-ms" ? o.wan_link_timeout : o.wan_round_timeout) = std::chrono::milliseconds(ms);
    } else {
      std::fprintf(stderr, "%s: unexpected argument %s\n%s", kProgram, value.c_str(), kUsage);
      return 2;
    }
    if (!ok) return 2;
  }
  if (job_path.empty() || !have_cluster || !have_rank) {
    std::fprintf(stderr, "stella-runtime: --job, --cluster-index and --local-rank are required\n%s", kUsage);
    return 2;
  }
  for (const auto& p : stella::SplitCommas(wan_ports)) o.wan_addresses.push_back("127.0.0.1:" + p);
  for (const auto& a : stella::SplitCommas(wan_addresses)) o.wan_addresses.push_back(a);

  // "--job env:NAME" reads the manifest from an environment variable: the
  // operator hands it to pods that way (no ConfigMap per job).
  auto job = [&]() -> stella::StatusOr<stella::spec::StellaJob> {
    if (job_path.rfind("env:", 0) != 0) return stella::spec::LoadStellaJobFile(job_path);
    const char* text = std::getenv(job_path.substr(4).c_str());
    if (!text)
      return stella::NotFoundError("--job " + job_path + ": environment variable " + job_path.substr(4) +
                                   " is not set");
    auto parsed = stella::spec::ParseStellaJob(text);
    if (!parsed.ok()) return parsed.status().WithContext("--job " + job_path);
    return parsed;
  }();
  if (!job.ok()) {
    std::fprintf(stderr, "stella-runtime: %s\n", job.status().ToString().c_str());
    return 1;
  }
  o.job = std::move(job).value();

  // Signals are taken by one named thread through sigwait, so no handler
  // touches shared state; block them before any other thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGUSR1);  // used internally to end the signal thread
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto worker = stella::worker::Worker::Create(o);
  if (!worker.ok()) {
    std::fprintf(stderr, "stella-runtime: %s\n", worker.status().ToString().c_str());
    // Dump escapes quotes and newlines, and replaces invalid UTF-8.
    const std::string event =
        stella::worker::EventSink::Dump({{"event", "error"}, {"message", worker.status().ToString()}});
    std::printf("@stella %s\n", event.c_str());
    return 1;
  }
  stella::worker::Worker* w = worker->get();  // outlives the signal thread (joined below)
  std::thread signal_thread([&stop_signals, w] {
    pthread_setname_np(pthread_self(), "stella-signals");
    while (true) {
      int sig = 0;
      if (sigwait(&stop_signals, &sig) != 0 || sig == SIGUSR1) return;
      std::fprintf(stderr, "stella-runtime: signal %d, stopping at the next step boundary\n", sig);
      w->OnStopSignal(sig);
    }
  });
  stella::Status status = w->Run();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  if (!status.ok()) {
    std::fprintf(stderr, "stella-runtime: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
