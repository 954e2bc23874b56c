// Fuzzes what the operator reads from API servers and pods: the same bytes go
// to every decoder, so one seed of each shape (a StellaJob, a Pod, a Node, a
// Service, a watch line, a Status, a kubeconfig, a /metrics page) exercises
// its own decoder while the others reject it.
//
//   raw bytes   kube::DecodeWatchEvent (+ WatchErrorCode), kube::ParseInlineKubeconfig
//               and kube::DecodeBase64 (a member's kubeconfig Secret),
//               op::ParseRuntimeMetrics (a worker's /metrics via the pod proxy),
//               op::ParseRfc3339
//   JSON value  nlohmann::json::parse without exceptions, then kube::ObjectKey,
//               NameOf/NamespaceOf/ResourceVersionOf, LabelsMatch, ApiMessage/
//               ApiReason/ResponseStatus, op::JobFromApiObject (+ WorkerManifest),
//               CountPods, DescribeFailure, ConditionTrue/SetCondition,
//               NodeAddress/NodeReady, ResolveGateway for each gateway type
//
// Invariants (abort on violation; an escaping exception or a sanitizer report
// is a finding too, as no reconcile catches exceptions):
//  - decoders reject with a non-empty message of their documented code;
//  - an accepted kubeconfig from a Secret names no file and is consistent
//    (https?:// server without trailing '/', CA xor insecure, cert and key
//    together); DecodeBase64 yields 3 bytes per 4 characters less padding;
//  - WatchErrorCode is an HTTP code in 100..599;
//  - ObjectKey is "ns/name" or "name"; an object matches the selector made
//    of its own labels and the empty one;
//  - an accepted StellaJob's WorkerManifest parses back;
//  - CountPods counts each pod once and ready <= running;
//  - SetCondition then ConditionTrue agree, a repeated SetCondition does not
//    flip, and the result serializes;
//  - NodeAddress is one of the node's addresses; ResolveGateway gives an
//    address or a reason to wait, never both.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/controller/gateway.h"
#include "operator/controller/names.h"
#include "operator/controller/status.h"
#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/informer.h"
#include "src/spec/stella_job.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

void CheckRejection(const Status& s, StatusCode want, const std::string& what) {
  FUZZ_CHECK(s.code() == want, what + ": unexpected error " + s.ToString());
  FUZZ_CHECK(!s.message().empty(), what + ": rejection without a message");
}

void CheckRawDecoders(const std::string& text) {
  StatusOr<kube::WatchEvent> ev = kube::DecodeWatchEvent(text);
  if (ev.ok()) {
    const int code = kube::WatchErrorCode(ev->object);
    FUZZ_CHECK(code >= 100 && code <= 599, "WatchErrorCode " + std::to_string(code));
  } else if (ev.status().code() != StatusCode::kDataLoss) {
    CheckRejection(ev.status(), StatusCode::kInvalidArgument, "DecodeWatchEvent");
  }

  StatusOr<kube::ClusterConfig> cfg = kube::ParseInlineKubeconfig(text);
  if (cfg.ok()) {
    FUZZ_CHECK(cfg->token_file.empty(), "a Secret's kubeconfig names a token file " + cfg->token_file);
    FUZZ_CHECK(cfg->server.rfind("https://", 0) == 0 || cfg->server.rfind("http://", 0) == 0, "server " + cfg->server);
    FUZZ_CHECK(cfg->server.back() != '/', "server keeps a trailing slash: " + cfg->server);
    FUZZ_CHECK(!(cfg->insecure_skip_tls_verify && !cfg->ca_pem.empty()), "CA and insecure both set");
    FUZZ_CHECK(cfg->client_cert_pem.empty() == cfg->client_key_pem.empty(), "cert without key");
    FUZZ_CHECK(!cfg->name.empty(), "accepted a kubeconfig without a context name");
  } else {
    CheckRejection(cfg.status(), StatusCode::kInvalidArgument, "ParseInlineKubeconfig");
  }

  StatusOr<std::string> bytes = kube::DecodeBase64(text);
  if (bytes.ok()) {
    size_t chars = 0, pad = 0;
    for (char c : text) {
      if (c != '\n' && c != '\r') ++chars;
      if (c == '=') ++pad;
    }
    FUZZ_CHECK(bytes->size() == chars / 4 * 3 - pad, "DecodeBase64 gave " + std::to_string(bytes->size()) +
                                                         " bytes for " + std::to_string(chars) + " characters with " +
                                                         std::to_string(pad) + " '='");
  } else {
    CheckRejection(bytes.status(), StatusCode::kInvalidArgument, "DecodeBase64");
  }

  const RuntimeFigures f = ParseRuntimeMetrics(text);
  FUZZ_CHECK(f.samples_per_second == -1 || std::isfinite(f.samples_per_second), "non-finite rate");
  FUZZ_CHECK(f.density == -1 || std::isfinite(f.density), "non-finite density");

  ParseRfc3339(text);  // must not crash; any time is acceptable
}

// "k=v,k2=v2" from the object's string labels that a selector can express.
std::string OwnSelector(const json& obj) {
  std::string sel;
  if (!obj.is_object() || !obj.contains("metadata") || !obj["metadata"].is_object()) return sel;
  const json& meta = obj["metadata"];
  if (!meta.contains("labels") || !meta["labels"].is_object()) return sel;
  for (const auto& [k, v] : meta["labels"].items()) {
    if (!v.is_string() || k.empty()) continue;
    const std::string value = v.get<std::string>();
    if (k.find_first_of(",=") != std::string::npos || value.find(',') != std::string::npos) continue;
    sel += (sel.empty() ? "" : ",") + k + "=" + value;
  }
  return sel;
}

// The pods, nodes or conditions a value stands for: a list's items, an array's
// elements, or the value itself.
std::vector<const json*> Elements(const json& v) {
  std::vector<const json*> out;
  const json* list = &v;
  if (v.is_object() && v.contains("items") && v["items"].is_array()) list = &v["items"];
  if (list->is_array()) {
    for (const json& e : *list) out.push_back(&e);
  } else {
    out.push_back(&v);
  }
  return out;
}

void CheckMetadata(const json& v) {
  const std::string ns = kube::NamespaceOf(v), name = kube::NameOf(v);
  kube::ResourceVersionOf(v);
  const std::string key = kube::ObjectKey(v);
  FUZZ_CHECK(key == (ns.empty() ? name : ns + "/" + name), "ObjectKey " + key);
  FUZZ_CHECK(kube::LabelsMatch(v, ""), "the empty selector did not match");
  const std::string sel = OwnSelector(v);
  FUZZ_CHECK(kube::LabelsMatch(v, sel), "an object does not match its own labels " + sel);

  for (int code : {200, 404, 409, 410, 422, 500}) {
    const kube::Response r{code, v};
    kube::ApiMessage(r);
    const std::string reason = kube::ApiReason(r);
    FUZZ_CHECK(code != 409 || kube::IsConflict(r) != kube::IsAlreadyExists(r), "409 is both or neither");
    const Status s = kube::ResponseStatus(r, "fuzz");
    FUZZ_CHECK(s.ok() == (code == 200), "ResponseStatus of HTTP " + std::to_string(code) + ": " + s.ToString());
  }
}

void CheckJob(const json& v) {
  StatusOr<spec::StellaJob> job = JobFromApiObject(v);
  if (!job.ok()) {
    CheckRejection(job.status(), StatusCode::kInvalidArgument, "JobFromApiObject");
    return;
  }
  const Status names = CheckChildNames(*job);
  if (!names.ok()) CheckRejection(names, StatusCode::kInvalidArgument, "CheckChildNames");
  const std::string manifest = WorkerManifest(*job);
  StatusOr<spec::StellaJob> again = spec::ParseStellaJob(manifest);
  FUZZ_CHECK(again.ok(),
             "WorkerManifest does not parse back: " + again.status().ToString() + "\n--- manifest ---\n" + manifest);
}

void CheckStatus(const json& v, const std::vector<const json*>& items) {
  const PodCounts n = CountPods(items);
  FUZZ_CHECK(n.total() == static_cast<int>(items.size()), "CountPods lost or doubled a pod");
  FUZZ_CHECK(n.ready <= n.running,
             "more ready than running pods: " + std::to_string(n.ready) + " > " + std::to_string(n.running));
  for (const json* p : items) {
    // "name: reason[: message]", name "?" when the pod has no string name.
    const json* name =
        p->is_object() && p->contains("metadata") && (*p)["metadata"].is_object() && (*p)["metadata"].contains("name")
            ? &(*p)["metadata"]["name"]
            : nullptr;
    const std::string want = (name && name->is_string() ? name->get<std::string>() : "?") + ": ";
    const std::string d = DescribeFailure(*p);
    FUZZ_CHECK(d.rfind(want, 0) == 0 && d.size() > want.size(), "DescribeFailure \"" + d + "\"");
  }

  // The job's status as the operator reads it back (the value itself or its "status").
  for (const json* status : {&v, v.is_object() && v.contains("status") ? &v["status"] : &v}) {
    ConditionTrue(*status, "Ready");
    json copy = *status;
    const bool was = ConditionTrue(copy, "Running");
    const bool flipped = SetCondition(&copy, "Running", true, "Fuzz", "m", 1, 1000);
    FUZZ_CHECK(ConditionTrue(copy, "Running"), "SetCondition(true) then ConditionTrue is false");
    FUZZ_CHECK(!(was && flipped), "a true condition flipped to true");
    FUZZ_CHECK(!SetCondition(&copy, "Running", true, "Fuzz", "m", 1, 2000), "a repeated SetCondition flipped");
    FUZZ_CHECK(SetCondition(&copy, "Running", false, "Fuzz", "m", 2, 3000), "true -> false did not flip");
    FUZZ_CHECK(!ConditionTrue(copy, "Running"), "SetCondition(false) then ConditionTrue is true");
    copy.dump();
  }
}

void CheckNodes(const json& v, const std::vector<const json*>& items) {
  std::vector<json> nodes;
  for (const json* n : items) {
    NodeReady(*n);
    const std::string addr = NodeAddress(*n);
    if (!addr.empty()) {
      FUZZ_CHECK(n->dump().find(json(addr).dump()) != std::string::npos, "NodeAddress " + addr + " is not in the node");
    }
    nodes.push_back(*n);
  }
  spec::ClusterSpec cluster;
  cluster.name = "a";
  cluster.node_selector = {{"stella.dev/gpu", "true"}};
  for (spec::GatewayType type :
       {spec::GatewayType::kLoadBalancer, spec::GatewayType::kNodePort, spec::GatewayType::kHostNetwork}) {
    cluster.gateway.type = type;
    const GatewayResolution r = ResolveGateway(cluster, "uid-1", &v, nodes);
    FUZZ_CHECK(r.address.empty() != r.waiting.empty(),
               "ResolveGateway: address \"" + r.address + "\", waiting \"" + r.waiting + "\"");
  }
}

void Check(const std::string& text) {
  CheckRawDecoders(text);
  const json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return;
  const std::vector<const json*> items = Elements(v);
  CheckMetadata(v);
  CheckJob(v);
  CheckStatus(v, items);
  CheckNodes(v, items);
}

}  // namespace
}  // namespace stella::op

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stella::op::Check(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
