// Controller: the StellaJob reconcile loop.
//
// Watches StellaJobs on the hub and the children it made in every member
// cluster; every event enqueues the owning job's key; worker threads take keys
// from a de-duplicating, rate-limited queue and run Reconcile, which is
// level-triggered: it reads the job and what exists now (from the caches),
// makes the members match, and writes the job's status through /status.
//
// One reconcile of a job is a fixed list of phases, each in its own file
// under reconcile/ (see reconcile/phases.h): finalizer, spec check, finished
// (TTL), observe members, suspend, deadline, services, gateways,
// restart/fail, TLS, pods, status. The Controller only wires them to the
// caches and the work queue (Reconciler runs them); the runtime's metrics are
// scraped by a separate RuntimeScraper runnable whose cache the status phase
// reads.
//
// Threads: the informers' threads, `workers` reconcile threads and one sweep
// thread (orphans in members, kubeconfig rotation), all owned and joined by
// Stop().
#ifndef STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_
#define STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/controller/cluster_set.h"
#include "operator/controller/log.h"
#include "operator/controller/manager.h"
#include "operator/controller/operator_metrics.h"
#include "operator/controller/reconcile/reconciler.h"
#include "operator/controller/runtime_scraper.h"
#include "operator/kube/client.h"
#include "operator/kube/informer.h"
#include "operator/kube/workqueue.h"
#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/base/thread_annotations.h"

namespace stella::op {

struct ControllerOptions {
  std::string origin = "hub";  // value of the stella.dev/origin label
  std::string default_image = "stella:0.1.0";
  std::vector<std::string> namespaces;  // watched; empty = all
  int workers = 4;
  std::chrono::milliseconds sweep_interval{60000};
  std::chrono::milliseconds unreachable_retry{5000};
  std::chrono::milliseconds runtime_poll{10000};  // requeue of a Running job for fresh runtime figures
  int runtime_metrics_port = 9400;
};

class Controller final : public Runnable {
 public:
  // `hub`, `metrics`, `log` and `runtime` (may be null: no runtime figures in
  // status) outlive the controller. `hub` serves the job caches (list +
  // watch) and every write to the hub; kube::Client in the binary,
  // kube::testing::FakeApi in tests.
  Controller(kube::Api* hub, ControllerOptions options, OperatorMetrics* metrics, Logger* log,
             RuntimeScraper* runtime = nullptr);
  ~Controller() override;
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Starts the caches, the workers and the sweep.
  void Start() override;
  // Stops taking work, lets in-flight reconciles finish, joins every thread.
  void Stop() override;
  std::string RunnableName() const override { return "controller"; }
  // True once the hub caches have synced (for /readyz).
  bool Ready() const;

  // One reconcile pass of "namespace/name" (the workers' body; public for tests).
  StatusOr<ReconcileResult> Reconcile(const std::string& key);

  // Queues "namespace/name" for a reconcile (e.g. new runtime figures).
  void Enqueue(const std::string& key);

 private:
  void OnChildEvent(const nlohmann::json& obj);
  void WorkerLoop();
  void SweepLoop();
  void SweepOrphans();
  void UpdatePhaseGauge();
  std::optional<nlohmann::json> CachedJob(const std::string& ns, const std::string& name) const;

  kube::Api* hub_;
  ControllerOptions options_;
  OperatorMetrics* metrics_;
  Logger* log_;
  std::vector<std::unique_ptr<kube::Informer>> jobs_;  // one per watched namespace (or one for all)
  std::unique_ptr<ClusterSet> clusters_;
  std::unique_ptr<Reconciler> reconciler_;  // after clusters_: points at it
  std::unique_ptr<kube::WorkQueue> queue_;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
  Mutex sweep_mu_;
  CondVar sweep_cv_;
  bool stopping_ GUARDED_BY(sweep_mu_) = false;
  std::atomic<bool> started_{false};
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_CONTROLLER_H_
