// Phases about the job's end: the finalizer (children go before the job
// does; it goes on before any child exists) and a finished job's TTL.
#include <algorithm>

#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

namespace {

// A merge patch of metadata.finalizers guarded by the resourceVersion read,
// so a concurrent change is a conflict rather than lost.
StatusOr<kube::Response> PatchFinalizers(const ReconcileDeps& d, const JobState& st, const json& finalizers,
                                         const std::string& what) {
  json patch = {{"metadata",
                 {{"finalizers", finalizers},
                  {"resourceVersion", st.obj.value("/metadata/resourceVersion"_json_pointer, std::string())}}}};
  return kube::CheckResponse(d.hub->Patch(JobsPath(st.ns, st.name), patch, kube::PatchType::Merge()),
                             what + " " + st.key, {404});
}

// Deletes the job's children in every member; counts those still there and
// the members that cannot be reached.
Status DeleteChildren(const ReconcileDeps& d, const JobState& st, int* remaining, std::vector<std::string>* blocked) {
  // Children are found by the job's uid in every member the spec names.
  const std::string uid_selector = std::string(kLabelJobUid) + "=" + st.uid;
  for (const auto& cl : st.job.spec.clusters) {
    auto m = d.members->Lookup(st.ns, cl.kubeconfig_secret);
    if (!m.ok() || !(*m)->Synced() || !(*m)->Healthy()) {
      blocked->push_back(cl.name + " (" + (m.ok() ? (*m)->LastError() : m.status().message()) + ")");
      continue;
    }
    for (const char* plural : {"pods", "services"}) {
      const bool pods = plural == std::string("pods");
      for (const auto& child : pods ? (*m)->ListPods(uid_selector) : (*m)->ListServices(uid_selector)) {
        ++*remaining;
        if (Terminating(child)) continue;
        auto r = kube::CheckResponse((*m)->api()->Delete(kube::ResourcePath("v1", plural, st.ns, Name(child))),
                                     std::string("deleting ") + plural + " " + Name(child), {404});
        if (!r.ok()) return r.status();
      }
    }
  }
  return Status::Ok();
}

// TLS Secrets in members (hub Secrets go with their ownerReference).
Status DeleteMemberSecrets(const ReconcileDeps& d, const JobState& st) {
  for (const auto& cl : st.job.spec.clusters) {
    auto m = d.members->Lookup(st.ns, cl.kubeconfig_secret);
    if (!m.ok() || *m == d.members->HubMember()) continue;
    const std::string name = TlsSecretName(st.name, cl.name);
    auto r = kube::CheckResponse((*m)->api()->Delete(kube::ResourcePath("v1", "secrets", st.ns, name)),
                                 "deleting secret " + name, {404});
    if (!r.ok()) return r.status();
  }
  return Status::Ok();
}

PhaseResult Finalize(const ReconcileDeps& d, JobState& st) {
  json finalizers = st.obj.value("/metadata/finalizers"_json_pointer, json::array());
  if (std::find(finalizers.begin(), finalizers.end(), kFinalizer) == finalizers.end()) return PhaseResult::Done();

  int remaining = 0;
  std::vector<std::string> blocked;
  STELLA_PHASE_RETURN_IF_ERROR(DeleteChildren(d, st, &remaining, &blocked));
  if (blocked.empty() && st.job.spec.clusters.size() > 1) STELLA_PHASE_RETURN_IF_ERROR(DeleteMemberSecrets(d, st));
  if (!blocked.empty()) {
    const std::string msg = "cannot delete workers in unreachable member clusters: " + JoinMessages(blocked);
    d.log->Warn("job " + st.key + ": " + msg + " (retrying; the orphan sweep also removes them later)");
    return PhaseResult::RequeueAfter(d.options.unreachable_retry);
  }
  if (remaining > 0) return PhaseResult::RequeueAfter(milliseconds(1000));  // wait until they are really gone

  finalizers.erase(std::find(finalizers.begin(), finalizers.end(), kFinalizer));
  auto r = PatchFinalizers(d, st, finalizers, "removing the finalizer of");
  if (!r.ok()) return PhaseResult::Error(r.status());
  d.log->Info("job " + st.key + ": children deleted in every member cluster, finalizer removed");
  return PhaseResult::Done();
}

}  // namespace

PhaseResult Finalizer(const ReconcileDeps& d, JobState& st) {
  if (Terminating(st.obj)) return Finalize(d, st);
  // The finalizer goes on before any child exists anywhere.
  json finalizers = st.obj.value("/metadata/finalizers"_json_pointer, json::array());
  if (std::find(finalizers.begin(), finalizers.end(), kFinalizer) != finalizers.end()) return PhaseResult::Continue();
  finalizers.push_back(kFinalizer);
  auto r = PatchFinalizers(d, st, finalizers, "adding the finalizer to");
  if (!r.ok()) return PhaseResult::Error(r.status());
  if (r->code == 404) return PhaseResult::Done();
  st.obj = r->body;
  return PhaseResult::Continue();
}

PhaseResult Finished(const ReconcileDeps& d, JobState& st) {
  if (st.status.phase != kPhaseSucceeded && st.status.phase != kPhaseFailed) return PhaseResult::Continue();
  return DeleteAfterTtl(d, st);
}

}  // namespace stella::op
