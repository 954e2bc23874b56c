// Phase: mutual TLS between gateways. One job CA per job; every gateway's
// Secret holds a certificate of it. A change of the rotate-certificates
// annotation reissues them all and restarts the workers.
#include <set>

#include "operator/controller/children.h"
#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"
#include "src/base/crc32c.h"
#include "src/security/certs.h"

namespace stella::op {

using json = nlohmann::json;

namespace {

// Makes every gateway's TLS Secret hold certificates of one job CA, issuing a
// new CA when they are missing, disagree, or `force`.
Status EnsureTlsSecrets(const ReconcileDeps& d, JobState& st, bool force) {
  const auto& clusters = st.job.spec.clusters;
  std::vector<json> existing(clusters.size());
  std::set<std::string> cas;
  bool all = true;
  for (size_t c = 0; c < clusters.size(); ++c) {
    const std::string name = TlsSecretName(st.name, clusters[c].name);
    MemberView* m = st.ob.members[c];
    auto r = kube::CheckResponse(m->api()->Get(kube::ResourcePath("v1", "secrets", st.ns, name)),
                                 "reading secret " + name + " in " + m->id(), {404});
    if (!r.ok()) return r.status();
    if (r->code == 404) {
      all = false;
      continue;
    }
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
  ctx.origin = d.options.origin;
  for (size_t c = 0; c < clusters.size(); ++c) {
    auto material = security::IssueGatewayCertificate(*ca, clusters[c].name);
    if (!material.ok()) return material.status().WithContext("gateway certificate of cluster " + clusters[c].name);
    MemberView* m = st.ob.members[c];
    ctx.hub = m == d.members->HubMember();
    json secret = BuildTlsSecret(ctx, static_cast<int>(c), material->ca_crt, material->tls_crt, material->tls_key, id);
    const std::string name = TlsSecretName(st.name, clusters[c].name);
    StatusOr<kube::Response> r = UnavailableError("unset");
    if (existing[c].is_null()) {
      r = m->api()->Create(kube::ResourcePath("v1", "secrets", st.ns), secret);
    } else {
      secret["metadata"]["resourceVersion"] = kube::ResourceVersionOf(existing[c]);
      r = m->api()->Update(kube::ResourcePath("v1", "secrets", st.ns, name), secret);
    }
    r = kube::CheckResponse(std::move(r), "writing secret " + name + " in " + m->id());
    if (!r.ok()) return r.status();
  }
  d.log->Info("job " + st.key + ": gateway certificates issued from job CA " + id);
  return Status::Ok();
}

}  // namespace

PhaseResult Tls(const ReconcileDeps& d, JobState& st) {
  const size_t nc = st.job.spec.clusters.size();
  const std::string rotate =
      st.obj.value("/metadata/annotations"_json_pointer, json::object()).value(kAnnotationRotate, std::string());
  const bool force_rotation = !rotate.empty() && rotate != st.status.certificates_rotation;
  int present = 0;
  for (size_t c = 0; c < nc; ++c) present += static_cast<int>(st.current[c].size());
  // Checked only while workers are missing (they mount the Secrets) or on rotation.
  if (nc <= 1 || (present >= st.job.TotalWorkers() && !force_rotation)) return PhaseResult::Continue();
  STELLA_PHASE_RETURN_IF_ERROR(EnsureTlsSecrets(d, st, force_rotation));
  if (!force_rotation) return PhaseResult::Continue();
  st.status.certificates_rotation = rotate;
  STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  RecordEvent(d, st, "Normal", "CertificatesRotated",
              "gateway certificates reissued from a new job CA (" + std::string(kAnnotationRotate) + "=" + rotate +
                  "); restarting the workers");
  STELLA_PHASE_RETURN_IF_ERROR(DeletePods(d, st, "certificate rotation"));
  return PhaseResult::Done();
}

}  // namespace stella::op
