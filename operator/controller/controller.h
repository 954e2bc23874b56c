// Controller: the StellaJob reconcile loop.
//
// Watches StellaJobs on the hub and the children it made in every member
// cluster; every event enqueues the owning job's key; worker threads take keys
// from a de-duplicating, rate-limited queue and run Reconcile, which is
// level-triggered: it reads the job and what exists now (from the caches),
// makes the members match, and writes the job's status through /status.
//
// One reconcile of a job:
//   deleted?      delete children in every member, then drop the finalizer
//   finished?     clean up pods of a failed job, honour ttlSecondsAfterFinished
//   members       connect (kubeconfig Secrets); unreachable ones -> condition,
//                 nothing is deleted, retried
//   suspended?    delete the pods, keep Services; resume recreates them
//   services      headless (rendezvous) + gateway per cluster
//   gateways      every cluster's WAN address decided and recorded in status
//                 before any worker starts (each worker gets all addresses)
//   pods          one per rank for the current attempt; a failed pod restarts
//                 the whole job (attempt + 1, --resume with checkpoints) up
//                 to backoffLimit, then Failed
//   status        per-cluster counts, phase, conditions, the runtime's step,
//                 throughput and tuner decision; an Event per transition
//
// Threads: the informers' threads, `workers` reconcile threads and one sweep
// thread (orphans in members, kubeconfig rotation), all owned and joined by
// Stop().
#ifndef STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_
#define STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/controller/cluster_set.h"
#include "operator/controller/log.h"
#include "operator/controller/operator_metrics.h"
#include "operator/kube/client.h"
#include "operator/kube/informer.h"
#include "operator/kube/workqueue.h"
#include "src/base/status.h"

namespace stella::op {

struct ControllerOptions {
  std::string origin = "hub";              // value of the stella.dev/origin label
  std::string default_image = "stella:0.1.0";
  std::vector<std::string> namespaces;     // watched; empty = all
  int workers = 4;
  std::chrono::milliseconds sweep_interval{60000};
  std::chrono::milliseconds unreachable_retry{5000};
  std::chrono::milliseconds runtime_poll{10000};  // scrape of the runtime's metrics while Running
  int runtime_metrics_port = 9400;
};

// The result of one reconcile: done, or come back after a delay.
struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};  // 0 = not needed
};

class Controller {
 public:
  // `hub`, `metrics` and `log` outlive the controller.
  Controller(kube::Client* hub, ControllerOptions options, OperatorMetrics* metrics, Logger* log);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Starts the caches, the workers and the sweep.
  void Start();
  // Stops taking work, lets in-flight reconciles finish, joins every thread.
  void Stop();
  // True once the hub caches have synced (for /readyz).
  bool Ready() const;

  // One reconcile pass of "namespace/name" (the workers' body; public for tests).
  StatusOr<ReconcileResult> Reconcile(const std::string& key);

 private:
  struct Observed;
  struct JobState;

  void Enqueue(const std::string& key);
  void OnChildEvent(const nlohmann::json& obj);
  void WorkerLoop();
  void SweepLoop();
  void SweepOrphans();

  StatusOr<ReconcileResult> Finalize(JobState& st);
  StatusOr<ReconcileResult> FinishedJob(JobState& st);
  Status EnsureServices(JobState& st, Observed& ob);
  Status DeletePods(JobState& st, Observed& ob, const std::string& why);
  // Makes every gateway's TLS Secret hold certificates of one job CA,
  // issuing a new CA when they are missing, disagree, or `force`.
  Status EnsureTlsSecrets(JobState& st, Observed& ob, bool force, bool* reissued);
  void Fail(JobState& st, Observed& ob, const std::string& reason, const std::string& message);
  void ScrapeRuntime(JobState& st, Observed& ob);
  Status WriteStatus(JobState& st);
  void Event(const JobState& st, const std::string& type, const std::string& reason, const std::string& message);
  void UpdatePhaseGauge();

  kube::Client* hub_;
  ControllerOptions options_;
  OperatorMetrics* metrics_;
  Logger* log_;
  std::vector<std::unique_ptr<kube::Informer>> jobs_;  // one per watched namespace (or one for all)
  std::unique_ptr<ClusterSet> clusters_;
  std::unique_ptr<kube::WorkQueue> queue_;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;
  std::atomic<bool> started_{false};
  std::mutex scrape_mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_scrape_;  // by job uid
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_
