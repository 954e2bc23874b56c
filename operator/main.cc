// stella-operator: reconciles StellaJobs on a hub cluster into worker pods in
// member clusters. See docs/operator.md.
//
//   stella-operator [--kubeconfig PATH] [--namespaces a,b] [--metrics-bind-address H:P]
//                   [--leader-elect true|false] [--leader-election-namespace NS]
//                   [--leader-election-id NAME] [--identity NAME] [--default-image IMAGE]
//                   [--log-level debug|info|warn|error] [--workers N] [--origin NAME]
//
// SIGTERM/SIGINT: stop taking work, finish in-flight reconciles, release the
// Lease (a standby takes over at once), exit 0. Losing the Lease exits 1 so
// the replica restarts clean, as controller-runtime managers do.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "operator/controller/controller.h"
#include "operator/controller/log.h"
#include "operator/controller/manager.h"
#include "operator/controller/operator_metrics.h"
#include "operator/controller/runtime_scraper.h"
#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/leader.h"
#include "src/base/flags.h"
#include "src/base/mutex.h"
#include "src/metrics/exposer.h"
#include "src/metrics/registry.h"

namespace {

constexpr char kUsage[] =
    "usage: stella-operator [--kubeconfig PATH] [--namespaces a,b] [--metrics-bind-address HOST:PORT]\n"
    "       [--leader-elect true|false] [--leader-election-namespace NS] [--leader-election-id NAME]\n"
    "       [--identity NAME] [--default-image IMAGE] [--log-level debug|info|warn|error] [--workers N]\n"
    "       [--origin NAME] [--sweep-interval-seconds S]\n";

struct Flags {
  std::string kubeconfig;
  std::vector<std::string> namespaces;
  std::string metrics_host = "0.0.0.0";
  int metrics_port = 8080;
  bool leader_elect = true;
  std::string lease_namespace;
  std::string lease_name = "stella-operator";
  std::string identity;
  std::string default_image = "stella:0.1.0";
  std::string log_level = "info";
  int workers = 4;
  std::string origin = "hub";
  int sweep_seconds = 60;
};

using stella::SplitCommas;

bool ParseIntFlag(const std::string& flag, const std::string& v, int lo, int hi, int* out) {
  return stella::ParseIntFlag("stella-operator", flag, v, lo, hi, out);
}

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// 0 = parsed, else the exit code.
int ParseFlags(int argc, char** argv, Flags* f) {
  // Both "--flag value" and "--flag=value" (the Helm chart's spelling).
  auto args =
      stella::SplitFlags({argv + 1, argv + argc},
                         {"--kubeconfig", "--namespaces", "--metrics-bind-address", "--leader-elect",
                          "--leader-election-namespace", "--leader-election-id", "--identity", "--default-image",
                          "--log-level", "--workers", "--origin", "--sweep-interval-seconds"},
                         {"--help", "-h"});
  if (!args.ok()) {
    std::fprintf(stderr, "stella-operator: %s\n%s", args.status().message().c_str(), kUsage);
    return 2;
  }
  for (const stella::FlagArg& a : *args) {
    const std::string& flag = a.flag;
    const std::string& v = a.value;
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return -1;
    }
    bool ok = true;
    if (flag == "--kubeconfig")
      f->kubeconfig = v;
    else if (flag == "--namespaces")
      f->namespaces = SplitCommas(v);
    else if (flag == "--metrics-bind-address") {
      size_t colon = v.rfind(':');
      ok = colon != std::string::npos && ParseIntFlag(flag + " port", v.substr(colon + 1), 0, 65535, &f->metrics_port);
      if (ok)
        f->metrics_host = colon == 0 ? "0.0.0.0" : v.substr(0, colon);
      else if (colon == std::string::npos)
        std::fprintf(stderr, "stella-operator: --metrics-bind-address must be HOST:PORT, got \"%s\"\n", v.c_str());
    } else if (flag == "--leader-elect") {
      ok = v == "true" || v == "false";
      f->leader_elect = v == "true";
      if (!ok) std::fprintf(stderr, "stella-operator: --leader-elect must be true or false, got \"%s\"\n", v.c_str());
    } else if (flag == "--leader-election-namespace")
      f->lease_namespace = v;
    else if (flag == "--leader-election-id")
      f->lease_name = v;
    else if (flag == "--identity")
      f->identity = v;
    else if (flag == "--default-image")
      f->default_image = v;
    else if (flag == "--log-level") {
      stella::op::LogLevel l;
      ok = stella::op::ParseLogLevel(v, &l);
      f->log_level = v;
      if (!ok)
        std::fprintf(stderr, "stella-operator: --log-level must be debug, info, warn or error, got \"%s\"\n",
                     v.c_str());
    } else if (flag == "--workers")
      ok = ParseIntFlag(flag, v, 1, 64, &f->workers);
    else if (flag == "--origin")
      f->origin = v;
    else if (flag == "--sweep-interval-seconds")
      ok = ParseIntFlag(flag, v, 1, 86400, &f->sweep_seconds);
    else {
      std::fprintf(stderr, "stella-operator: unexpected argument %s\n%s", v.c_str(), kUsage);
      return 2;
    }
    if (!ok) return 2;
  }
  if (f->lease_namespace.empty()) f->lease_namespace = Env("POD_NAMESPACE", "default");
  if (f->identity.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    f->identity = Env("POD_NAME", host) + "_" + std::to_string(getpid());
  }
  return 0;
}

stella::StatusOr<stella::kube::ClusterConfig> HubConfig(const Flags& f) {
  if (!f.kubeconfig.empty()) return stella::kube::LoadKubeconfigFile(f.kubeconfig);
  if (std::getenv("KUBERNETES_SERVICE_HOST")) return stella::kube::InClusterConfig();
  std::string path = Env("KUBECONFIG", Env("HOME", "") + "/.kube/config");
  return stella::kube::LoadKubeconfigFile(path);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace stella;
  // glibc gives every thread that allocates its own arena; with a dozen
  // client, informer and worker threads that fragmentation dominated the
  // resident size (measured in docs/benchmarks.md). Two arenas suffice.
  mallopt(M_ARENA_MAX, 2);
  Flags flags;
  if (int rc = ParseFlags(argc, argv, &flags); rc != 0) return rc < 0 ? 0 : rc;
  op::LogLevel level = op::LogLevel::kInfo;
  op::ParseLogLevel(flags.log_level, &level);
  op::Logger log(level);

  // Signals go to one thread through sigwait; block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto config = HubConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "stella-operator: hub cluster configuration: %s\n", config.status().ToString().c_str());
    return 1;
  }
  config->name = "hub";

  metrics::Registry registry;
  op::OperatorMetrics om(&registry);
  kube::ClientOptions co;
  co.on_request = [&om](const std::string& verb, int code) { om.ApiRequest("hub", verb, code); };
  auto hub = kube::Client::Create(*config, co);
  if (!hub.ok()) {
    std::fprintf(stderr, "stella-operator: hub client: %s\n", hub.status().ToString().c_str());
    return 1;
  }

  metrics::ExposerOptions eo;
  eo.bind_address = flags.metrics_host;
  eo.port = flags.metrics_port;
  auto exposer = metrics::Exposer::Create(eo, &registry);
  if (!exposer.ok()) {
    std::fprintf(stderr, "stella-operator: --metrics-bind-address %s:%d: %s\n", flags.metrics_host.c_str(),
                 flags.metrics_port, exposer.status().ToString().c_str());
    return 1;
  }

  op::ControllerOptions opts;
  opts.origin = flags.origin;
  opts.default_image = flags.default_image;
  opts.namespaces = flags.namespaces;
  opts.workers = flags.workers;
  opts.sweep_interval = std::chrono::seconds(flags.sweep_seconds);
  // Long-lived pieces, started together once this replica leads. The
  // scraper starts first and stops last: the controller's reconciles read it.
  op::RuntimeScraperOptions so;
  so.interval = opts.runtime_poll;
  op::RuntimeScraper scraper(so, &log);
  op::Controller controller(hub->get(), opts, &om, &log, &scraper);
  scraper.SetOnUpdate([&controller](const std::string& key) { controller.Enqueue(key); });
  op::Manager manager;
  manager.Add(&scraper);
  manager.Add(&controller);

  // exit_code: written by the signal thread or the elector's lost callback.
  // done and exit_code are under mu (locals cannot be GUARDED_BY).
  stella::Mutex mu;
  stella::CondVar cv;
  bool done = false;
  int exit_code = 0;
  auto finish = [&](int code) {
    stella::MutexLock lock(&mu);
    if (!done) exit_code = code;
    done = true;
    cv.SignalAll();
  };

  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    {
      stella::MutexLock lock(&mu);
      if (done) return;  // woken by main() at exit
    }
    log.Info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ", shutting down");
    finish(0);
  });

  std::unique_ptr<kube::LeaderElector> elector;
  if (flags.leader_elect) {
    kube::LeaderElectionOptions lo;
    lo.lease_namespace = flags.lease_namespace;
    lo.lease_name = flags.lease_name;
    lo.identity = flags.identity;
    lo.on_started_leading = [&] {
      log.Info("leader: acquired Lease " + flags.lease_namespace + "/" + flags.lease_name + " as " + flags.identity);
      om.Leader(true);
      manager.Start();
    };
    lo.on_stopped_leading = [&] {
      om.Leader(false);
      bool shutting_down;
      {
        stella::MutexLock lock(&mu);
        shutting_down = done;
      }
      if (shutting_down) return;  // Stop() released the Lease on purpose
      log.Error("leader: lost Lease " + flags.lease_namespace + "/" + flags.lease_name + "; exiting to restart clean");
      finish(1);
    };
    lo.on_new_leader = [&](const std::string& who) {
      if (who != flags.identity) log.Info("leader: Lease held by " + (who.empty() ? std::string("nobody") : who));
    };
    auto e = kube::LeaderElector::Create(*config, lo);
    if (!e.ok()) {
      std::fprintf(stderr, "stella-operator: leader election: %s\n", e.status().ToString().c_str());
      return 1;
    }
    elector = std::move(e).value();
    om.Leader(false);
    elector->Start();
    log.Info("waiting for Lease " + flags.lease_namespace + "/" + flags.lease_name + " as " + flags.identity);
  } else {
    om.Leader(true);
    manager.Start();
  }

  // Readiness: the hub caches of a leader have synced; a standby is ready
  // while it can reach the hub (it only waits for the Lease).
  {
    stella::MutexLock lock(&mu);
    while (!done) {
      (*exposer)->SetReady(elector && !elector->IsLeader() ? true : controller.Ready());
      cv.WaitFor(&mu, std::chrono::milliseconds(500));
    }
  }
  log.Info("stopping the controller");
  manager.Stop();
  if (elector) elector->Stop();  // releases the Lease when held
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  log.Info("stopped");
  return exit_code;
}
