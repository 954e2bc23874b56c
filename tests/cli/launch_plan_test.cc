#include "src/cli/launch_plan.h"

#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace stella::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTwoByTwo[] = R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: two-by-two
spec:
  model: {name: cnn}
  dataset: {name: fashion-mnist}
  training: {steps: 10}
  clusters:
    - name: onprem
      workers: 2
      wan: {bandwidthMbps: 100, latencyMs: 5}
    - name: cloud
      workers: 2
      wan: {bandwidthMbps: 50, latencyMs: 20}
  metrics:
    port: 9400
)";

spec::StellaJob TwoByTwo(int metrics_port = 9400) {
  StatusOr<spec::StellaJob> job = spec::ParseStellaJob(kTwoByTwo);
  EXPECT_TRUE(job.ok()) << job.status().ToString();
  spec::StellaJob out = job.ok() ? *job : spec::StellaJob();
  out.spec.metrics.port = metrics_port;
  return out;
}

LaunchPlanOptions Options(int base_port) {
  LaunchPlanOptions o;
  o.job_path = "/jobs/two.yaml";
  o.runtime_path = "/opt/stella/bin/stella-runtime";
  o.base_port = base_port;
  return o;
}

TEST(LaunchPlanTest, TwoClustersTwoWorkersWithFixedPorts) {
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(), Options(20000));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_THAT(plan->store_ports, ElementsAre(20000, 20001));
  EXPECT_THAT(plan->wan_ports, ElementsAre(20002, 20003));
  ASSERT_EQ(plan->processes.size(), 4u);
  ASSERT_EQ(plan->workers.size(), 4u);

  std::vector<std::string> names;
  for (const ProcessSpec& p : plan->processes) names.push_back(p.name);
  EXPECT_THAT(names, ElementsAre("onprem/0", "onprem/1", "cloud/0", "cloud/1"));

  EXPECT_THAT(plan->processes[0].argv, ElementsAre("/opt/stella/bin/stella-runtime", "--job", "/jobs/two.yaml",
                                                   "--cluster-index", "0", "--local-rank", "0", "--store-port", "20000",
                                                   "--wan-ports", "20002,20003", "--metrics-port", "9400"));
  EXPECT_THAT(plan->processes[3].argv, ElementsAre("/opt/stella/bin/stella-runtime", "--job", "/jobs/two.yaml",
                                                   "--cluster-index", "1", "--local-rank", "1", "--store-port", "20001",
                                                   "--wan-ports", "20002,20003", "--metrics-port", "9403"));

  const WorkerLaunch& w = plan->workers[2];
  EXPECT_EQ(w.name, "cloud/0");
  EXPECT_EQ(w.cluster_index, 1);
  EXPECT_EQ(w.cluster_name, "cloud");
  EXPECT_EQ(w.local_rank, 0);
  EXPECT_EQ(w.global_rank, 2);
  EXPECT_EQ(w.metrics_port, 9402);
}

TEST(LaunchPlanTest, FreePortsAreDistinct) {
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(), Options(0));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::set<int> ports(plan->store_ports.begin(), plan->store_ports.end());
  ports.insert(plan->wan_ports.begin(), plan->wan_ports.end());
  EXPECT_EQ(ports.size(), 4u);
  for (int p : ports) {
    EXPECT_GT(p, 0);
    EXPECT_LE(p, 65535);
  }
  EXPECT_EQ(plan->processes[1].argv[8], std::to_string(plan->store_ports[0]));
  EXPECT_EQ(plan->processes[2].argv[8], std::to_string(plan->store_ports[1]));
  EXPECT_EQ(plan->processes[0].argv[10], std::to_string(plan->wan_ports[0]) + "," + std::to_string(plan->wan_ports[1]));
}

TEST(LaunchPlanTest, MetricsOffGivesPortZero) {
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(/*metrics_port=*/0), Options(20000));
  ASSERT_TRUE(plan.ok());
  for (size_t i = 0; i < plan->processes.size(); ++i) {
    EXPECT_EQ(plan->processes[i].argv.back(), "0");
    EXPECT_EQ(plan->workers[i].metrics_port, 0);
  }
}

TEST(LaunchPlanTest, ResumeIsPassedToEveryWorker) {
  LaunchPlanOptions o = Options(20000);
  o.resume = true;
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(), o);
  ASSERT_TRUE(plan.ok());
  for (const ProcessSpec& p : plan->processes) EXPECT_EQ(p.argv.back(), "--resume") << p.name;
}

TEST(LaunchPlanTest, RelativeJobPathBecomesAbsolute) {
  LaunchPlanOptions o = Options(20000);
  o.job_path = "jobs/two.yaml";
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(), o);
  ASSERT_TRUE(plan.ok());
  const std::string& path = plan->processes[0].argv[2];
  EXPECT_EQ(path.front(), '/');
  EXPECT_THAT(path, ::testing::EndsWith("/jobs/two.yaml"));
}

TEST(LaunchPlanTest, GatewaysGetTheirClustersTlsDirOthersNone) {
  LaunchPlanOptions o = Options(20000);
  o.gateway_tls_dirs = {"/tmp/t/onprem", "/tmp/t/cloud"};
  StatusOr<LaunchPlan> plan = BuildLaunchPlan(TwoByTwo(), o);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  auto tail = [](const std::vector<std::string>& argv) { return std::vector<std::string>(argv.end() - 2, argv.end()); };
  EXPECT_THAT(tail(plan->processes[0].argv), ElementsAre("--tls-dir", "/tmp/t/onprem"));
  EXPECT_THAT(tail(plan->processes[2].argv), ElementsAre("--tls-dir", "/tmp/t/cloud"));
  for (size_t i : {size_t{1}, size_t{3}}) {  // local rank 1: no WAN, no certificate
    EXPECT_THAT(plan->processes[i].argv, ::testing::Not(::testing::Contains("--tls-dir")));
  }
  // Without TLS directories nobody gets the flag.
  StatusOr<LaunchPlan> plain = BuildLaunchPlan(TwoByTwo(), Options(20000));
  ASSERT_TRUE(plain.ok());
  for (const ProcessSpec& p : plain->processes) {
    EXPECT_THAT(p.argv, ::testing::Not(::testing::Contains("--tls-dir")));
  }
  o.gateway_tls_dirs = {"/tmp/t/onprem"};
  StatusOr<LaunchPlan> short_list = BuildLaunchPlan(TwoByTwo(), o);
  ASSERT_FALSE(short_list.ok());
  EXPECT_THAT(short_list.status().message(), HasSubstr("gateway_tls_dirs: need one per cluster (2), got 1"));
}

TEST(LaunchPlanTest, RejectsPortOverflowAndCollisions) {
  StatusOr<LaunchPlan> overflow = BuildLaunchPlan(TwoByTwo(/*metrics_port=*/65534), Options(20000));
  EXPECT_EQ(overflow.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(overflow.status().message(), HasSubstr("spec.metrics.port: 65534 + 4 workers exceeds"));

  StatusOr<LaunchPlan> collision = BuildLaunchPlan(TwoByTwo(/*metrics_port=*/9400), Options(9402));
  EXPECT_THAT(collision.status().message(), HasSubstr("metrics port 9402 of global rank 2 collides"));

  EXPECT_FALSE(BuildLaunchPlan(TwoByTwo(), Options(65534)).ok());
  LaunchPlanOptions no_runtime = Options(0);
  no_runtime.runtime_path.clear();
  EXPECT_FALSE(BuildLaunchPlan(TwoByTwo(), no_runtime).ok());
}

}  // namespace
}  // namespace stella::cli
