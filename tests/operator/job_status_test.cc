// The typed job status: spec::JobStatus's YAML parse/emit of the operator's
// fields, and the operator's JSON boundary (JobStatusFromJson/ToJson).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/controller/status.h"
#include "src/spec/stella_job.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

spec::JobStatus Full() {
  spec::JobStatus s;
  s.phase = "Running";
  s.observed_generation = 4;
  s.step = 900;
  s.samples_per_second = 1234.5;
  s.density = 0.03;
  s.batch_size = 48;
  s.conditions = {{"Created", "True", "WorkersCreated", "services and 3 workers created", 4, "2026-03-01T00:00:00Z"},
                  {"Running", "True", "WorkersRunning", "every worker is running", 4, "2026-03-01T00:01:00Z"}};
  spec::ClusterStatus a;
  a.name = "a";
  a.workers = 2;
  a.gateway_address = "10.0.0.1:29500";
  a.counts = spec::WorkerCounts{0, 2, 2, 0, 0};
  spec::ClusterStatus b;
  b.name = "b";
  b.workers = 1;
  b.reachable = false;
  b.message = "connection refused";
  b.gateway_node = "node-3";
  s.clusters = {a, b};
  s.clusters_ready = "1/2";
  s.start_time = "2026-03-01T00:00:00Z";
  s.first_start_time = "2026-02-28T00:00:00Z";
  s.restarts = 1;
  s.certificates_rotation = "r1";
  return s;
}

const char kManifest[] = R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata: {name: j}
spec:
  model: {name: mlp}
  dataset: {name: fashion-mnist}
  training: {steps: 10}
  clusters: [{name: a}]
)";

TEST(JobStatusYamlTest, OperatorFieldsRoundTrip) {
  auto job = spec::ParseStellaJob(kManifest);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  job->status = Full();
  const std::string yaml = spec::ToYaml(*job);
  auto back = spec::ParseStellaJob(yaml);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
  ASSERT_TRUE(back->status.has_value());
  EXPECT_EQ(*back->status, Full()) << yaml;
  EXPECT_FALSE(back->status->clusters[1].counts.has_value());
}

TEST(JobStatusYamlTest, BadStatusFieldsAreReportedWithTheirPath) {
  auto job = spec::ParseStellaJob(std::string(kManifest) +
                                  "status:\n  restarts: many\n  clusters:\n    - {workers: 1, bogus: 2}\n");
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), ::testing::HasSubstr("status.restarts: expected an integer"));
  EXPECT_THAT(job.status().message(), ::testing::HasSubstr("status.clusters[0].bogus: unknown field"));
  EXPECT_THAT(job.status().message(), ::testing::HasSubstr("status.clusters[0].name: required field is missing"));
}

TEST(JobStatusJsonTest, RoundTripsAndUsesTheApiSpelling) {
  json j = JobStatusToJson(Full());
  EXPECT_EQ(j["clusters"][0]["gatewayAddress"], "10.0.0.1:29500");
  EXPECT_EQ(j["clusters"][0]["running"], 2);
  EXPECT_FALSE(j["clusters"][1].contains("running"));  // not counted yet
  EXPECT_EQ(j["clusters"][1]["reachable"], false);
  EXPECT_EQ(j["conditions"][1]["lastTransitionTime"], "2026-03-01T00:01:00Z");
  EXPECT_EQ(j["batchSize"], 48);
  EXPECT_EQ(j["certificatesRotation"], "r1");
  EXPECT_EQ(JobStatusFromJson(j), Full());
}

TEST(JobStatusJsonTest, AbsentFieldsStayAbsent) {
  spec::JobStatus s;
  s.phase = "Created";
  s.observed_generation = 2;
  json j = JobStatusToJson(s);
  EXPECT_EQ(j, (json{{"phase", "Created"}, {"observedGeneration", 2}}));
  // The runtime's figures appear once it reported them.
  s.batch_size = 32;
  j = JobStatusToJson(s);
  EXPECT_EQ(j["step"], 0);
  EXPECT_EQ(j["batchSize"], 32);
}

TEST(JobStatusJsonTest, MembersOfTheWrongTypeReadAsAbsent) {
  json j = {{"phase", 3},
            {"restarts", "two"},
            {"step", 1.5},
            {"conditions", {{{"type", "Running"}, {"status", "True"}}, 7, {{"status", "True"}}}},
            {"clusters", {{{"name", "a"}, {"workers", "x"}, {"running", 1}}}},
            {"unknown", true}};
  spec::JobStatus s = JobStatusFromJson(j);
  EXPECT_EQ(s.phase, "");
  EXPECT_EQ(s.restarts, 0);
  EXPECT_EQ(s.step, 0);
  ASSERT_EQ(s.conditions.size(), 1u);
  EXPECT_TRUE(ConditionTrue(s, "Running"));
  ASSERT_EQ(s.clusters.size(), 1u);
  EXPECT_EQ(s.clusters[0].workers, 0);
  ASSERT_TRUE(s.clusters[0].counts.has_value());
  EXPECT_EQ(s.clusters[0].counts->running, 1);
  EXPECT_EQ(JobStatusFromJson(json("not an object")), spec::JobStatus());
}

TEST(JobStatusJsonTest, TypedConditionsKeepTheirTransitionTime) {
  spec::JobStatus s;
  EXPECT_TRUE(SetCondition(&s, "Running", true, "WorkersRunning", "m", 1, 1000));
  const std::string t = s.conditions[0].last_transition_time;
  EXPECT_FALSE(SetCondition(&s, "Running", true, "WorkersRunning", "m2", 2, 2000));
  EXPECT_EQ(s.conditions[0].last_transition_time, t);
  EXPECT_EQ(s.conditions[0].observed_generation, 2);
  EXPECT_TRUE(SetCondition(&s, "Running", false, "Completed", "done", 2, 3000));
  EXPECT_EQ(s.conditions[0].last_transition_time, Rfc3339(3000));
  EXPECT_FALSE(ConditionTrue(s, "Running"));
  EXPECT_FALSE(ConditionTrue(s, "Missing"));
}

}  // namespace
}  // namespace stella::op
