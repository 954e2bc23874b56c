// Phases that make the job reachable: its Services in every member, then
// every cluster's WAN gateway address, decided once and recorded in status
// before any worker is created with them.
#include "operator/controller/children.h"
#include "operator/controller/gateway.h"
#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

PhaseResult Services(const ReconcileDeps& d, JobState& st) {
  ChildContext ctx;
  ctx.job = &st.job;
  ctx.origin = d.options.origin;
  for (size_t c = 0; c < st.job.spec.clusters.size(); ++c) {
    MemberView* m = st.ob.members[c];
    ctx.hub = m == d.members->HubMember();
    std::vector<json> want = {BuildHeadlessService(ctx, static_cast<int>(c))};
    if (st.job.spec.clusters.size() > 1) {
      if (auto gw = BuildGatewayService(ctx, static_cast<int>(c))) want.push_back(*gw);
    }
    for (const auto& svc : want) {
      bool exists = false;
      for (const auto& s : st.ob.services[c]) exists = exists || Name(s) == Name(svc);
      if (exists) continue;
      // 409: created by an earlier pass the cache has not shown yet.
      auto r = kube::CheckResponse(m->api()->Create(kube::ResourcePath("v1", "services", st.ns), svc),
                                   "creating service " + Name(svc) + " in " + m->id(), {409});
      if (!r.ok()) return PhaseResult::Error(r.status());
      if (r->code == 409) continue;
      st.ob.services[c].push_back(r->body);
    }
  }
  return PhaseResult::Continue();
}

PhaseResult Gateways(const ReconcileDeps& d, JobState& st) {
  const auto& clusters = st.job.spec.clusters;
  const size_t nc = clusters.size();
  st.gateway_addresses.assign(nc, "");
  st.gateway_nodes.assign(nc, "");
  std::vector<std::string> waiting;
  bool decided_now = false;
  for (size_t c = 0; c < nc; ++c) {
    spec::ClusterStatus& entry = st.status.clusters[c];
    if (!entry.gateway_address.empty()) {
      st.gateway_addresses[c] = entry.gateway_address;
      st.gateway_nodes[c] = entry.gateway_node;
      continue;
    }
    if (nc == 1) continue;  // a single cluster has no WAN
    const json* svc = nullptr;
    for (const auto& s : st.ob.services[c]) {
      if (Name(s) == GatewayServiceName(st.name, clusters[c].name)) svc = &s;
    }
    GatewayResolution g = ResolveGateway(clusters[c], st.uid, svc, st.ob.members[c]->ListNodes());
    if (g.address.empty()) {
      waiting.push_back(g.waiting);
      continue;
    }
    st.gateway_addresses[c] = entry.gateway_address = g.address;
    if (!g.node.empty()) st.gateway_nodes[c] = entry.gateway_node = g.node;
    decided_now = true;
  }
  if (!waiting.empty()) {
    const std::string msg = "waiting for gateway addresses: " + JoinMessages(waiting);
    st.status.message = msg;
    if (st.status.phase.empty() || st.status.phase == kPhasePending) st.status.phase = kPhaseCreated;
    bool first = SetCondition(&st.status, "Created", true, "ServicesCreated", msg, st.generation, st.now);
    STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
    if (first) {
      RecordEvent(d, st, "Normal", "Created", "services created in " + std::to_string(nc) + " clusters; " + msg);
    }
    return PhaseResult::RequeueAfter(milliseconds(2000));
  }
  // Recorded before any worker is created with them.
  if (decided_now) STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  return PhaseResult::Continue();
}

}  // namespace stella::op
