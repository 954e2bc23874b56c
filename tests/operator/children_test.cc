// The objects the operator builds for a job, the gateway address decision
// and the status helpers: pure functions, checked without an API server.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <utility>

#include "operator/controller/children.h"
#include "operator/controller/gateway.h"
#include "operator/controller/names.h"
#include "operator/controller/status.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

spec::StellaJob LoadExample() {
  auto job =
      spec::LoadStellaJobFile(std::string(std::getenv("STELLA_SOURCE_DIR")) + "/examples/kubernetes/stellajob.yaml");
  EXPECT_TRUE(job.ok()) << job.status().ToString();
  job->metadata.uid = "uid-1";
  return *job;
}

ChildContext Context(const spec::StellaJob& job) {
  ChildContext ctx;
  ctx.job = &job;
  ctx.origin = "hub";
  ctx.default_image = "stella:test";
  ctx.gateway_addresses = {"10.0.0.1:29500", "192.168.1.7:31000"};
  ctx.gateway_nodes = {"", ""};
  return ctx;
}

std::vector<std::string> Args(const json& pod) {
  return pod["spec"]["containers"][0]["args"].get<std::vector<std::string>>();
}

bool HasArg(const json& pod, const std::string& flag) {
  for (const auto& a : Args(pod)) {
    if (a == flag) return true;
  }
  return false;
}

std::string ArgAfter(const json& pod, const std::string& flag) {
  auto args = Args(pod);
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return "<absent>";
}

TEST(ChildrenTest, WorkerPodCarriesRankPeersResourcesAndHardening) {
  spec::StellaJob job = LoadExample();
  ChildContext ctx = Context(job);
  json pod = BuildWorkerPod(ctx, /*cluster=*/1, /*rank=*/1);
  EXPECT_EQ(pod["metadata"]["name"], "fashion-cnn-cloud-1");
  EXPECT_EQ(pod["metadata"]["labels"][kLabelJobUid], "uid-1");
  EXPECT_EQ(pod["metadata"]["labels"][kLabelCluster], "cloud");
  EXPECT_EQ(pod["metadata"]["labels"][kLabelRank], "1");
  EXPECT_EQ(pod["metadata"]["labels"][kLabelOrigin], "hub");
  EXPECT_FALSE(pod["metadata"].contains("ownerReferences"));  // member children cannot point at the hub
  EXPECT_EQ(ArgAfter(pod, "--cluster-index"), "1");
  EXPECT_EQ(ArgAfter(pod, "--local-rank"), "1");
  EXPECT_EQ(ArgAfter(pod, "--store-host"), "fashion-cnn-cloud-0.fashion-cnn-cloud");
  // Its own gateway binds; the other cluster's is dialled.
  EXPECT_EQ(ArgAfter(pod, "--wan-addresses"), "10.0.0.1:29500,0.0.0.0:29500");
  EXPECT_EQ(ArgAfter(pod, "--bind-host"), "$(POD_IP)");
  EXPECT_TRUE(HasArg(pod, "--resume"));    // the example has checkpoints: a recreated worker continues
  EXPECT_FALSE(HasArg(pod, "--tls-dir"));  // only gateways speak WAN TLS
  const json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["image"], "stella:test");
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], "1");
  EXPECT_EQ(pod["spec"]["nodeSelector"]["stella.dev/pool"], "gpu");
  EXPECT_EQ(pod["spec"]["restartPolicy"], "Never");
  EXPECT_EQ(pod["spec"]["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(pod["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
  EXPECT_EQ(c["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(c["securityContext"]["allowPrivilegeEscalation"], false);
  EXPECT_EQ(pod["spec"]["automountServiceAccountToken"], false);
  // The manifest the worker reads is the job's spec, parseable by the runtime.
  std::string manifest;
  for (const auto& e : c["env"]) {
    if (e["name"] == "STELLA_JOB") manifest = e["value"];
  }
  auto reparsed = spec::ParseStellaJob(manifest);
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().ToString();
  EXPECT_EQ(reparsed->spec, job.spec);
}

TEST(ChildrenTest, TolerationsMemberResourcesAndMigPassThrough) {
  spec::StellaJob job = LoadExample();
  job.spec.clusters[0].resources.limits["nvidia.com/mig-1g.5gb"] = "1";
  ChildContext ctx = Context(job);
  json pod = BuildWorkerPod(ctx, 0, 0);
  const json& res = pod["spec"]["containers"][0]["resources"];
  EXPECT_EQ(res["limits"]["nvidia.com/mig-1g.5gb"], "1");
  EXPECT_FALSE(res["limits"].contains("nvidia.com/gpu"));  // the MIG slice replaces the whole GPU
  EXPECT_EQ(res["requests"]["cpu"], "2");
  EXPECT_EQ(pod["spec"]["tolerations"][0],
            (json{{"key", "nvidia.com/gpu"}, {"operator", "Exists"}, {"effect", "NoSchedule"}}));
  // Rank 0 is the gateway: it mounts its cluster's TLS Secret, readable by the worker's group only.
  EXPECT_EQ(ArgAfter(pod, "--tls-dir"), "/etc/stella/tls");
  bool mounted = false;
  for (const auto& v : pod["spec"]["volumes"]) {
    if (v["name"] == "tls") {
      EXPECT_EQ(v["secret"]["secretName"], "fashion-cnn-onprem-tls");
      EXPECT_EQ(v["secret"]["defaultMode"], 0440);
      mounted = true;
    }
  }
  EXPECT_TRUE(mounted);
  json secret = BuildTlsSecret(ctx, 0, "CA", "CRT", "KEY", "abcd");
  EXPECT_EQ(secret["type"], "kubernetes.io/tls");
  EXPECT_EQ(secret["stringData"]["tls.key"], "KEY");
  EXPECT_EQ(secret["metadata"]["annotations"][kAnnotationCa], "abcd");
  EXPECT_EQ(secret["metadata"]["labels"][kLabelJobUid], "uid-1");
  // Rank 0 exposes the WAN port.
  bool wan = false;
  for (const auto& p : pod["spec"]["containers"][0]["ports"]) wan = wan || p["name"] == "wan";
  EXPECT_TRUE(wan);
}

// The volume named "checkpoints" and where the container mounts it; null
// when the pod has none.
std::pair<json, std::string> CheckpointVolume(const json& pod) {
  std::pair<json, std::string> out{nullptr, ""};
  for (const auto& v : pod["spec"]["volumes"]) {
    if (v["name"] == "checkpoints") out.first = v;
  }
  for (const auto& m : pod["spec"]["containers"][0]["volumeMounts"]) {
    if (m["name"] == "checkpoints") out.second = m["mountPath"];
  }
  return out;
}

TEST(ChildrenTest, WorkersResumeOnlyWithCheckpoints) {
  spec::StellaJob job = LoadExample();
  ChildContext ctx = Context(job);
  ctx.attempt = 2;
  json pod = BuildWorkerPod(ctx, 0, 0);
  EXPECT_TRUE(HasArg(pod, "--resume"));
  EXPECT_EQ(pod["metadata"]["annotations"][kAnnotationAttempt], "2");
  // The example's claim is mounted at the checkpoint path (the root
  // filesystem is read-only), so checkpoints outlive the pod.
  auto [volume, mount] = CheckpointVolume(pod);
  EXPECT_EQ(volume["persistentVolumeClaim"]["claimName"], "fashion-cnn-checkpoints");
  EXPECT_EQ(mount, "/checkpoints/fashion-cnn");
  // Without a claim the directory is still writable, as an emptyDir.
  job.spec.checkpoint.claim_name.clear();
  std::tie(volume, mount) = CheckpointVolume(BuildWorkerPod(ctx, 0, 0));
  EXPECT_TRUE(volume.contains("emptyDir"));
  EXPECT_EQ(mount, "/checkpoints/fashion-cnn");
  job.spec.checkpoint.path.clear();
  job.spec.checkpoint.interval_steps = 0;
  pod = BuildWorkerPod(ctx, 0, 0);
  EXPECT_FALSE(HasArg(pod, "--resume"));
  EXPECT_TRUE(CheckpointVolume(pod).first.is_null());
}

TEST(ChildrenTest, HubChildrenAreOwnedAndServicesSelectTheirCluster) {
  spec::StellaJob job = LoadExample();
  ChildContext ctx = Context(job);
  ctx.hub = true;
  json svc = BuildHeadlessService(ctx, 0);
  EXPECT_EQ(svc["metadata"]["name"], "fashion-cnn-onprem");
  EXPECT_EQ(svc["spec"]["clusterIP"], "None");
  EXPECT_EQ(svc["metadata"]["ownerReferences"][0]["uid"], "uid-1");
  EXPECT_EQ(svc["spec"]["selector"][kLabelCluster], "onprem");
  auto gw = BuildGatewayService(ctx, 1);
  ASSERT_TRUE(gw.has_value());
  EXPECT_EQ((*gw)["spec"]["type"], "NodePort");
  EXPECT_EQ((*gw)["spec"]["selector"][kLabelRank], "0");
  job.spec.clusters[1].gateway.type = spec::GatewayType::kHostNetwork;
  EXPECT_FALSE(BuildGatewayService(ctx, 1).has_value());
  ctx.gateway_nodes = {"", "node-3"};
  json gw_pod = BuildWorkerPod(ctx, 1, 0);
  EXPECT_EQ(gw_pod["spec"]["hostNetwork"], true);
  EXPECT_EQ(gw_pod["spec"]["nodeName"], "node-3");
  EXPECT_FALSE(BuildWorkerPod(ctx, 1, 1)["spec"].contains("hostNetwork"));
}

TEST(ChildrenTest, OverlongChildNamesAreRefusedNamingTheField) {
  spec::StellaJob job = LoadExample();
  job.metadata.name = std::string(56, 'a');
  Status s = CheckChildNames(job);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("spec.clusters[0].name"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("63"), std::string::npos);
}

json Node(const std::string& name, bool ready, const std::string& internal, const std::string& external = "",
          json labels = json::object()) {
  json addrs = json::array();
  if (!internal.empty()) addrs.push_back({{"type", "InternalIP"}, {"address", internal}});
  if (!external.empty()) addrs.push_back({{"type", "ExternalIP"}, {"address", external}});
  return {
      {"metadata", {{"name", name}, {"labels", labels}}},
      {"status", {{"addresses", addrs}, {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

TEST(GatewayTest, LoadBalancerWaitsForIngress) {
  spec::ClusterSpec cl;
  cl.name = "a";
  json svc = {{"spec", {{"ports", {{{"port", 29500}}}}}}, {"status", {{"loadBalancer", json::object()}}}};
  GatewayResolution g = ResolveGateway(cl, "u", &svc, {});
  EXPECT_TRUE(g.address.empty());
  EXPECT_NE(g.waiting.find("no ingress"), std::string::npos);
  svc["status"]["loadBalancer"]["ingress"] = {{{"hostname", "gw.example.com"}}};
  EXPECT_EQ(ResolveGateway(cl, "u", &svc, {}).address, "gw.example.com:29500");
  EXPECT_TRUE(ResolveGateway(cl, "u", nullptr, {}).address.empty());
}

TEST(GatewayTest, NodePortUsesAReadyNodePreferringExternalAddresses) {
  spec::ClusterSpec cl;
  cl.name = "b";
  cl.gateway.type = spec::GatewayType::kNodePort;
  json svc = {{"spec", {{"ports", {{{"port", 29500}, {"nodePort", 31555}}}}}}};
  std::vector<json> nodes = {Node("n2", true, "10.1.0.2", "203.0.113.2"), Node("n1", false, "10.1.0.1"),
                             Node("n3", true, "10.1.0.3")};
  EXPECT_EQ(ResolveGateway(cl, "u", &svc, nodes).address, "203.0.113.2:31555");
  EXPECT_FALSE(ResolveGateway(cl, "u", &svc, {Node("n1", false, "10.1.0.1")}).waiting.empty());
}

TEST(GatewayTest, HostNetworkPinsAMatchingNodeDeterministically) {
  spec::ClusterSpec cl;
  cl.name = "c";
  cl.gateway.type = spec::GatewayType::kHostNetwork;
  cl.gateway.port = 30000;
  cl.node_selector["pool"] = "gw";
  std::vector<json> nodes = {Node("n1", true, "10.2.0.1", "", {{"pool", "gw"}}), Node("n2", true, "10.2.0.2"),
                             Node("n3", true, "10.2.0.3", "", {{"pool", "gw"}})};
  GatewayResolution a = ResolveGateway(cl, "job-uid", nullptr, nodes);
  EXPECT_TRUE(a.node == "n1" || a.node == "n3") << a.node;
  EXPECT_EQ(a.address, (a.node == "n1" ? "10.2.0.1:30000" : "10.2.0.3:30000"));
  EXPECT_EQ(ResolveGateway(cl, "job-uid", nullptr, nodes).node, a.node);
  cl.node_selector["pool"] = "none";
  EXPECT_FALSE(ResolveGateway(cl, "job-uid", nullptr, nodes).waiting.empty());
}

TEST(StatusTest, ConditionsKeepTransitionTimesAndReportFlips) {
  json status = json::object();
  EXPECT_TRUE(SetCondition(&status, "Running", true, "WorkersRunning", "m", 1, 1000));
  EXPECT_FALSE(SetCondition(&status, "Running", true, "WorkersRunning", "m2", 2, 2000));
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], Rfc3339(1000));
  EXPECT_EQ(status["conditions"][0]["message"], "m2");
  EXPECT_TRUE(SetCondition(&status, "Running", false, "Restarting", "x", 2, 3000));
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], Rfc3339(3000));
  EXPECT_FALSE(ConditionTrue(status, "Running"));
  EXPECT_EQ(ParseRfc3339(Rfc3339(1700000000)).value(), 1700000000);
  EXPECT_FALSE(ParseRfc3339("yesterday").has_value());
}

TEST(StatusTest, CountsPodsAndDescribesFailures) {
  json running_ready = {{"status", {{"phase", "Running"}, {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
  json running = {{"status", {{"phase", "Running"}}}};
  json failed = json::parse(R"({"metadata": {"name": "p-1"}, "status": {"phase": "Failed",
      "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}})");
  json pending = json::object();
  PodCounts n = CountPods({&running_ready, &running, &failed, &pending});
  EXPECT_EQ(n.running, 2);
  EXPECT_EQ(n.ready, 1);
  EXPECT_EQ(n.failed, 1);
  EXPECT_EQ(n.pending, 1);
  EXPECT_EQ(DescribeFailure(failed), "p-1: OOMKilled: exit code 137");
}

TEST(StatusTest, ParsesTheRuntimeExposition) {
  RuntimeFigures f = ParseRuntimeMetrics(
      "# HELP stella_steps_total Steps.\n# TYPE stella_steps_total counter\n"
      "stella_steps_total{stella_job=\"a\",cluster=\"x\"} 420\n"
      "stella_samples_per_second{stella_job=\"a\"} 1234.5\nstella_density 0.01\nstella_batch_size 64\n"
      "stella_other 7\n");
  EXPECT_EQ(f.step, 420);
  EXPECT_DOUBLE_EQ(f.samples_per_second, 1234.5);
  EXPECT_DOUBLE_EQ(f.density, 0.01);
  EXPECT_EQ(f.batch_size, 64);
  EXPECT_EQ(ParseRuntimeMetrics("").step, -1);
}

TEST(NamesTest, JobFromApiObjectIgnoresServerSetMetadataAndStatus) {
  json obj = json::parse(R"({
    "apiVersion": "stella.dev/v1alpha1", "kind": "StellaJob",
    "metadata": {"name": "j", "namespace": "ns", "uid": "u", "generation": 3, "resourceVersion": "9",
                 "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["stella.dev/cleanup"],
                 "managedFields": [{"manager": "kubectl"}]},
    "spec": {"model": {"name": "mlp"}, "dataset": {"name": "fashion-mnist"}, "training": {"steps": 10},
             "clusters": [{"name": "a"}]},
    "status": {"phase": "Running", "clustersReady": "1/1", "conditions": []}})");
  auto job = JobFromApiObject(obj);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->metadata.uid, "u");
  EXPECT_EQ(job->metadata.generation.value(), 3);
  obj["spec"]["clusters"][0]["workers"] = 0;
  auto bad = JobFromApiObject(obj);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spec.clusters[0].workers"), std::string::npos);
  std::string ns, name;
  EXPECT_TRUE(SplitJobKey("ns/j", &ns, &name));
  EXPECT_EQ(ns + "|" + name, "ns|j");
  EXPECT_FALSE(SplitJobKey("nope", &ns, &name));
}

}  // namespace
}  // namespace stella::op

// Regression tests for what kube_json_fuzzer (tests/fuzz) exercises: fields of
// an unexpected type used to throw nlohmann::json::type_error out of
// json::value(), which no reconcile catches (std::terminate), and a
// non-finite metric was cast to int64 (undefined behaviour).
namespace stella::op {
namespace {

using json = nlohmann::json;

TEST(StatusTest, MistypedFieldsReadAsAbsentInsteadOfThrowing) {
  // A pod whose phase is a number, whose conditions hold a string, and whose
  // terminated state has a string exit code; a non-object list entry.
  json pod = json::parse(R"({"metadata": {"name": 7}, "status": {"phase": 3, "reason": ["x"],
      "conditions": ["Ready", {"type": 1, "status": true}],
      "containerStatuses": [5, {"state": {"terminated": {"exitCode": "137", "reason": 9, "message": "m"}}}]}})");
  json not_an_object = "pod";
  EXPECT_EQ(CountPods({&pod, &not_an_object}).pending, 2);
  EXPECT_EQ(DescribeFailure(pod), "?: Error: exit code -1: m");
  EXPECT_EQ(DescribeFailure(not_an_object), "?: Failed");
  json huge = json::parse(R"({"metadata": {"name": "p"}, "status": {"containerStatuses": [
      {"state": {"terminated": {"exitCode": 1e300}}}]}})");
  EXPECT_EQ(DescribeFailure(huge), "p: Error: exit code -1");

  json status = json::parse(R"({"conditions": ["Running", {"type": ["Running"]}, {"type": "Running", "status": 1}]})");
  EXPECT_FALSE(ConditionTrue(status, "Running"));
  EXPECT_TRUE(SetCondition(&status, "Running", true, "r", "m", 1, 1000));
  EXPECT_TRUE(ConditionTrue(status, "Running"));
  EXPECT_EQ(status["conditions"][2]["status"], "True");  // the first well-formed Running entry
  EXPECT_EQ(status["conditions"][0], "Running");         // other entries are kept as they are
  json scalar_status = "garbage";
  EXPECT_TRUE(SetCondition(&scalar_status, "Running", true, "r", "m", 1, 1000));
  EXPECT_TRUE(ConditionTrue(scalar_status, "Running"));
  EXPECT_FALSE(ConditionTrue(json(42), "Running"));
}

TEST(StatusTest, APodListingReadyTwiceIsOneReadyPod) {
  json pod = json::parse(R"({"status": {"phase": "Running", "conditions": [
      {"type": "Ready", "status": "True"}, {"type": "Ready", "status": "True"}]}})");
  PodCounts n = CountPods({&pod});
  EXPECT_EQ(n.running, 1);
  EXPECT_EQ(n.ready, 1);
}

TEST(StatusTest, NonFiniteOrHugeMetricsReadAsAbsent) {
  RuntimeFigures f = ParseRuntimeMetrics(
      "stella_steps_total +Inf\nstella_batch_size 1e300\nstella_samples_per_second NaN\nstella_density -Inf\n");
  EXPECT_EQ(f.step, -1);
  EXPECT_EQ(f.batch_size, -1);
  EXPECT_EQ(f.samples_per_second, -1);
  EXPECT_EQ(f.density, -1);
  EXPECT_EQ(ParseRuntimeMetrics("stella_steps_total 9e18\n").step, static_cast<int64_t>(9e18));
}

TEST(GatewayTest, MistypedNodesAndServicesReadAsAbsentInsteadOfThrowing) {
  json node = json::parse(R"({"metadata": {"name": 1}, "spec": {"unschedulable": "yes"},
      "status": {"addresses": [3, {"type": "InternalIP", "address": "10.0.0.1"}],
                 "conditions": ["Ready", {"type": "Ready", "status": "True"}]}})");
  EXPECT_TRUE(NodeReady(node));
  EXPECT_EQ(NodeAddress(node), "10.0.0.1");
  EXPECT_FALSE(NodeReady(json("node")));
  EXPECT_EQ(NodeAddress(json::array()), "");

  spec::ClusterSpec cl;
  cl.name = "b";
  cl.gateway.type = spec::GatewayType::kNodePort;
  // nodePort beyond 65535 (it used to be truncated into an int) or of the wrong type is no port.
  json svc = json::parse(R"({"spec": {"ports": [{"nodePort": 4294998796}, {"nodePort": "31500"}, 7]}})");
  GatewayResolution g = ResolveGateway(cl, "u", &svc, {node});
  EXPECT_TRUE(g.address.empty());
  EXPECT_NE(g.waiting.find("NodePort of cluster b not allocated"), std::string::npos) << g.waiting;
  svc["spec"]["ports"].push_back({{"nodePort", 31500}});
  EXPECT_EQ(ResolveGateway(cl, "u", &svc, {node}).address, "10.0.0.1:31500");
  json scalar_service = 5;
  cl.gateway.type = spec::GatewayType::kLoadBalancer;
  EXPECT_FALSE(ResolveGateway(cl, "u", &scalar_service, {}).waiting.empty());
}

}  // namespace
}  // namespace stella::op
