// Each reconcile phase against in-memory API servers (kube::testing::FakeApi):
// what it writes, what it leaves alone, and what it tells the dispatcher.
// No threads, no sleeps; the clock is pinned.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/operator/reconcile_fixture.h"

namespace stella::op::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = PhaseResult::Kind;

std::string PodPath(const std::string& name) { return kube::ResourcePath("v1", "pods", kNs, name); }

const spec::JobCondition* Condition(const spec::JobStatus& s, const std::string& type) {
  for (const auto& c : s.conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

// The clouds give both gateways an ingress address.
void SetLoadBalancers(Fixture& f) {
  Fixture::MergePatch(f.hub, kube::ResourcePath("v1", "services", kNs, GatewayServiceName(kJob, "a")),
                      LoadBalancerStatus("ip", "10.0.0.1"));
  Fixture::MergePatch(f.edge, kube::ResourcePath("v1", "services", kNs, GatewayServiceName(kJob, "b")),
                      LoadBalancerStatus("ip", "10.0.0.2"));
}

// --- ReadJob ---

TEST(ReadJobTest, MissingJobOrMalformedKeyEndsThePassWithoutRequests) {
  Fixture f;
  JobState st;
  EXPECT_EQ(ReadJob(f.deps, kKey, &st).kind(), Kind::kDone);
  EXPECT_EQ(ReadJob(f.deps, "no-slash", &st).kind(), Kind::kDone);
  EXPECT_TRUE(f.hub.Requests().empty());
}

TEST(ReadJobTest, FillsTheStateFromTheCachedObject) {
  Fixture f;
  f.PutJob(JobSpec(), true, {{"phase", "Created"}, {"restarts", 2}});
  JobState st;
  ASSERT_TRUE(ReadJob(f.deps, kKey, &st).proceed());
  EXPECT_EQ(st.uid, kUid);
  EXPECT_EQ(st.generation, 1);
  EXPECT_EQ(st.status.phase, "Created");
  EXPECT_EQ(st.status.restarts, 2);
  EXPECT_EQ(st.now, kNow);
  EXPECT_TRUE(st.spec_error.ok());
  EXPECT_EQ(st.job.TotalWorkers(), 2);
}

// --- Finalizer ---

TEST(FinalizerPhaseTest, AddsTheFinalizerBeforeAnythingElse) {
  Fixture f;
  f.PutJob(JobSpec(), /*finalizer=*/false);
  JobState st;
  ASSERT_TRUE(ReadJob(f.deps, kKey, &st).proceed());
  PhaseResult r = Finalizer(f.deps, st);
  EXPECT_TRUE(r.proceed());
  EXPECT_EQ(f.Job()["metadata"]["finalizers"], json::array({kFinalizer}));
  EXPECT_EQ(st.obj["metadata"]["resourceVersion"], f.Job()["metadata"]["resourceVersion"]);
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
}

TEST(FinalizerPhaseTest, AStaleReadIsAConflictRetriedOnAFreshRead) {
  Fixture f;
  f.PutJob(JobSpec(), /*finalizer=*/false);
  JobState st;
  ASSERT_TRUE(ReadJob(f.deps, kKey, &st).proceed());
  f.PutJob(JobSpec(), /*finalizer=*/false);  // someone else wrote meanwhile: new resourceVersion
  PhaseResult r = Finalizer(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kAborted);
  EXPECT_THAT(r.error().message(), HasSubstr("adding the finalizer to team/mnist"));
}

TEST(FinalizerPhaseTest, ForbiddenPatchIsAnErrorWithContext) {
  Fixture f;
  f.PutJob(JobSpec(), /*finalizer=*/false);
  f.hub.Fail(HttpFailure("PATCH", "stellajobs", 403, "Forbidden"));
  auto r = f.Reconcile();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("adding the finalizer to team/mnist: HTTP 403 Forbidden"));
}

TEST(FinalizerPhaseTest, DeletionRemovesChildrenThenTheFinalizer) {
  Fixture f;
  f.PutJob(JobSpec(2, /*edge=*/true));
  // Bring the job up: services, gateway addresses, secrets, pods.
  ASSERT_TRUE(f.Reconcile().ok());
  SetLoadBalancers(f);
  ASSERT_TRUE(f.Reconcile().ok());
  ASSERT_EQ(f.ServicesIn(f.edge).size(), 2u);  // headless + gateway
  ASSERT_EQ(f.edge.Objects(kube::ResourcePath("v1", "secrets", kNs)).size(), 1u);
  ASSERT_EQ(f.PodsIn(f.hub).size(), 2u);
  ASSERT_EQ(f.hub.Delete(JobsPath(kNs, kJob))->code, 200);  // sets deletionTimestamp (finalizer)

  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requeue_after, milliseconds(1000));  // children were there: wait until they are gone
  EXPECT_TRUE(f.ServicesIn(f.hub).empty());
  EXPECT_TRUE(f.ServicesIn(f.edge).empty());
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_TRUE(f.hub.Object(JobsPath(kNs, kJob)).has_value());

  r = f.Reconcile();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requeue_after, milliseconds(0));
  EXPECT_FALSE(f.hub.Object(JobsPath(kNs, kJob)).has_value());  // finalizer removed: gone
  EXPECT_TRUE(f.edge.Objects(kube::ResourcePath("v1", "secrets", kNs)).empty());
}

TEST(FinalizerPhaseTest, UnreachableMemberBlocksDeletionAndNothingIsRemoved) {
  Fixture f;
  f.PutJob(JobSpec(1, /*edge=*/true));
  f.edge.Put(kube::ResourcePath("v1", "pods", kNs),
             {{"metadata", {{"name", "mnist-b-0"}, {"labels", {{kLabelJobUid, kUid}}}}}});
  ASSERT_EQ(f.hub.Delete(JobsPath(kNs, kJob))->code, 200);
  f.edge_member().healthy = false;
  f.edge_member().last_error = "connection refused";
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, f.deps.options.unreachable_retry);
  EXPECT_EQ(f.PodsIn(f.edge).size(), 1u);
  EXPECT_TRUE(f.hub.Object(JobsPath(kNs, kJob)).has_value());
}

// --- CheckSpec ---

TEST(CheckSpecPhaseTest, NamesTooLongForServicesFailTheJobOnce) {
  Fixture f;
  json spec = JobSpec();
  spec["clusters"][0]["name"] = std::string(60, 'c');
  f.PutJob(spec);
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(0));
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Failed");
  ASSERT_NE(Condition(s, "Failed"), nullptr);
  EXPECT_EQ(Condition(s, "Failed")->reason, "InvalidSpec");
  EXPECT_THAT(f.EventReasons(), ElementsAre("InvalidSpec"));
  EXPECT_TRUE(f.ServicesIn(f.hub).empty());
  // A second pass changes nothing and records no second Event.
  f.hub.ClearRequests();
  ASSERT_TRUE(f.Reconcile().ok());
  EXPECT_EQ(f.hub.Count("PUT"), 0);
  EXPECT_THAT(f.EventReasons(), ElementsAre("InvalidSpec"));
}

// --- Finished ---

TEST(FinishedPhaseTest, DeletesTheJobTtlSecondsAfterCompletion) {
  Fixture f;
  json spec = JobSpec();
  spec["runPolicy"] = {{"ttlSecondsAfterFinished", 60}};
  f.PutJob(spec, true, {{"phase", "Succeeded"}, {"completionTime", Rfc3339(kNow - 30)}});
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(30 * 1000 + 100));
  EXPECT_EQ(f.hub.Count("DELETE"), 0);

  f.now = kNow + 31;
  r = f.Reconcile();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(f.hub.Count("DELETE " + JobsPath(kNs, kJob)), 1);
  EXPECT_TRUE(Terminating(f.Job()));  // the finalizer now holds it until the children are gone
}

TEST(FinishedPhaseTest, AFinishedJobWithoutTtlIsLeftAlone) {
  Fixture f;
  f.PutJob(JobSpec(), true, {{"phase", "Failed"}, {"completionTime", Rfc3339(kNow - 3600)}});
  f.hub.ClearRequests();
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(0));
  EXPECT_TRUE(f.hub.Requests().empty());
}

// --- ObserveMembers ---

TEST(ObservePhaseTest, UnreachableMemberIsReportedAndNothingIsCreated) {
  Fixture f;
  f.PutJob(JobSpec(1, /*edge=*/true));
  f.directory.errors["edge-kc"] = NotFoundError("Secret team/edge-kc not found");
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, f.deps.options.unreachable_retry);
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Pending");
  EXPECT_THAT(s.message, HasSubstr("member cluster unreachable: b (Secret team/edge-kc not found)"));
  ASSERT_EQ(s.clusters.size(), 2u);
  EXPECT_TRUE(s.clusters[0].reachable);
  EXPECT_FALSE(s.clusters[1].reachable);
  ASSERT_NE(Condition(s, "ClusterUnreachable"), nullptr);
  EXPECT_EQ(Condition(s, "ClusterUnreachable")->status, "True");
  EXPECT_THAT(f.EventReasons(), ElementsAre("ClusterUnreachable"));
  EXPECT_TRUE(f.ServicesIn(f.hub).empty());
  EXPECT_TRUE(f.PodsIn(f.hub).empty());

  // Back: the condition flips, an Event says so, the message goes.
  f.directory.errors.clear();
  ASSERT_TRUE(f.Reconcile().ok());
  s = f.ReadStatus();
  EXPECT_EQ(Condition(s, "ClusterUnreachable")->status, "False");
  EXPECT_THAT(f.EventReasons(), Contains("ClusterReachable"));
  EXPECT_EQ(f.ServicesIn(f.hub).size(), 2u);
}

TEST(ObservePhaseTest, MemberStillSyncingIsRetriedSoon) {
  Fixture f;
  f.PutJob(JobSpec());
  f.hub_member().synced = false;
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(500));
  EXPECT_EQ(f.ReadStatus().phase, "Pending");
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
}

// --- Suspend ---

TEST(SuspendPhaseTest, SuspendDeletesPodsKeepsServicesAndResumeRecreates) {
  Fixture f;
  f.PutJob(JobSpec(2));
  ASSERT_TRUE(f.Reconcile().ok());
  ASSERT_EQ(f.PodsIn(f.hub).size(), 2u);
  ASSERT_FALSE(f.ReadStatus().start_time.empty());

  json spec = JobSpec(2);
  spec["runPolicy"] = {{"suspend", true}};
  Fixture::MergePatch(f.hub, JobsPath(kNs, kJob), {{"spec", spec}});
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_EQ(f.ServicesIn(f.hub).size(), 1u);
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Suspended");
  EXPECT_TRUE(s.start_time.empty());
  EXPECT_FALSE(s.first_start_time.empty());
  EXPECT_THAT(f.EventReasons(), Contains("Suspended"));

  spec["runPolicy"]["suspend"] = false;
  Fixture::MergePatch(f.hub, JobsPath(kNs, kJob), {{"spec", spec}});
  ASSERT_TRUE(f.Reconcile().ok());
  EXPECT_EQ(f.PodsIn(f.hub).size(), 2u);
  s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Created");
  EXPECT_EQ(Condition(s, "Suspended")->status, "False");
  EXPECT_THAT(f.EventReasons(), Contains("Resumed"));
}

// --- Deadline ---

TEST(DeadlinePhaseTest, RunningPastTheDeadlineFailsAndStopsRunningPods) {
  Fixture f;
  json spec = JobSpec(2);
  spec["runPolicy"] = {{"activeDeadlineSeconds", 100}};
  f.PutJob(spec);
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(100 * 1000 + 100));  // woken at the deadline
  f.SetAllPods(f.hub, "Running");

  f.now = kNow + 100;
  r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Failed");
  EXPECT_EQ(Condition(s, "Failed")->reason, "DeadlineExceeded");
  EXPECT_EQ(s.completion_time, Rfc3339(kNow + 100));
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_THAT(f.EventReasons(), Contains("DeadlineExceeded"));
}

// --- Services ---

TEST(ServicesPhaseTest, CreatesHeadlessServiceAndToleratesAlreadyExists) {
  Fixture f;
  f.PutJob(JobSpec(1));
  JobState st = f.RunUpTo(Services);
  // Created by an earlier pass that the cache has not shown yet.
  f.hub.Put(kube::ResourcePath("v1", "services", kNs), {{"metadata", {{"name", HeadlessServiceName(kJob, "a")}}}});
  PhaseResult r = Services(f.deps, st);
  EXPECT_TRUE(r.proceed()) << r.error().ToString();
  EXPECT_EQ(f.hub.Count("POST /api/v1/namespaces/team/services"), 1);
}

TEST(ServicesPhaseTest, ForbiddenCreateIsAnErrorNamingServiceAndMember) {
  Fixture f;
  f.PutJob(JobSpec(1));
  JobState st = f.RunUpTo(Services);
  f.hub.Fail(HttpFailure("POST", "/services", 403, "Forbidden", "services is forbidden"));
  PhaseResult r = Services(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.error().message(),
              HasSubstr("creating service " + HeadlessServiceName(kJob, "a") + " in hub: HTTP 403 Forbidden"));
}

// --- Gateways ---

TEST(GatewaysPhaseTest, WaitsForLoadBalancersThenRecordsAddressesBeforeWorkers) {
  Fixture f;
  f.PutJob(JobSpec(1, /*edge=*/true));
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(2000));
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Created");
  EXPECT_THAT(s.message, HasSubstr("waiting for gateway addresses"));
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_TRUE(f.PodsIn(f.edge).empty());

  // The clouds assign ingress addresses.
  Fixture::MergePatch(f.hub, kube::ResourcePath("v1", "services", kNs, GatewayServiceName(kJob, "a")),
                      LoadBalancerStatus("ip", "10.0.0.1"));
  Fixture::MergePatch(f.edge, kube::ResourcePath("v1", "services", kNs, GatewayServiceName(kJob, "b")),
                      LoadBalancerStatus("hostname", "b.example"));
  JobState st = f.RunUpTo(Gateways);
  PhaseResult g = Gateways(f.deps, st);
  ASSERT_TRUE(g.proceed()) << g.error().ToString();
  EXPECT_THAT(st.gateway_addresses, ElementsAre("10.0.0.1:29500", "b.example:29500"));
  s = f.ReadStatus();  // written before any worker exists
  EXPECT_EQ(s.clusters[0].gateway_address, "10.0.0.1:29500");
  EXPECT_EQ(s.clusters[1].gateway_address, "b.example:29500");
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
}

// --- RestartOrFail ---

TEST(RestartPhaseTest, AFailedPodRestartsEveryRankThenTheLimitFailsTheJob) {
  Fixture f;
  json spec = JobSpec(2);
  spec["runPolicy"] = {{"backoffLimit", 1}};
  f.PutJob(spec);
  ASSERT_TRUE(f.Reconcile().ok());
  f.SetPodPhase(f.hub, PodName(kJob, "a", 1), "Failed");
  ASSERT_TRUE(f.Reconcile().ok());
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.restarts, 1);
  EXPECT_THAT(s.message, HasSubstr("restarting after " + PodName(kJob, "a", 1)));
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_THAT(f.EventReasons(), Contains("Restarting"));

  ASSERT_TRUE(f.Reconcile().ok());  // attempt 1 created
  ASSERT_EQ(f.PodsIn(f.hub).size(), 2u);
  EXPECT_EQ(Attempt(f.PodsIn(f.hub)[0]), 1);
  f.SetPodPhase(f.hub, PodName(kJob, "a", 0), "Running");
  f.SetPodPhase(f.hub, PodName(kJob, "a", 1), "Failed");
  ASSERT_TRUE(f.Reconcile().ok());
  s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Failed");
  EXPECT_EQ(Condition(s, "Failed")->reason, "BackoffLimitExceeded");
  // The failed pod stays for its logs; the running one goes.
  std::vector<json> pods = f.PodsIn(f.hub);
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_EQ(kube::NameOf(pods[0]), PodName(kJob, "a", 1));
}

TEST(RestartPhaseTest, RestartPolicyNeverFailsAtOnce) {
  Fixture f;
  json spec = JobSpec(1);
  spec["runPolicy"] = {{"restartPolicy", "Never"}};
  f.PutJob(spec);
  ASSERT_TRUE(f.Reconcile().ok());
  f.SetPodPhase(f.hub, PodName(kJob, "a", 0), "Failed");
  JobState st = f.RunUpTo(RestartOrFail);
  PhaseResult r = RestartOrFail(f.deps, st);
  EXPECT_EQ(r.kind(), Kind::kDone);
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Failed");
  EXPECT_EQ(Condition(s, "Failed")->reason, "PodFailed");
  EXPECT_THAT(s.message, HasSubstr("(restartPolicy Never)"));
  EXPECT_EQ(s.restarts, 0);
}

// --- Tls ---

std::string CaOf(FakeApi& api, const std::string& cluster) {
  auto s = api.Object(kube::ResourcePath("v1", "secrets", kNs, TlsSecretName(kJob, cluster)));
  return s ? s->value("/metadata/annotations"_json_pointer, json::object()).value(kAnnotationCa, "") : "";
}

TEST(TlsPhaseTest, OneJobCaForEveryGatewayAndRotationReissuesAndRestarts) {
  Fixture f;
  f.PutJob(JobSpec(1, /*edge=*/true));
  ASSERT_TRUE(f.Reconcile().ok());  // services; waiting for addresses
  SetLoadBalancers(f);
  ASSERT_TRUE(f.Reconcile().ok());
  const std::string ca = CaOf(f.hub, "a");
  ASSERT_FALSE(ca.empty());
  EXPECT_EQ(CaOf(f.edge, "b"), ca);
  ASSERT_EQ(f.PodsIn(f.hub).size(), 1u);
  ASSERT_EQ(f.PodsIn(f.edge).size(), 1u);

  // Every worker present: the Secrets are not even read again.
  f.edge.ClearRequests();
  JobState st = f.RunUpTo(Tls);
  EXPECT_TRUE(Tls(f.deps, st).proceed());
  EXPECT_EQ(f.edge.Count("GET /api/v1/namespaces/team/secrets"), 0);

  Fixture::MergePatch(f.hub, JobsPath(kNs, kJob), {{"metadata", {{"annotations", {{kAnnotationRotate, "r1"}}}}}});
  st = f.RunUpTo(Tls);
  PhaseResult r = Tls(f.deps, st);
  EXPECT_EQ(r.kind(), Kind::kDone);
  EXPECT_NE(CaOf(f.hub, "a"), ca);
  EXPECT_EQ(CaOf(f.edge, "b"), CaOf(f.hub, "a"));
  EXPECT_EQ(f.ReadStatus().certificates_rotation, "r1");
  EXPECT_TRUE(f.PodsIn(f.hub).empty());
  EXPECT_TRUE(f.PodsIn(f.edge).empty());
  EXPECT_THAT(f.EventReasons(), Contains("CertificatesRotated"));
}

TEST(TlsPhaseTest, AConflictingSecretWriteIsAConflict) {
  Fixture f;
  f.PutJob(JobSpec(1, /*edge=*/true));
  ASSERT_TRUE(f.Reconcile().ok());
  SetLoadBalancers(f);
  f.edge.Fail(HttpFailure("POST", "/secrets", 409, "AlreadyExists"));
  JobState st = f.RunUpTo(Tls);
  PhaseResult r = Tls(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kAborted);
  EXPECT_THAT(r.error().message(), HasSubstr("writing secret " + TlsSecretName(kJob, "b") + " in edge"));
}

// --- Pods ---

TEST(PodsPhaseTest, OnePodPerRankStaleAttemptsGo) {
  Fixture f;
  f.PutJob(JobSpec(2), true, {{"restarts", 1}});
  // A pod of attempt 0 still holds rank 1's name.
  f.hub.Put(kube::ResourcePath("v1", "pods", kNs), {{"metadata",
                                                     {{"name", PodName(kJob, "a", 1)},
                                                      {"labels", {{kLabelJobUid, kUid}, {kLabelCluster, "a"}}},
                                                      {"annotations", {{kAnnotationAttempt, "0"}}}}}});
  JobState st = f.RunUpTo(Pods);
  PhaseResult r = Pods(f.deps, st);
  EXPECT_TRUE(r.proceed()) << r.error().ToString();
  EXPECT_EQ(f.hub.Count("DELETE " + PodPath(PodName(kJob, "a", 1))), 1);
  // Rank 0 created now; rank 1 waits for its name to be free.
  EXPECT_EQ(f.hub.Count("POST /api/v1/namespaces/team/pods"), 1);
  ASSERT_TRUE(f.hub.Object(PodPath(PodName(kJob, "a", 0))).has_value());
  EXPECT_EQ(Attempt(*f.hub.Object(PodPath(PodName(kJob, "a", 0)))), 1);
  EXPECT_EQ(st.status.start_time, Rfc3339(kNow));
  EXPECT_EQ(st.status.first_start_time, Rfc3339(kNow));
}

TEST(PodsPhaseTest, InvalidPodIsAnErrorNamingThePod) {
  Fixture f;
  f.PutJob(JobSpec(1));
  JobState st = f.RunUpTo(Pods);
  f.hub.Fail(HttpFailure("POST", "/pods", 422, "Invalid", "spec.containers[0].image: Required value"));
  PhaseResult r = Pods(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("creating pod " + PodName(kJob, "a", 0) + " in hub: HTTP 422 Invalid"));
}

TEST(PodsPhaseTest, TransportFailureKeepsItsCause) {
  Fixture f;
  f.PutJob(JobSpec(1));
  JobState st = f.RunUpTo(Pods);
  kube::testing::Failure reset = HttpFailure("POST", "/pods", 0, "");
  reset.transport_error = UnavailableError("connection reset");
  f.hub.Fail(reset);
  PhaseResult r = Pods(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.error().message(), HasSubstr("connection reset"));
  EXPECT_THAT(r.error().message(), HasSubstr("creating pod " + PodName(kJob, "a", 0)));
}

// --- Status ---

TEST(StatusPhaseTest, CountsPhasesEventsAndRequeue) {
  Fixture f;
  f.PutJob(JobSpec(2));
  auto r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(0));
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Created");
  EXPECT_EQ(s.message, "0/2 workers running");
  EXPECT_EQ(s.observed_generation, 1);
  ASSERT_EQ(s.clusters.size(), 1u);
  // Pods created this pass count as pending (the cache had not shown them).
  ASSERT_TRUE(s.clusters[0].counts.has_value());
  EXPECT_EQ(s.clusters[0].counts->pending, 2);
  EXPECT_EQ(s.clusters_ready, "0/1");

  f.SetAllPods(f.hub, "Running");
  r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, f.deps.options.runtime_poll);
  s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Running");
  EXPECT_TRUE(s.message.empty());
  EXPECT_EQ(s.clusters[0].counts->running, 2);
  EXPECT_EQ(s.clusters[0].counts->ready, 2);
  EXPECT_EQ(s.clusters_ready, "1/1");
  EXPECT_THAT(f.EventReasons(), ElementsAre("Created", "Running"));

  // Nothing changed: no write, no Event.
  f.hub.ClearRequests();
  ASSERT_TRUE(f.Reconcile().ok());
  EXPECT_EQ(f.hub.Count("PUT"), 0);
  EXPECT_EQ(f.hub.Count("POST"), 0);

  f.SetAllPods(f.hub, "Succeeded");
  r = f.Reconcile();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requeue_after, milliseconds(0));
  s = f.ReadStatus();
  EXPECT_EQ(s.phase, "Succeeded");
  EXPECT_EQ(s.completion_time, Rfc3339(kNow));
  EXPECT_EQ(Condition(s, "Succeeded")->status, "True");
  EXPECT_EQ(Condition(s, "Running")->status, "False");
}

TEST(StatusPhaseTest, AStatusWriteOnAStaleObjectIsAConflict) {
  Fixture f;
  f.PutJob(JobSpec(1));
  JobState st = f.RunUpTo(StatusPhase);
  Fixture::MergePatch(f.hub, JobsPath(kNs, kJob), {{"metadata", {{"labels", {{"x", "y"}}}}}});
  PhaseResult r = StatusPhase(f.deps, st);
  ASSERT_EQ(r.kind(), Kind::kError);
  EXPECT_EQ(r.error().code(), StatusCode::kAborted);
  EXPECT_THAT(r.error().message(), HasSubstr("writing status of team/mnist"));
}

}  // namespace
}  // namespace stella::op::testing
