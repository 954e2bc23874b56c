// Phases that read: the job from the cache (ReadJob), whether its spec can
// run at all (CheckSpec), and the members with the job's children
// (ObserveMembers).
#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

PhaseResult ReadJob(const ReconcileDeps& d, const std::string& key, JobState* st) {
  st->key = key;
  if (!SplitJobKey(key, &st->ns, &st->name)) return PhaseResult::Done();
  std::optional<json> cached = d.get_job(st->ns, st->name);
  if (!cached) return PhaseResult::Done();  // gone; its finalizer already ran
  st->obj = std::move(*cached);
  st->uid = st->obj.value("/metadata/uid"_json_pointer, std::string());
  st->generation = st->obj.value("/metadata/generation"_json_pointer, int64_t{0});
  st->read_status = JobStatusFromJson(st->obj.value("status", json::object()));
  st->status = st->read_status;
  st->now = d.clock();
  auto parsed = JobFromApiObject(st->obj);
  st->spec_error = parsed.ok() ? CheckChildNames(*parsed) : parsed.status();
  if (parsed.ok()) {
    st->job = std::move(parsed).value();
  } else {
    st->job.metadata.name = st->name;  // nothing was ever created for an invalid job
  }
  return PhaseResult::Continue();
}

PhaseResult CheckSpec(const ReconcileDeps& d, JobState& st) {
  if (st.spec_error.ok()) return PhaseResult::Continue();
  // The API server's schema accepted it, but it cannot run (e.g. names too
  // long for Services). Terminal: the user must fix the manifest.
  const std::string& why = st.spec_error.message();
  st.status.phase = kPhaseFailed;
  st.status.message = why;
  bool flipped = SetCondition(&st.status, "Failed", true, "InvalidSpec", why, st.generation, st.now);
  STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  if (flipped) RecordEvent(d, st, "Warning", "InvalidSpec", why);
  return PhaseResult::Done();
}

namespace {

// Per-cluster status entries, kept across reconciles (gateway decisions live there).
void RebuildClusterEntries(JobState& st) {
  const auto& clusters = st.job.spec.clusters;
  std::vector<spec::ClusterStatus> entries;
  for (size_t c = 0; c < clusters.size(); ++c) {
    spec::ClusterStatus entry;
    entry.name = clusters[c].name;
    entry.workers = clusters[c].workers;
    for (const auto& p : st.status.clusters) {
      if (p.name != clusters[c].name) continue;
      entry.gateway_address = p.gateway_address;
      entry.gateway_node = p.gateway_node;
    }
    entry.reachable = st.ob.errors[c].empty();
    entry.message = st.ob.errors[c];
    entries.push_back(std::move(entry));
  }
  st.status.clusters = std::move(entries);
}

// Connects every cluster's member and reads the job's children there.
// Returns "cluster (why)" for each member that cannot be used; *waiting_sync
// when one has not listed yet but reported no error either.
std::vector<std::string> ConnectMembers(const ReconcileDeps& d, JobState& st, bool* waiting_sync) {
  const auto& clusters = st.job.spec.clusters;
  const size_t nc = clusters.size();
  Observed& ob = st.ob;
  ob.members.assign(nc, nullptr);
  ob.errors.assign(nc, "");
  ob.pods.assign(nc, {});
  ob.services.assign(nc, {});
  std::vector<std::string> unreachable;
  const std::string uid_selector = std::string(kLabelJobUid) + "=" + st.uid;
  for (size_t c = 0; c < nc; ++c) {
    auto m = d.members->Lookup(st.ns, clusters[c].kubeconfig_secret);
    if (!m.ok()) {
      ob.errors[c] = m.status().message();
    } else if (!(*m)->Synced()) {
      if ((*m)->LastError().empty())
        *waiting_sync = true;
      else
        ob.errors[c] = (*m)->LastError();
    } else if (!(*m)->Healthy()) {
      ob.errors[c] = (*m)->LastError().empty() ? "watch failing" : (*m)->LastError();
    } else {
      ob.members[c] = *m;
      // Two clusters of one job may share a member (e.g. both on the hub).
      const std::string selector = uid_selector + "," + kLabelCluster + "=" + clusters[c].name;
      ob.pods[c] = (*m)->ListPods(selector);
      ob.services[c] = (*m)->ListServices(selector);
    }
    if (!ob.errors[c].empty()) unreachable.push_back(clusters[c].name + " (" + ob.errors[c] + ")");
  }
  return unreachable;
}

}  // namespace

PhaseResult ObserveMembers(const ReconcileDeps& d, JobState& st) {
  bool waiting_sync = false;
  const std::vector<std::string> unreachable = ConnectMembers(d, st, &waiting_sync);
  RebuildClusterEntries(st);

  const std::string unreachable_msg = JoinMessages(unreachable);
  bool flipped =
      SetCondition(&st.status, "ClusterUnreachable", !unreachable.empty(),
                   unreachable.empty() ? "AllClustersReachable" : "ClusterUnreachable",
                   unreachable.empty() ? "every member cluster answers" : unreachable_msg, st.generation, st.now);
  if (!unreachable.empty() || waiting_sync) {
    // Nothing is created or deleted on a partial view: a member that cannot be
    // seen may still run workers.
    if (!unreachable.empty()) st.status.message = "member cluster unreachable: " + unreachable_msg;
    if (st.status.phase.empty()) st.status.phase = kPhasePending;
    STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
    if (flipped && !unreachable.empty()) RecordEvent(d, st, "Warning", "ClusterUnreachable", unreachable_msg);
    return PhaseResult::RequeueAfter(waiting_sync && unreachable.empty() ? milliseconds(500)
                                                                         : d.options.unreachable_retry);
  }
  if (flipped && ConditionTrue(st.read_status, "ClusterUnreachable")) {
    RecordEvent(d, st, "Normal", "ClusterReachable", "every member cluster answers again");
  }
  if (flipped) st.status.message.clear();
  return PhaseResult::Continue();
}

}  // namespace stella::op
