// The Controller's wiring (job and child informers, work queue, workers,
// Reconciler) on an in-memory hub: a job goes from creation to Running and,
// once deleted, leaves nothing behind. The waits poll state with a deadline;
// every assertion is on what the fake API server holds.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "operator/controller/controller.h"
#include "src/metrics/registry.h"
#include "tests/operator/reconcile_fixture.h"

namespace stella::op::testing {
namespace {

// True once `done` holds; false after 10 s.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

TEST(ControllerTest, RunsAJobFromItsCachesAndCleansUpOnDeletion) {
  FakeApi hub;
  metrics::Registry registry;
  OperatorMetrics om(&registry);
  Logger log(LogLevel::kError);
  ControllerOptions o;
  o.workers = 2;
  Controller controller(&hub, o, &om, &log);
  controller.Start();
  ASSERT_TRUE(Eventually([&] { return controller.Ready(); }));

  json job = {{"apiVersion", kGroupVersion},
              {"kind", "StellaJob"},
              {"metadata", {{"name", kJob}, {"namespace", kNs}, {"uid", kUid}, {"generation", 1}}},
              {"spec", JobSpec(2)}};
  hub.Put(JobsPath(kNs), job);
  const std::string pods = kube::ResourcePath("v1", "pods", kNs);
  ASSERT_TRUE(Eventually([&] { return hub.Objects(pods).size() == 2; }));
  auto stored = hub.Object(JobsPath(kNs, kJob));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ((*stored)["metadata"]["finalizers"], json::array({kFinalizer}));

  Fixture helper;  // for its kubelet stand-in
  for (const auto& p : hub.Objects(pods)) helper.SetPodPhase(hub, kube::NameOf(p), "Running");
  ASSERT_TRUE(Eventually([&] {
    auto j = hub.Object(JobsPath(kNs, kJob));
    return j && j->value("/status/phase"_json_pointer, std::string()) == "Running";
  }));

  ASSERT_EQ(hub.Delete(JobsPath(kNs, kJob))->code, 200);
  ASSERT_TRUE(Eventually([&] { return !hub.Object(JobsPath(kNs, kJob)).has_value(); }));
  EXPECT_TRUE(hub.Objects(pods).empty());
  EXPECT_TRUE(hub.Objects(kube::ResourcePath("v1", "services", kNs)).empty());
  controller.Stop();
}

TEST(ControllerTest, StopWithoutStartAndTwiceIsSafe) {
  FakeApi hub;
  metrics::Registry registry;
  OperatorMetrics om(&registry);
  Logger log(LogLevel::kError);
  Controller controller(&hub, ControllerOptions{}, &om, &log);
  controller.Stop();
  controller.Stop();
  SUCCEED();
}

}  // namespace
}  // namespace stella::op::testing
