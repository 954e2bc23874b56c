// kube::testing::FakeApi behaves like an API server where the reconciler can
// tell, and kube::CheckResponse turns every answer into one Status.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/kube/api.h"
#include "operator/kube/testing/fake_api.h"

namespace stella::kube::testing {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

const std::string kPods = ResourcePath("v1", "pods", "ns");
const std::string kPod = ResourcePath("v1", "pods", "ns", "p");

json Pod(const std::string& name, json labels = json::object()) {
  return {{"metadata", {{"name", name}, {"labels", labels}}}, {"spec", {{"x", 1}}}};
}

TEST(FakeApiTest, CreateGetAndAlreadyExists) {
  FakeApi api;
  auto r = api.Create(kPods, Pod("p"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->code, 201);
  EXPECT_FALSE(ResourceVersionOf(r->body).empty());
  EXPECT_EQ(NamespaceOf(r->body), "ns");
  EXPECT_EQ(api.Get(kPod)->body, r->body);
  auto again = api.Create(kPods, Pod("p"));
  EXPECT_TRUE(IsAlreadyExists(*again));
  EXPECT_FALSE(IsConflict(*again));
  EXPECT_TRUE(IsNotFound(*api.Get(ResourcePath("v1", "pods", "ns", "q"))));
  EXPECT_TRUE(IsNotFound(*api.Delete(ResourcePath("v1", "pods", "ns", "q"))));
}

TEST(FakeApiTest, StaleResourceVersionIsAConflict) {
  FakeApi api;
  json first = api.Create(kPods, Pod("p"))->body;
  json second = first;
  second["spec"]["x"] = 2;
  auto ok = api.Update(kPod, second);
  ASSERT_EQ(ok->code, 200);
  EXPECT_NE(ResourceVersionOf(ok->body), ResourceVersionOf(first));
  first["spec"]["x"] = 3;
  EXPECT_TRUE(IsConflict(*api.Update(kPod, first)));  // written against the old version
  json patch = {{"metadata", {{"resourceVersion", ResourceVersionOf(first)}}}};
  EXPECT_TRUE(IsConflict(*api.Patch(kPod, patch, PatchType::Merge())));
  EXPECT_EQ(api.Object(kPod)->at("spec")["x"], 2);
}

TEST(FakeApiTest, StatusSubresourceAndFinalizers) {
  FakeApi api;
  const std::string jobs = ResourcePath("stella.dev/v1alpha1", "stellajobs", "ns");
  const std::string job = ResourcePath("stella.dev/v1alpha1", "stellajobs", "ns", "j");
  json obj = api.Create(jobs, {{"metadata", {{"name", "j"}, {"finalizers", {"f"}}}}, {"spec", {{"a", 1}}}})->body;
  obj["status"] = {{"phase", "Running"}};
  obj["spec"]["a"] = 2;
  ASSERT_EQ(api.Update(job + "/status", obj)->code, 200);
  EXPECT_EQ(api.Object(job)->at("status")["phase"], "Running");
  EXPECT_EQ(api.Object(job)->at("spec")["a"], 1);  // /status changes status only

  ASSERT_EQ(api.Delete(job)->code, 200);
  ASSERT_TRUE(api.Object(job).has_value());  // held by its finalizer
  EXPECT_TRUE(api.Object(job)->at("metadata").contains("deletionTimestamp"));
  ASSERT_EQ(api.Patch(job, {{"metadata", {{"finalizers", json::array()}}}}, PatchType::Merge())->code, 200);
  EXPECT_FALSE(api.Object(job).has_value());
}

TEST(FakeApiTest, DeletePreconditionUid) {
  FakeApi api;
  ASSERT_TRUE(api.Create(kPods, Pod("p")).ok());
  json opts = {{"preconditions", {{"uid", "someone-else"}}}};
  EXPECT_EQ(api.Delete(kPod, &opts)->code, 409);
  EXPECT_TRUE(api.Object(kPod).has_value());
}

TEST(FakeApiTest, ListFiltersNamespaceAndLabels) {
  FakeApi api;
  ASSERT_TRUE(api.Create(kPods, Pod("a", {{"app", "x"}, {"tier", "1"}})).ok());
  ASSERT_TRUE(api.Create(kPods, Pod("b", {{"app", "y"}})).ok());
  ASSERT_TRUE(api.Create(ResourcePath("v1", "pods", "other"), Pod("c", {{"app", "x"}})).ok());
  EXPECT_EQ(api.List(kPods)->items.size(), 2u);
  EXPECT_EQ(api.List(ResourcePath("v1", "pods"), "app=x")->items.size(), 2u);
  EXPECT_EQ(api.List(kPods, "app=x,tier=1")->items.size(), 1u);
  EXPECT_EQ(api.List(kPods, "app=z")->items.size(), 0u);
}

TEST(FakeApiTest, InjectedFailuresAreUsedUp) {
  FakeApi api;
  Failure f;
  f.verb = "POST";
  f.path_contains = "/pods";
  f.code = 403;
  f.reason = "Forbidden";
  f.times = 2;
  api.Fail(f);
  EXPECT_EQ(api.Create(kPods, Pod("p"))->code, 403);
  EXPECT_EQ(ApiReason(*api.Create(kPods, Pod("p"))), "Forbidden");
  EXPECT_EQ(api.Create(kPods, Pod("p"))->code, 201);
  Failure t;
  t.transport_error = UnavailableError("connection refused");
  api.Fail(t);
  auto r = api.Get(kPod);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(api.Count("POST " + kPods), 3);
}

TEST(CheckResponseTest, OneHelperForEveryAnswer) {
  Response ok{201, json::object()};
  EXPECT_TRUE(CheckResponse(ok, "creating x").ok());

  Response not_found = StatusResponse(404, "NotFound", "pods \"p\" not found");
  auto accepted = CheckResponse(not_found, "deleting p", {404});
  ASSERT_TRUE(accepted.ok());
  EXPECT_EQ(accepted->code, 404);
  auto refused = CheckResponse(not_found, "reading p");
  EXPECT_EQ(refused.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("reading p: HTTP 404 NotFound: pods \"p\" not found"));

  auto conflict = CheckResponse(StatusResponse(409, "Conflict", "modified"), "writing status of ns/j");
  EXPECT_EQ(conflict.status().code(), StatusCode::kAborted);
  EXPECT_EQ(conflict.status().message(), "writing status of ns/j: conflict, re-reading");

  auto forbidden = CheckResponse(StatusResponse(403, "Forbidden", "no"), "creating pod p in hub");
  EXPECT_EQ(forbidden.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(forbidden.status().message(), HasSubstr("creating pod p in hub: HTTP 403 Forbidden: no"));

  auto transport = CheckResponse(UnavailableError("connection reset"), "creating pod p");
  EXPECT_EQ(transport.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(transport.status().message(), HasSubstr("creating pod p"));
  EXPECT_THAT(transport.status().message(), HasSubstr("connection reset"));
}

}  // namespace
}  // namespace stella::kube::testing
