// Phase: one worker pod per rank for the current attempt. Pods of stale
// attempts go; a missing rank is created once its name is free.
#include <set>

#include "operator/controller/children.h"
#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;

PhaseResult Pods(const ReconcileDeps& d, JobState& st) {
  const auto& clusters = st.job.spec.clusters;
  ChildContext ctx;
  ctx.job = &st.job;
  ctx.origin = d.options.origin;
  ctx.default_image = d.options.default_image;
  ctx.gateway_addresses = st.gateway_addresses;
  ctx.gateway_nodes = st.gateway_nodes;
  ctx.attempt = st.attempt;
  ctx.metrics_port = d.options.runtime_metrics_port;
  for (size_t c = 0; c < clusters.size(); ++c) {
    MemberView* m = st.ob.members[c];
    ctx.hub = m == d.members->HubMember();
    std::set<std::string> present;
    for (const auto& p : st.ob.pods[c]) {
      present.insert(Name(p));
      if (Attempt(p) == st.attempt || Terminating(p)) continue;
      const std::string what = "deleting stale pod " + Name(p) + " in " + m->id();
      auto r = m->api()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p)));
      if (!r.ok()) return PhaseResult::Error(r.status().WithContext(what));
      // A refused delete does not block the missing ranks; the next pass tries again.
      if (auto checked = kube::CheckResponse(std::move(r), what, {404}); !checked.ok()) {
        d.log->Warn(checked.status().ToString());
      }
    }
    for (int rank = 0; rank < clusters[c].workers; ++rank) {
      const std::string pod_name = PodName(st.name, clusters[c].name, rank);
      if (present.count(pod_name)) continue;
      if (st.status.start_time.empty()) {
        st.status.start_time = Rfc3339(st.now);
        if (st.status.first_start_time.empty()) st.status.first_start_time = st.status.start_time;
      }
      // 409: created by an earlier pass the cache has not shown yet.
      auto r = kube::CheckResponse(
          m->api()->Create(kube::ResourcePath("v1", "pods", st.ns), BuildWorkerPod(ctx, static_cast<int>(c), rank)),
          "creating pod " + pod_name + " in " + m->id(), {409});
      if (!r.ok()) return PhaseResult::Error(r.status());
    }
  }
  return PhaseResult::Continue();
}

}  // namespace stella::op
