#include "operator/controller/controller.h"

#include <set>

#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;

Controller::Controller(kube::Api* hub, ControllerOptions options, OperatorMetrics* metrics, Logger* log,
                       RuntimeScraper* runtime)
    : hub_(hub), options_(std::move(options)), metrics_(metrics), log_(log) {
  auto queue = kube::WorkQueue::Create();
  STELLA_CHECK(queue.ok());  // default options are valid
  queue_ = std::move(queue).value();
  auto enqueue_job = [this](kube::EventType, const json& obj) {
    Enqueue(JobKey(kube::NamespaceOf(obj), kube::NameOf(obj)));
  };
  if (options_.namespaces.empty()) options_.namespaces.push_back("");
  for (const auto& ns : options_.namespaces) {
    kube::InformerOptions io;
    // managedFields are large and never read; a PUT without them leaves them as they are.
    io.transform = [](json* job) {
      if (job->contains("metadata")) (*job)["metadata"].erase("managedFields");
    };
    jobs_.push_back(std::make_unique<kube::Informer>(hub_, JobsPath(ns), "", io));
    jobs_.back()->AddHandler(enqueue_job);
  }
  clusters_ = std::make_unique<ClusterSet>(
      hub_, options_.origin, log_, [this](const json& obj) { OnChildEvent(obj); },
      [this](const std::string& cluster, const std::string& verb, int code) {
        metrics_->ApiRequest(cluster, verb, code);
      });
  ReconcileDeps deps;
  deps.hub = hub_;
  deps.members = clusters_.get();
  deps.runtime = runtime;
  deps.log = log_;
  deps.options.origin = options_.origin;
  deps.options.default_image = options_.default_image;
  deps.options.unreachable_retry = options_.unreachable_retry;
  deps.options.runtime_poll = options_.runtime_poll;
  deps.options.runtime_metrics_port = options_.runtime_metrics_port;
  deps.get_job = [this](const std::string& ns, const std::string& name) { return CachedJob(ns, name); };
  reconciler_ = std::make_unique<Reconciler>(std::move(deps));
}

std::optional<json> Controller::CachedJob(const std::string& ns, const std::string& name) const {
  for (const auto& inf : jobs_) {
    if (auto cached = inf->Get(ns, name)) return cached;
  }
  return std::nullopt;
}

StatusOr<ReconcileResult> Controller::Reconcile(const std::string& key) { return reconciler_->Reconcile(key); }

Controller::~Controller() { Stop(); }

void Controller::Start() {
  if (started_.exchange(true)) return;
  clusters_->Start();
  for (auto& inf : jobs_) inf->Start();
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  sweeper_ = std::thread([this] { SweepLoop(); });
}

void Controller::Stop() {
  {
    MutexLock lock(&sweep_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  sweep_cv_.SignalAll();
  queue_->ShutDown();  // workers finish their current key, then Get() returns false
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (sweeper_.joinable()) sweeper_.join();
  for (auto& inf : jobs_) inf->Stop();
  clusters_->Stop();
}

bool Controller::Ready() const {
  for (const auto& inf : jobs_) {
    if (!inf->HasSynced()) return false;
  }
  return true;
}

void Controller::Enqueue(const std::string& key) {
  queue_->Add(key);
  metrics_->QueueDepth(static_cast<int>(queue_->Len()));
}

void Controller::OnChildEvent(const json& obj) {
  std::string ns = Label(obj, kLabelJobNamespace), name = Label(obj, kLabelJobName);
  if (!ns.empty() && !name.empty()) Enqueue(JobKey(ns, name));
}

void Controller::WorkerLoop() {
  while (std::optional<std::string> next = queue_->Get()) {
    const std::string& key = *next;
    auto t0 = std::chrono::steady_clock::now();
    auto result = Reconcile(key);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!result.ok()) {
      bool conflict = result.status().code() == StatusCode::kAborted;
      metrics_->Reconciled(conflict ? "conflict" : "error", secs);
      if (conflict)
        log_->Debug("reconcile " + key + ": " + result.status().message());
      else
        log_->Warn("reconcile " + key + " failed: " + result.status().ToString());
      queue_->AddRateLimited(key);
    } else if (result->requeue_after.count() > 0) {
      metrics_->Reconciled("requeue", secs);
      queue_->Forget(key);
      queue_->AddAfter(key, result->requeue_after);
    } else {
      metrics_->Reconciled("success", secs);
      queue_->Forget(key);
    }
    queue_->Done(key);
    metrics_->QueueDepth(static_cast<int>(queue_->Len()));
  }
}

void Controller::SweepLoop() {
  // Held except around a sweep (Lock/Unlock, as the unique_lock was).
  sweep_mu_.Lock();
  while (!stopping_) {
    // wait_for(sweep_interval) with the predicate stopping_.
    const auto deadline = std::chrono::steady_clock::now() + options_.sweep_interval;
    while (!stopping_) {
      if (!sweep_cv_.WaitUntil(&sweep_mu_, deadline)) break;
    }
    if (stopping_) break;
    sweep_mu_.Unlock();
    clusters_->Refresh();
    SweepOrphans();
    UpdatePhaseGauge();
    sweep_mu_.Lock();
  }
  sweep_mu_.Unlock();
}

void Controller::SweepOrphans() {
  if (!Ready()) return;  // an unsynced cache would make every child look orphaned
  std::set<std::string> live;
  for (auto& inf : jobs_) {
    for (const auto& j : inf->List()) live.insert(j.value("/metadata/uid"_json_pointer, std::string()));
  }
  for (Member* m : clusters_->All()) {
    if (!m->Synced()) continue;
    for (auto* inf : {&m->pods(), &m->services()}) {
      const bool pods = inf == &m->pods();
      for (const auto& child : inf->List()) {
        if (live.count(Label(child, kLabelJobUid)) || Terminating(child)) continue;
        const std::string ns = child.value("/metadata/namespace"_json_pointer, std::string());
        auto r =
            kube::CheckResponse(m->api()->Delete(kube::ResourcePath("v1", pods ? "pods" : "services", ns, Name(child))),
                                "sweep: deleting orphan " + ns + "/" + Name(child) + " in " + m->id(), {404});
        if (!r.ok()) {
          log_->Debug(r.status().ToString());  // the next sweep tries again
        } else {
          log_->Info("sweep: deleted orphan " + std::string(pods ? "pod " : "service ") + ns + "/" + Name(child) +
                     " in " + m->id() + " (job uid " + Label(child, kLabelJobUid) + " no longer exists)");
        }
      }
    }
  }
}

void Controller::UpdatePhaseGauge() {
  std::map<std::string, int> by_phase;
  for (const char* p : {kPhasePending, kPhaseCreated, kPhaseRunning, kPhaseSucceeded, kPhaseFailed, kPhaseSuspended}) {
    by_phase[p] = 0;
  }
  for (auto& inf : jobs_) {
    for (const auto& j : inf->List()) {
      const std::string phase = JobStatusFromJson(j.value("status", json::object())).phase;
      ++by_phase[phase.empty() ? kPhasePending : phase];
    }
  }
  for (const auto& [phase, n] : by_phase) metrics_->JobsInPhase(phase, n);
  for (Member* m : clusters_->All()) metrics_->ClusterConnected(m->id(), m->Synced() && m->Healthy());
}

}  // namespace stella::op
