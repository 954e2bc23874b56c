// Test doubles for the reconcile phases: member clusters over
// kube::testing::FakeApi (their "caches" are the fake's store, so what one
// pass writes the next pass sees) and a hub holding one StellaJob.
#ifndef STELLA_TESTS_OPERATOR_RECONCILE_FIXTURE_H_
#define STELLA_TESTS_OPERATOR_RECONCILE_FIXTURE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "operator/controller/names.h"
#include "operator/controller/reconcile/members.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/reconcile/reconciler.h"
#include "operator/controller/status.h"
#include "operator/kube/testing/fake_api.h"

namespace stella::op::testing {

using json = nlohmann::json;
using kube::testing::FakeApi;

class FakeMember final : public MemberView {
 public:
  FakeMember(std::string id, FakeApi* api) : id_(std::move(id)), api_(api) {}
  const std::string& id() const override { return id_; }
  kube::Api* api() const override { return api_; }
  bool Synced() const override { return synced; }
  bool Healthy() const override { return healthy; }
  std::string LastError() const override { return last_error; }
  std::vector<json> ListPods(const std::string& selector) const override { return List("pods", selector); }
  std::vector<json> ListServices(const std::string& selector) const override { return List("services", selector); }
  std::vector<json> ListNodes() const override { return api_->Objects("/api/v1/nodes"); }

  bool synced = true;
  bool healthy = true;
  std::string last_error;

 private:
  std::vector<json> List(const char* plural, const std::string& selector) const {
    auto r = api_->List(kube::ResourcePath("v1", plural), selector);
    return r.ok() ? r->items : std::vector<json>{};
  }
  std::string id_;
  FakeApi* api_;
};

// Members by kubeconfig Secret name ("" = the hub); a name in `errors`
// cannot be connected.
class FakeDirectory final : public MemberDirectory {
 public:
  StatusOr<MemberView*> Lookup(const std::string&, const std::optional<spec::SecretKeyRef>& ref) override {
    const std::string key = ref ? ref->name : "";
    if (auto e = errors.find(key); e != errors.end()) return e->second;
    auto it = members.find(key);
    if (it == members.end()) return NotFoundError("Secret " + key + " not found");
    return it->second;
  }
  MemberView* HubMember() override { return members.count("") ? members[""] : nullptr; }

  std::map<std::string, MemberView*> members;
  std::map<std::string, Status> errors;
};

inline constexpr char kNs[] = "team";
inline constexpr char kJob[] = "mnist";
inline constexpr char kKey[] = "team/mnist";
inline constexpr char kUid[] = "job-uid-1";
// 2026-03-01T00:00:00Z, the fixture's clock.
inline constexpr std::time_t kNow = 1772323200;

// A valid job spec: one cluster "a" on the hub with `workers` workers, and,
// when `edge` is set, a second "b" in member "edge" (Secret edge-kc).
inline json JobSpec(int workers = 2, bool edge = false) {
  json clusters = json::array({{{"name", "a"}, {"workers", workers}}});
  if (edge) clusters.push_back({{"name", "b"}, {"workers", 1}, {"kubeconfigSecret", {{"name", "edge-kc"}}}});
  return {{"model", {{"name", "mlp"}}},
          {"dataset", {{"name", "fashion-mnist"}}},
          {"training", {{"steps", 100}}},
          {"clusters", clusters}};
}

// A failure answering `code` (see kube::testing::Failure).
inline kube::testing::Failure HttpFailure(std::string verb, std::string path_contains, int code, std::string reason,
                                          std::string message = "injected failure") {
  kube::testing::Failure f;
  f.verb = std::move(verb);
  f.path_contains = std::move(path_contains);
  f.code = code;
  f.reason = std::move(reason);
  f.message = std::move(message);
  return f;
}

// A Service status as a cloud controller writes it: one ingress entry.
inline json LoadBalancerStatus(const std::string& key, const std::string& value) {
  json ingress = json::array();
  ingress.push_back(json{{key, value}});
  json lb = json::object();
  lb["ingress"] = ingress;
  json status = json::object();
  status["loadBalancer"] = lb;
  json patch = json::object();
  patch["status"] = status;
  return patch;
}

class Fixture {
 public:
  Fixture() : log_(LogLevel::kError), hub_member_("hub", &hub), edge_member_("edge", &edge) {
    directory.members[""] = &hub_member_;
    directory.members["edge-kc"] = &edge_member_;
    deps.hub = &hub;
    deps.members = &directory;
    deps.log = &log_;
    deps.options.unreachable_retry = std::chrono::milliseconds(5000);
    deps.options.runtime_poll = std::chrono::milliseconds(10000);
    deps.get_job = [this](const std::string& ns, const std::string& name) { return hub.Object(JobsPath(ns, name)); };
    deps.clock = [this] { return now; };
  }

  // Stores the job on the hub (with the finalizer unless `finalizer` false).
  json PutJob(json spec, bool finalizer = true, json status = json::object()) {
    json obj = {{"apiVersion", kGroupVersion},
                {"kind", "StellaJob"},
                {"metadata", {{"name", kJob}, {"namespace", kNs}, {"uid", kUid}, {"generation", 1}}},
                {"spec", std::move(spec)}};
    if (finalizer) obj["metadata"]["finalizers"] = json::array({kFinalizer});
    if (!status.empty()) obj["status"] = std::move(status);
    return hub.Put(JobsPath(kNs), obj);
  }
  json Job() const { return *hub.Object(JobsPath(kNs, kJob)); }
  spec::JobStatus ReadStatus() const { return JobStatusFromJson(Job().value("status", json::object())); }

  StatusOr<ReconcileResult> Reconcile() { return Reconciler(deps).Reconcile(kKey); }

  // ReadJob then every phase before `stop` (which is not run); returns the
  // state for calling `stop` directly.
  JobState RunUpTo(Phase stop) {
    static constexpr Phase kOrder[] = {Finalizer,     CheckSpec, Finished, ObserveMembers,
                                       Suspend,       Deadline,  Services, Gateways,
                                       RestartOrFail, Tls,       Pods,     StatusPhase};
    JobState st;
    PhaseResult r = ReadJob(deps, kKey, &st);
    for (Phase p : kOrder) {
      if (p == stop || !r.proceed()) break;
      r = p(deps, st);
    }
    EXPECT_TRUE(r.proceed()) << "a phase before the one under test ended the pass: " << r.error().ToString();
    return st;
  }

  std::vector<json> PodsIn(FakeApi& api) const { return api.Objects(kube::ResourcePath("v1", "pods", kNs)); }
  std::vector<json> ServicesIn(FakeApi& api) const { return api.Objects(kube::ResourcePath("v1", "services", kNs)); }
  // The reasons of the Events recorded on the hub, sorted (the store keeps no order).
  std::vector<std::string> EventReasons() const {
    std::vector<std::string> out;
    for (const auto& e : hub.Objects(kube::ResourcePath("v1", "events", kNs))) out.push_back(e.value("reason", ""));
    std::sort(out.begin(), out.end());
    return out;
  }
  // What a kubelet would report for a pod.
  void SetPodPhase(FakeApi& api, const std::string& pod, const std::string& phase, bool ready = true) {
    json status = {{"phase", phase}};
    if (phase == "Running") {
      status["conditions"] = json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}});
    }
    if (phase == "Failed") {
      status["reason"] = "Error";
      status["message"] = "exit code 1";
    }
    auto r = api.Patch(kube::ResourcePath("v1", "pods", kNs, pod), {{"status", status}}, kube::PatchType::Merge());
    ASSERT_TRUE(r.ok() && r->code == 200) << pod;
  }
  // A merge patch by another actor (user, cloud controller); must succeed.
  static void MergePatch(FakeApi& api, const std::string& path, const json& patch) {
    auto r = api.Patch(path, patch, kube::PatchType::Merge());
    ASSERT_TRUE(r.ok() && r->code == 200) << path;
  }
  void SetAllPods(FakeApi& api, const std::string& phase) {
    for (const auto& p : PodsIn(api)) SetPodPhase(api, kube::NameOf(p), phase);
  }

  FakeApi hub, edge;
  FakeDirectory directory;
  ReconcileDeps deps;
  std::time_t now = kNow;

 private:
  Logger log_;
  FakeMember hub_member_, edge_member_;

 public:
  FakeMember& hub_member() { return hub_member_; }
  FakeMember& edge_member() { return edge_member_; }
};

}  // namespace stella::op::testing

#endif  // STELLA_TESTS_OPERATOR_RECONCILE_FIXTURE_H_
