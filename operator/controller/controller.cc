#include "operator/controller/controller.h"

#include <algorithm>
#include <random>
#include <set>
#include <sstream>

#include "operator/controller/children.h"
#include "operator/controller/gateway.h"
#include "operator/controller/names.h"
#include "operator/controller/status.h"
#include "src/base/crc32c.h"
#include "src/security/certs.h"

namespace stella::op {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

std::string JobsPath(const std::string& ns, const std::string& name = "", const std::string& sub = "") {
  return kube::ResourcePath(kGroupVersion, kPlural, ns, name, sub);
}

std::string Label(const json& obj, const char* key) {
  const json labels = obj.value("/metadata/labels"_json_pointer, json::object());
  auto it = labels.find(key);
  return it != labels.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string Name(const json& obj) { return obj.value("/metadata/name"_json_pointer, std::string()); }

int Attempt(const json& pod) {
  const json ann = pod.value("/metadata/annotations"_json_pointer, json::object());
  auto it = ann.find(kAnnotationAttempt);
  if (it == ann.end() || !it->is_string()) return 0;
  return std::atoi(it->get<std::string>().c_str());
}

bool Terminating(const json& obj) { return obj.contains("metadata") && obj["metadata"].contains("deletionTimestamp"); }

std::string HttpError(const std::string& what, const kube::Response& r) {
  return what + ": HTTP " + std::to_string(r.code) + ": " + kube::ApiMessage(r);
}

// A conflict aborts the reconcile; it is retried against a fresh read.
Status ConflictError(const std::string& what) { return AbortedError(what + ": conflict, re-reading"); }

}  // namespace

struct Controller::JobState {
  std::string key, ns, name, uid;
  int64_t generation = 0;
  json obj;     // as last read or written
  json status;  // what this reconcile wants status to be
  spec::StellaJob job;
  std::time_t now = 0;
};

struct Controller::Observed {
  std::vector<Member*> members;                   // per cluster; nullptr when unusable
  std::vector<std::string> errors;                // per cluster; why unusable
  std::vector<std::vector<json>> pods, services;  // per cluster, this job's children
};

Controller::Controller(kube::Client* hub, ControllerOptions options, OperatorMetrics* metrics, Logger* log)
    : hub_(hub), options_(std::move(options)), metrics_(metrics), log_(log) {
  auto queue = kube::WorkQueue::Create();
  STELLA_CHECK(queue.ok());  // default options are valid
  queue_ = std::move(queue).value();
  auto enqueue_job = [this](kube::EventType, const json& obj) {
    Enqueue(JobKey(obj.value("/metadata/namespace"_json_pointer, std::string()), Name(obj)));
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
}

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
    std::lock_guard<std::mutex> lock(sweep_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  sweep_cv_.notify_all();
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
      if (conflict) log_->Debug("reconcile " + key + ": " + result.status().message());
      else log_->Warn("reconcile " + key + " failed: " + result.status().ToString());
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
  std::unique_lock<std::mutex> lock(sweep_mu_);
  while (!stopping_) {
    sweep_cv_.wait_for(lock, options_.sweep_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    clusters_->Refresh();
    SweepOrphans();
    UpdatePhaseGauge();
    lock.lock();
  }
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
        auto r = m->client()->Delete(kube::ResourcePath("v1", pods ? "pods" : "services", ns, Name(child)));
        if (r.ok() && (r->code < 300 || r->code == 404)) {
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
    for (const auto& j : inf->List()) ++by_phase[j.value("/status/phase"_json_pointer, std::string(kPhasePending))];
  }
  for (const auto& [phase, n] : by_phase) metrics_->JobsInPhase(phase, n);
  for (Member* m : clusters_->All()) metrics_->ClusterConnected(m->id(), m->Synced() && m->Healthy());
}

void Controller::Event(const JobState& st, const std::string& type, const std::string& reason,
                       const std::string& message) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string suffix;
  for (int i = 0; i < 12; ++i) suffix += kHex[rd() % 16];
  const std::string now = Rfc3339(st.now);
  json ev = {{"apiVersion", "v1"},
             {"kind", "Event"},
             {"metadata", {{"name", st.name + "." + suffix}, {"namespace", st.ns}}},
             {"involvedObject",
              {{"apiVersion", kGroupVersion}, {"kind", spec::kKind}, {"namespace", st.ns}, {"name", st.name},
               {"uid", st.uid}}},
             {"type", type},
             {"reason", reason},
             {"message", message},
             {"source", {{"component", "stella-operator"}}},
             {"firstTimestamp", now},
             {"lastTimestamp", now},
             {"count", 1}};
  auto r = hub_->Create(kube::ResourcePath("v1", "events", st.ns), ev);
  if (!r.ok() || r->code >= 300) {
    log_->Debug("event " + reason + " for " + st.key + " not recorded: " +
                (r.ok() ? HttpError("create event", *r) : r.status().ToString()));
  }
  log_->Info("job " + st.key + ": " + reason + ": " + message);
}

Status Controller::WriteStatus(JobState& st) {
  json current = st.obj.value("status", json::object());
  st.status["observedGeneration"] = st.generation;
  if (current == st.status) return Status::Ok();
  json body = st.obj;
  body["status"] = st.status;
  auto r = hub_->Update(JobsPath(st.ns, st.name, "status"), body);
  if (!r.ok()) return r.status().WithContext("writing status of " + st.key);
  if (r->code == 409) return ConflictError("status of " + st.key);
  if (r->code == 404) return Status::Ok();  // deleted meanwhile
  if (r->code >= 300) return UnavailableError(HttpError("writing status of " + st.key, *r));
  st.obj = r->body;
  return Status::Ok();
}

StatusOr<ReconcileResult> Controller::Reconcile(const std::string& key) {
  JobState st;
  st.key = key;
  if (!SplitJobKey(key, &st.ns, &st.name)) return ReconcileResult{};
  std::optional<json> cached;
  for (auto& inf : jobs_) {
    if ((cached = inf->Get(st.ns, st.name))) break;
  }
  if (!cached) return ReconcileResult{};  // gone; its finalizer already ran
  st.obj = *cached;
  st.uid = st.obj.value("/metadata/uid"_json_pointer, std::string());
  st.generation = st.obj.value("/metadata/generation"_json_pointer, int64_t{0});
  st.status = st.obj.value("status", json::object());
  st.now = std::time(nullptr);

  auto parsed = JobFromApiObject(st.obj);
  Status names_ok = parsed.ok() ? CheckChildNames(*parsed) : parsed.status();

  if (Terminating(st.obj)) {
    if (!parsed.ok()) {
      // Nothing was ever created for an invalid job; let it go.
      st.job.metadata.name = st.name;
    } else {
      st.job = *parsed;
    }
    return Finalize(st);
  }

  // The finalizer goes on before any child exists anywhere.
  json finalizers = st.obj.value("/metadata/finalizers"_json_pointer, json::array());
  if (std::find(finalizers.begin(), finalizers.end(), kFinalizer) == finalizers.end()) {
    finalizers.push_back(kFinalizer);
    json patch = {{"metadata",
                   {{"finalizers", finalizers},
                    {"resourceVersion", st.obj.value("/metadata/resourceVersion"_json_pointer, std::string())}}}};
    auto r = hub_->Patch(JobsPath(st.ns, st.name), patch, kube::PatchType::Merge());
    if (!r.ok()) return r.status().WithContext("adding the finalizer to " + key);
    if (r->code == 409) return ConflictError("adding the finalizer to " + key);
    if (r->code == 404) return ReconcileResult{};
    if (r->code >= 300) return UnavailableError(HttpError("adding the finalizer to " + key, *r));
    st.obj = r->body;
  }

  if (!names_ok.ok()) {
    // The API server's schema accepted it, but it cannot run (e.g. names too
    // long for Services). Terminal: the user must fix the manifest.
    st.status["phase"] = kPhaseFailed;
    st.status["message"] = names_ok.message();
    bool flipped = SetCondition(&st.status, "Failed", true, "InvalidSpec", names_ok.message(), st.generation, st.now);
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
    if (flipped) Event(st, "Warning", "InvalidSpec", names_ok.message());
    return ReconcileResult{};
  }
  st.job = std::move(parsed).value();

  const std::string phase = st.status.value("phase", std::string());
  if (phase == kPhaseSucceeded || phase == kPhaseFailed) return FinishedJob(st);

  // Members: connect and read what exists.
  const auto& clusters = st.job.spec.clusters;
  const size_t nc = clusters.size();
  Observed ob;
  ob.members.assign(nc, nullptr);
  ob.errors.assign(nc, "");
  ob.pods.assign(nc, {});
  ob.services.assign(nc, {});
  std::vector<std::string> unreachable;
  bool waiting_sync = false;
  const std::string uid_selector = std::string(kLabelJobUid) + "=" + st.uid;
  for (size_t c = 0; c < nc; ++c) {
    auto m = clusters_->ForCluster(st.ns, clusters[c].kubeconfig_secret);
    if (!m.ok()) {
      ob.errors[c] = m.status().message();
    } else if (!(*m)->Synced()) {
      if ((*m)->LastError().empty()) waiting_sync = true;
      else ob.errors[c] = (*m)->LastError();
    } else if (!(*m)->Healthy()) {
      ob.errors[c] = (*m)->LastError().empty() ? "watch failing" : (*m)->LastError();
    } else {
      ob.members[c] = *m;
      // Two clusters of one job may share a member (e.g. both on the hub).
      const std::string selector = uid_selector + "," + kLabelCluster + "=" + clusters[c].name;
      ob.pods[c] = (*m)->pods().List(selector);
      ob.services[c] = (*m)->services().List(selector);
    }
    if (!ob.errors[c].empty()) unreachable.push_back(clusters[c].name + " (" + ob.errors[c] + ")");
  }

  // Per-cluster status entries, kept across reconciles (gateway decisions live there).
  json prev_clusters = st.status.value("clusters", json::array());
  json cl_status = json::array();
  for (size_t c = 0; c < nc; ++c) {
    json entry = {{"name", clusters[c].name}, {"workers", clusters[c].workers}};
    for (const auto& p : prev_clusters) {
      if (p.value("name", "") == clusters[c].name) {
        for (const char* f : {"gatewayAddress", "gatewayNode"}) {
          if (p.contains(f)) entry[f] = p[f];
        }
      }
    }
    entry["reachable"] = ob.errors[c].empty();
    if (!ob.errors[c].empty()) entry["message"] = ob.errors[c];
    cl_status.push_back(entry);
  }
  st.status["clusters"] = cl_status;

  std::string unreachable_msg;
  for (size_t i = 0; i < unreachable.size(); ++i) unreachable_msg += (i ? "; " : "") + unreachable[i];
  bool flipped = SetCondition(&st.status, "ClusterUnreachable", !unreachable.empty(),
                              unreachable.empty() ? "AllClustersReachable" : "ClusterUnreachable",
                              unreachable.empty() ? "every member cluster answers" : unreachable_msg, st.generation,
                              st.now);
  if (!unreachable.empty() || waiting_sync) {
    // Nothing is created or deleted on a partial view: a member that cannot be
    // seen may still run workers.
    if (!unreachable.empty()) st.status["message"] = "member cluster unreachable: " + unreachable_msg;
    if (st.status.value("phase", "").empty()) st.status["phase"] = kPhasePending;
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
    if (flipped && !unreachable.empty()) Event(st, "Warning", "ClusterUnreachable", unreachable_msg);
    return ReconcileResult{waiting_sync && unreachable.empty() ? milliseconds(500) : options_.unreachable_retry};
  }
  if (flipped && ConditionTrue(st.obj.value("status", json::object()), "ClusterUnreachable")) {
    Event(st, "Normal", "ClusterReachable", "every member cluster answers again");
  }
  if (flipped) st.status.erase("message");

  // Suspend: pods go, Services stay; resume recreates the pods.
  if (st.job.spec.run_policy.suspend) {
    STELLA_RETURN_IF_ERROR(DeletePods(st, ob, "suspended"));
    bool changed = SetCondition(&st.status, "Suspended", true, "Suspended", "spec.runPolicy.suspend is true",
                                st.generation, st.now);
    st.status["phase"] = kPhaseSuspended;
    st.status.erase("startTime");  // the deadline counts running time, as for batch Jobs
    SetCondition(&st.status, "Running", false, "Suspended", "the job is suspended", st.generation, st.now);
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
    if (changed) Event(st, "Normal", "Suspended", "workers deleted; the job resumes when spec.runPolicy.suspend is false");
    return ReconcileResult{};
  }
  if (ConditionTrue(st.status, "Suspended")) {
    SetCondition(&st.status, "Suspended", false, "Resumed", "spec.runPolicy.suspend is false", st.generation, st.now);
    st.status["phase"] = kPhaseCreated;
    Event(st, "Normal", "Resumed", "recreating the workers");
  }

  // Active deadline, counted from the first worker's creation.
  if (st.job.spec.run_policy.active_deadline_seconds && st.status.contains("startTime")) {
    auto start = ParseRfc3339(st.status.value("startTime", ""));
    if (start && st.now - *start >= *st.job.spec.run_policy.active_deadline_seconds) {
      Fail(st, ob, "DeadlineExceeded",
           "ran longer than spec.runPolicy.activeDeadlineSeconds=" +
               std::to_string(*st.job.spec.run_policy.active_deadline_seconds));
      STELLA_RETURN_IF_ERROR(WriteStatus(st));
      return ReconcileResult{};
    }
  }

  STELLA_RETURN_IF_ERROR(EnsureServices(st, ob));

  // Gateway addresses: decided once, recorded, then handed to every worker.
  std::vector<std::string> addresses(nc), nodes(nc);
  std::vector<std::string> waiting;
  bool decided_now = false;
  for (size_t c = 0; c < nc; ++c) {
    json& entry = st.status["clusters"][c];
    if (entry.contains("gatewayAddress")) {
      addresses[c] = entry.value("gatewayAddress", "");
      nodes[c] = entry.value("gatewayNode", "");
      continue;
    }
    if (nc == 1) continue;  // a single cluster has no WAN
    const json* svc = nullptr;
    for (const auto& s : ob.services[c]) {
      if (Name(s) == GatewayServiceName(st.name, clusters[c].name)) svc = &s;
    }
    GatewayResolution g = ResolveGateway(clusters[c], st.uid, svc, ob.members[c]->nodes().List());
    if (g.address.empty()) {
      waiting.push_back(g.waiting);
      continue;
    }
    addresses[c] = entry["gatewayAddress"] = g.address;
    if (!g.node.empty()) nodes[c] = entry["gatewayNode"] = g.node;
    decided_now = true;
  }
  if (!waiting.empty()) {
    std::string msg = "waiting for gateway addresses: ";
    for (size_t i = 0; i < waiting.size(); ++i) msg += (i ? "; " : "") + waiting[i];
    st.status["message"] = msg;
    if (st.status.value("phase", "").empty() || st.status.value("phase", "") == kPhasePending) {
      st.status["phase"] = kPhaseCreated;
    }
    bool first = SetCondition(&st.status, "Created", true, "ServicesCreated", msg, st.generation, st.now);
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
    if (first) Event(st, "Normal", "Created", "services created in " + std::to_string(nc) + " clusters; " + msg);
    return ReconcileResult{milliseconds(2000)};
  }
  if (decided_now) {
    // Record before any worker is created with them.
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
  }

  // Pods of the current attempt; a failure restarts every rank.
  const int attempt = st.status.value("restarts", 0);
  std::vector<std::vector<const json*>> current(nc);
  const json* first_failed = nullptr;
  for (size_t c = 0; c < nc; ++c) {
    for (const auto& p : ob.pods[c]) {
      if (Attempt(p) != attempt || Terminating(p)) continue;
      current[c].push_back(&p);
      if (!first_failed && p.value("/status/phase"_json_pointer, std::string()) == "Failed") first_failed = &p;
    }
  }
  if (first_failed) {
    const std::string why = DescribeFailure(*first_failed);
    const auto& rp = st.job.spec.run_policy;
    if (rp.restart_policy == spec::RestartPolicy::kNever || attempt >= rp.backoff_limit) {
      Fail(st, ob, rp.restart_policy == spec::RestartPolicy::kNever ? "PodFailed" : "BackoffLimitExceeded",
           why + (rp.restart_policy == spec::RestartPolicy::kNever
                      ? " (restartPolicy Never)"
                      : " (restarted " + std::to_string(attempt) + " times, backoffLimit " +
                            std::to_string(rp.backoff_limit) + ")"));
      STELLA_RETURN_IF_ERROR(WriteStatus(st));
      return ReconcileResult{};
    }
    // Count the restart first: a crash after this write cannot count it twice.
    st.status["restarts"] = attempt + 1;
    st.status["phase"] = kPhaseCreated;
    st.status["message"] = "restarting after " + why;
    SetCondition(&st.status, "Running", false, "Restarting", why, st.generation, st.now);
    STELLA_RETURN_IF_ERROR(WriteStatus(st));
    Event(st, "Warning", "Restarting",
          "attempt " + std::to_string(attempt + 1) + " of " + std::to_string(rp.backoff_limit) + " after " + why +
              (st.job.spec.checkpoint.path.empty() ? "" : "; resuming from the latest checkpoint"));
    STELLA_RETURN_IF_ERROR(DeletePods(st, ob, "restart"));
    return ReconcileResult{};
  }

  // Mutual TLS between gateways: one job CA per job; a change of the
  // rotate-certificates annotation reissues them and restarts the workers.
  const std::string rotate = st.obj.value("/metadata/annotations"_json_pointer, json::object())
                                 .value(kAnnotationRotate, std::string());
  const bool force_rotation = !rotate.empty() && rotate != st.status.value("certificatesRotation", std::string());
  int present = 0;
  for (size_t c = 0; c < nc; ++c) present += static_cast<int>(current[c].size());
  if (nc > 1 && (present < st.job.TotalWorkers() || force_rotation)) {
    bool reissued = false;
    STELLA_RETURN_IF_ERROR(EnsureTlsSecrets(st, ob, force_rotation, &reissued));
    if (force_rotation) {
      st.status["certificatesRotation"] = rotate;
      STELLA_RETURN_IF_ERROR(WriteStatus(st));
      Event(st, "Normal", "CertificatesRotated",
            "gateway certificates reissued from a new job CA (" + std::string(kAnnotationRotate) + "=" + rotate +
                "); restarting the workers");
      STELLA_RETURN_IF_ERROR(DeletePods(st, ob, "certificate rotation"));
      return ReconcileResult{};
    }
  }

  // Stale attempts go; missing ranks are created once their name is free.
  ChildContext ctx;
  ctx.job = &st.job;
  ctx.origin = options_.origin;
  ctx.default_image = options_.default_image;
  ctx.gateway_addresses = addresses;
  ctx.gateway_nodes = nodes;
  ctx.attempt = attempt;
  ctx.metrics_port = options_.runtime_metrics_port;
  int created = 0;
  for (size_t c = 0; c < nc; ++c) {
    Member* m = ob.members[c];
    ctx.hub = m == clusters_->Hub();
    std::set<std::string> present;
    for (const auto& p : ob.pods[c]) {
      present.insert(Name(p));
      if (Attempt(p) != attempt && !Terminating(p)) {
        auto r = m->client()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p)));
        if (!r.ok()) return r.status().WithContext("deleting stale pod " + Name(p));
      }
    }
    for (int rank = 0; rank < clusters[c].workers; ++rank) {
      const std::string pod_name = PodName(st.name, clusters[c].name, rank);
      if (present.count(pod_name)) continue;
      if (!st.status.contains("startTime")) {
        st.status["startTime"] = Rfc3339(st.now);
        if (!st.status.contains("firstStartTime")) st.status["firstStartTime"] = st.status["startTime"];
      }
      auto r = m->client()->Create(kube::ResourcePath("v1", "pods", st.ns), BuildWorkerPod(ctx, static_cast<int>(c), rank));
      if (!r.ok()) return r.status().WithContext("creating pod " + pod_name + " in " + m->id());
      if (r->code == 409) continue;  // created by an earlier pass the cache has not shown yet
      if (r->code >= 300) return UnavailableError(HttpError("creating pod " + pod_name + " in " + m->id(), *r));
      ++created;
    }
  }

  // Status from what the members report.
  PodCounts all;
  int clusters_ready = 0;
  for (size_t c = 0; c < nc; ++c) {
    PodCounts n = CountPods(current[c]);
    json& entry = st.status["clusters"][c];
    entry["pending"] = n.pending + (clusters[c].workers - std::min(clusters[c].workers, n.total()));
    entry["running"] = n.running;
    entry["ready"] = n.ready;
    entry["succeeded"] = n.succeeded;
    entry["failed"] = n.failed;
    if (n.running == clusters[c].workers || n.succeeded == clusters[c].workers) ++clusters_ready;
    all.pending += n.pending;
    all.running += n.running;
    all.ready += n.ready;
    all.succeeded += n.succeeded;
  }
  const int total = st.job.TotalWorkers();
  st.status["clustersReady"] = std::to_string(clusters_ready) + "/" + std::to_string(nc);
  std::vector<std::pair<std::string, std::string>> events;
  if (SetCondition(&st.status, "Created", true, "WorkersCreated", "services and " + std::to_string(total) + " workers created",
                   st.generation, st.now)) {
    events.emplace_back("Created", "created " + std::to_string(total) + " workers in " + std::to_string(nc) + " clusters");
  }
  if (all.succeeded == total) {
    st.status["phase"] = kPhaseSucceeded;
    st.status["completionTime"] = Rfc3339(st.now);
    st.status.erase("message");
    SetCondition(&st.status, "Running", false, "Completed", "every worker finished", st.generation, st.now);
    if (SetCondition(&st.status, "Succeeded", true, "Completed", "every worker exited 0", st.generation, st.now)) {
      events.emplace_back("Succeeded", "every worker exited 0");
    }
  } else if (all.running + all.succeeded == total && all.running > 0) {
    st.status["phase"] = kPhaseRunning;
    st.status.erase("message");
    if (SetCondition(&st.status, "Running", true, "WorkersRunning", "every worker is running", st.generation, st.now)) {
      events.emplace_back("Running", "all " + std::to_string(total) + " workers are running");
    }
    ScrapeRuntime(st, ob);
  } else {
    st.status["phase"] = kPhaseCreated;
    st.status["message"] = std::to_string(all.running) + "/" + std::to_string(total) + " workers running";
  }
  STELLA_RETURN_IF_ERROR(WriteStatus(st));
  for (const auto& [reason, msg] : events) Event(st, "Normal", reason, msg);

  ReconcileResult result;
  const std::string now_phase = st.status.value("phase", "");
  if (now_phase == kPhaseSucceeded) {
    return FinishedJob(st);
  }
  if (now_phase == kPhaseRunning) result.requeue_after = options_.runtime_poll;
  if (st.job.spec.run_policy.active_deadline_seconds) {
    auto start = ParseRfc3339(st.status.value("startTime", ""));
    if (start) {
      milliseconds left((*start + *st.job.spec.run_policy.active_deadline_seconds - st.now) * 1000 + 100);
      if (result.requeue_after.count() == 0 || left < result.requeue_after) result.requeue_after = std::max(left, milliseconds(100));
    }
  }
  (void)created;
  return result;
}

Status Controller::EnsureServices(JobState& st, Observed& ob) {
  ChildContext ctx;
  ctx.job = &st.job;
  ctx.origin = options_.origin;
  for (size_t c = 0; c < st.job.spec.clusters.size(); ++c) {
    Member* m = ob.members[c];
    ctx.hub = m == clusters_->Hub();
    std::vector<json> want = {BuildHeadlessService(ctx, static_cast<int>(c))};
    if (st.job.spec.clusters.size() > 1) {
      if (auto gw = BuildGatewayService(ctx, static_cast<int>(c))) want.push_back(*gw);
    }
    for (const auto& svc : want) {
      bool exists = false;
      for (const auto& s : ob.services[c]) exists = exists || Name(s) == Name(svc);
      if (exists) continue;
      auto r = m->client()->Create(kube::ResourcePath("v1", "services", st.ns), svc);
      if (!r.ok()) return r.status().WithContext("creating service " + Name(svc) + " in " + m->id());
      if (r->code == 409) continue;
      if (r->code >= 300) return UnavailableError(HttpError("creating service " + Name(svc) + " in " + m->id(), *r));
      ob.services[c].push_back(r->body);
    }
  }
  return Status::Ok();
}

Status Controller::EnsureTlsSecrets(JobState& st, Observed& ob, bool force, bool* reissued) {
  *reissued = false;
  const auto& clusters = st.job.spec.clusters;
  std::vector<json> existing(clusters.size());
  std::set<std::string> cas;
  bool all = true;
  for (size_t c = 0; c < clusters.size(); ++c) {
    const std::string name = TlsSecretName(st.name, clusters[c].name);
    auto r = ob.members[c]->client()->Get(kube::ResourcePath("v1", "secrets", st.ns, name));
    if (!r.ok()) return r.status().WithContext("reading secret " + name);
    if (r->code == 404) {
      all = false;
      continue;
    }
    if (r->code != 200) return UnavailableError(HttpError("reading secret " + name + " in " + ob.members[c]->id(), *r));
    existing[c] = r->body;
    cas.insert(r->body.value("/metadata/annotations"_json_pointer, json::object()).value(kAnnotationCa, std::string()));
  }
  if (all && cas.size() == 1 && !cas.begin()->empty() && !force) return Status::Ok();

  // The CA's private key lives only in this scope: every gateway is issued
  // now, and a later change issues a whole new CA.
  auto ca = security::CreateJobCa(st.ns, st.name);
  if (!ca.ok()) return ca.status().WithContext("job CA of " + st.key);
  char id[16];
  std::snprintf(id, sizeof(id), "%08x", Crc32c(ca->certificate_pem.data(), ca->certificate_pem.size()));
  ChildContext ctx;
  ctx.job = &st.job;
  ctx.origin = options_.origin;
  for (size_t c = 0; c < clusters.size(); ++c) {
    auto material = security::IssueGatewayCertificate(*ca, clusters[c].name);
    if (!material.ok()) return material.status().WithContext("gateway certificate of cluster " + clusters[c].name);
    ctx.hub = ob.members[c] == clusters_->Hub();
    json secret = BuildTlsSecret(ctx, static_cast<int>(c), material->ca_crt, material->tls_crt, material->tls_key, id);
    const std::string name = TlsSecretName(st.name, clusters[c].name);
    StatusOr<kube::Response> r = UnavailableError("unset");
    if (existing[c].is_null()) {
      r = ob.members[c]->client()->Create(kube::ResourcePath("v1", "secrets", st.ns), secret);
    } else {
      secret["metadata"]["resourceVersion"] = existing[c].value("/metadata/resourceVersion"_json_pointer, std::string());
      r = ob.members[c]->client()->Update(kube::ResourcePath("v1", "secrets", st.ns, name), secret);
    }
    if (!r.ok()) return r.status().WithContext("writing secret " + name);
    if (r->code == 409) return ConflictError("secret " + name);
    if (r->code >= 300) return UnavailableError(HttpError("writing secret " + name + " in " + ob.members[c]->id(), *r));
  }
  *reissued = true;
  log_->Info("job " + st.key + ": gateway certificates issued from job CA " + id);
  return Status::Ok();
}

Status Controller::DeletePods(JobState& st, Observed& ob, const std::string& why) {
  for (size_t c = 0; c < ob.pods.size(); ++c) {
    for (const auto& p : ob.pods[c]) {
      if (Terminating(p)) continue;
      auto r = ob.members[c]->client()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p)));
      if (!r.ok()) return r.status().WithContext("deleting pod " + Name(p) + " (" + why + ")");
      if (r->code >= 300 && r->code != 404) {
        return UnavailableError(HttpError("deleting pod " + Name(p) + " (" + why + ")", *r));
      }
    }
  }
  return Status::Ok();
}

void Controller::Fail(JobState& st, Observed& ob, const std::string& reason, const std::string& message) {
  st.status["phase"] = kPhaseFailed;
  st.status["message"] = message;
  st.status["completionTime"] = Rfc3339(st.now);
  SetCondition(&st.status, "Running", false, reason, message, st.generation, st.now);
  if (SetCondition(&st.status, "Failed", true, reason, message, st.generation, st.now)) {
    Event(st, "Warning", reason, message);
  }
  // Failed pods stay for their logs; running ones would wait forever on the failed rank.
  for (size_t c = 0; c < ob.pods.size(); ++c) {
    if (!ob.members[c]) continue;
    for (const auto& p : ob.pods[c]) {
      const std::string phase = p.value("/status/phase"_json_pointer, std::string());
      if (phase == "Failed" || phase == "Succeeded" || Terminating(p)) continue;
      auto r = ob.members[c]->client()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p)));
      if (!r.ok()) log_->Warn("deleting pod " + Name(p) + " of failed job " + st.key + ": " + r.status().ToString());
    }
  }
}

StatusOr<ReconcileResult> Controller::FinishedJob(JobState& st) {
  const auto& ttl = st.job.spec.run_policy.ttl_seconds_after_finished;
  if (!ttl) return ReconcileResult{};
  auto done = ParseRfc3339(st.status.value("completionTime", ""));
  if (!done) return ReconcileResult{};
  std::time_t expires = *done + *ttl;
  if (st.now < expires) return ReconcileResult{milliseconds((expires - st.now) * 1000 + 100)};
  json opts = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"},
               {"preconditions", {{"uid", st.uid}}}};
  auto r = hub_->Delete(JobsPath(st.ns, st.name), &opts);
  if (!r.ok()) return r.status().WithContext("deleting finished job " + st.key);
  if (r->code >= 300 && r->code != 404 && r->code != 409) return UnavailableError(HttpError("deleting finished job " + st.key, *r));
  log_->Info("job " + st.key + ": deleted " + std::to_string(*ttl) + " s after it finished (ttlSecondsAfterFinished)");
  return ReconcileResult{};
}

StatusOr<ReconcileResult> Controller::Finalize(JobState& st) {
  json finalizers = st.obj.value("/metadata/finalizers"_json_pointer, json::array());
  auto it = std::find(finalizers.begin(), finalizers.end(), kFinalizer);
  if (it == finalizers.end()) return ReconcileResult{};

  // Children are found by the job's uid in every member the spec names.
  int remaining = 0;
  std::vector<std::string> blocked;
  const std::string uid_selector = std::string(kLabelJobUid) + "=" + st.uid;
  for (const auto& cl : st.job.spec.clusters) {
    auto m = clusters_->ForCluster(st.ns, cl.kubeconfig_secret);
    if (!m.ok() || !(*m)->Synced() || !(*m)->Healthy()) {
      blocked.push_back(cl.name + " (" + (m.ok() ? (*m)->LastError() : m.status().message()) + ")");
      continue;
    }
    for (auto* inf : {&(*m)->pods(), &(*m)->services()}) {
      const char* plural = inf == &(*m)->pods() ? "pods" : "services";
      for (const auto& child : inf->List(uid_selector)) {
        ++remaining;
        if (Terminating(child)) continue;
        auto r = (*m)->client()->Delete(kube::ResourcePath("v1", plural, st.ns, Name(child)));
        if (!r.ok()) return r.status().WithContext(std::string("deleting ") + plural + " " + Name(child));
        if (r->code >= 300 && r->code != 404) {
          return UnavailableError(HttpError(std::string("deleting ") + plural + " " + Name(child), *r));
        }
      }
    }
  }
  if (blocked.empty() && st.job.spec.clusters.size() > 1) {
    for (const auto& cl : st.job.spec.clusters) {
      auto m = clusters_->ForCluster(st.ns, cl.kubeconfig_secret);
      if (!m.ok() || *m == clusters_->Hub()) continue;  // hub Secrets go with their ownerReference
      const std::string name = TlsSecretName(st.name, cl.name);
      auto r = (*m)->client()->Delete(kube::ResourcePath("v1", "secrets", st.ns, name));
      if (!r.ok()) return r.status().WithContext("deleting secret " + name);
      if (r->code >= 300 && r->code != 404) return UnavailableError(HttpError("deleting secret " + name, *r));
    }
  }
  if (!blocked.empty()) {
    std::string msg = "cannot delete workers in unreachable member clusters: ";
    for (size_t i = 0; i < blocked.size(); ++i) msg += (i ? "; " : "") + blocked[i];
    log_->Warn("job " + st.key + ": " + msg + " (retrying; the orphan sweep also removes them later)");
    return ReconcileResult{options_.unreachable_retry};
  }
  if (remaining > 0) return ReconcileResult{milliseconds(1000)};  // wait until they are really gone

  finalizers.erase(std::find(finalizers.begin(), finalizers.end(), kFinalizer));
  json patch = {{"metadata",
                 {{"finalizers", finalizers},
                  {"resourceVersion", st.obj.value("/metadata/resourceVersion"_json_pointer, std::string())}}}};
  auto r = hub_->Patch(JobsPath(st.ns, st.name), patch, kube::PatchType::Merge());
  if (!r.ok()) return r.status().WithContext("removing the finalizer of " + st.key);
  if (r->code == 409) return ConflictError("removing the finalizer of " + st.key);
  if (r->code >= 300 && r->code != 404) return UnavailableError(HttpError("removing the finalizer of " + st.key, *r));
  log_->Info("job " + st.key + ": children deleted in every member cluster, finalizer removed");
  return ReconcileResult{};
}

void Controller::ScrapeRuntime(JobState& st, Observed& ob) {
  {
    std::lock_guard<std::mutex> lock(scrape_mu_);
    auto now = std::chrono::steady_clock::now();
    auto& last = last_scrape_[st.uid];
    if (now - last < options_.runtime_poll) return;
    last = now;
  }
  // Rank 0 of the first cluster reports job-wide figures; reached through
  // its API server's pod proxy, so no network path from the hub is needed.
  if (ob.members.empty() || !ob.members[0]) return;
  const auto& cl = st.job.spec.clusters[0];
  const std::string path = kube::ResourcePath("v1", "pods", st.ns, PodName(st.name, cl.name, 0) + ":" +
                                              std::to_string(options_.runtime_metrics_port), "proxy/metrics");
  auto r = ob.members[0]->client()->Get(path);
  if (!r.ok() || r->code != 200 || !r->body.is_string()) {
    log_->Debug("job " + st.key + ": runtime metrics not available: " +
                (r.ok() ? "HTTP " + std::to_string(r->code) : r.status().ToString()));
    return;
  }
  RuntimeFigures f = ParseRuntimeMetrics(r->body.get<std::string>());
  if (f.step >= 0) st.status["step"] = f.step;
  if (f.samples_per_second >= 0) st.status["samplesPerSecond"] = f.samples_per_second;
  if (f.density >= 0) st.status["density"] = f.density;
  if (f.batch_size >= 0) st.status["batchSize"] = f.batch_size;
}

}  // namespace stella::op
