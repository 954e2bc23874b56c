#include "src/cli/summary.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/cli/test_util.h"

namespace stella::cli {
namespace {

using ::stella::cli::testing::FileExists;
using ::stella::cli::testing::ReadFile;
using ::stella::cli::testing::TempDir;
using ::testing::HasSubstr;
using json = nlohmann::json;

json Done(int rank, int64_t steps, int64_t samples, double accuracy, double wall, int64_t wan_sent) {
  return {{"event", "done"},        {"cluster", rank / 2},
          {"cluster_name", "c"},    {"local_rank", rank % 2},
          {"global_rank", rank},    {"steps", steps},
          {"samples", samples},     {"final_accuracy", accuracy},
          {"wall_seconds", wall},   {"wan_bytes_sent", wan_sent},
          {"wan_bytes_received", 5}};
}

JobInfo Info() {
  JobInfo info;
  info.job = "fashion-cnn-demo";
  info.mode = "stella";
  info.clusters = 2;
  info.workers = 4;
  info.log_dir = "/tmp/stella-x";
  return info;
}

StatusOr<RunSummary> Collect() {
  SummaryCollector c;
  c.OnEvent({{"event", "progress"}, {"global_rank", 0}, {"step", 3}});
  // Workers report with their own numbers; rank 0's accuracy and wall time count.
  c.OnEvent(Done(1, 100, 6400, 0.10, 99.0, 2000));
  c.OnEvent(Done(0, 100, 6400, 0.87, 20.0, 1000));
  c.OnEvent(Done(2, 100, 6400, 0.20, 98.0, 3000));
  c.OnEvent(Done(3, 100, 6400, 0.30, 97.0, 4000));
  return c.Summarize(Info());
}

TEST(SummaryTest, CombinesDoneEvents) {
  StatusOr<RunSummary> s = Collect();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->steps, 100);
  EXPECT_EQ(s->samples, 25600);
  EXPECT_DOUBLE_EQ(s->final_accuracy, 0.87);
  EXPECT_DOUBLE_EQ(s->wall_seconds, 20.0);
  EXPECT_DOUBLE_EQ(s->samples_per_second, 1280.0);
  EXPECT_EQ(s->wan_bytes, 10000u);
  EXPECT_EQ(s->done_workers, 4);
}

// A run that lived through a cut WAN link says so: the most degraded steps
// any worker reported, in the table (only then) and in the JSON.
TEST(SummaryTest, ReportsDegradedStepsOfACutLink) {
  StatusOr<RunSummary> clean = Collect();
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->wan_degraded_steps, 0);
  EXPECT_THAT(RenderSummaryTable(*clean), ::testing::Not(HasSubstr("degraded")));
  SummaryCollector c;
  json a = Done(0, 100, 6400, 0.87, 20.0, 1000), b = Done(2, 100, 6400, 0.2, 20.0, 1000);
  a["wan_degraded_steps"] = 40;
  b["wan_degraded_steps"] = 42;
  c.OnEvent(a);
  c.OnEvent(b);
  StatusOr<RunSummary> s = c.Summarize(Info());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->wan_degraded_steps, 42);
  EXPECT_THAT(RenderSummaryTable(*s), HasSubstr("WAN degraded steps   42 (a link was down)"));
  EXPECT_EQ(SummaryToJson(*s).at("wan_degraded_steps"), 42);
}

TEST(SummaryTest, JsonHasTheDocumentedKeys) {
  StatusOr<RunSummary> s = Collect();
  ASSERT_TRUE(s.ok());
  json j = SummaryToJson(*s);
  EXPECT_DOUBLE_EQ(j.at("final_accuracy").get<double>(), 0.87);
  EXPECT_DOUBLE_EQ(j.at("wall_seconds").get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(j.at("samples_per_second").get<double>(), 1280.0);
  EXPECT_EQ(j.at("wan_bytes"), 10000);
  EXPECT_EQ(j.at("steps"), 100);
  EXPECT_EQ(j.at("job"), "fashion-cnn-demo");
  EXPECT_EQ(j.at("mode"), "stella");
  EXPECT_EQ(j.at("clusters"), 2);
  EXPECT_EQ(j.at("workers"), 4);
  EXPECT_EQ(j.at("shaper"), "in-process");
  EXPECT_EQ(j.at("log_dir"), "/tmp/stella-x");
}

TEST(SummaryTest, TableIsAligned) {
  StatusOr<RunSummary> s = Collect();
  ASSERT_TRUE(s.ok());
  std::string table = RenderSummaryTable(*s);
  EXPECT_THAT(table, HasSubstr("  wall time        20.0s\n"));
  EXPECT_THAT(table, HasSubstr("  final accuracy   87.00%\n"));
  EXPECT_THAT(table, HasSubstr("  samples/s        1280.0\n"));
  EXPECT_THAT(table, HasSubstr("  steps            100\n"));
  EXPECT_THAT(table, HasSubstr("  WAN bytes sent   9.8 KiB (10000 B)\n"));
  EXPECT_THAT(table, HasSubstr("  mode             stella\n"));
  EXPECT_THAT(table, HasSubstr("  workers          4\n"));
  EXPECT_THAT(table, HasSubstr("  clusters         2\n"));
  EXPECT_THAT(table, HasSubstr("  log dir          /tmp/stella-x\n"));
}

// The gateways report what dense fp32 exchange would have sent; the table
// sets it beside what was sent (stella mode only: ddp is the dense exchange).
TEST(SummaryTest, DenseWanBytesAreSummedAndCompared) {
  SummaryCollector c;
  json a = Done(0, 100, 3200, 0.87, 20.0, 6000);
  a["dense_wan_bytes"] = 600000;
  json b = Done(1, 100, 3200, 0.87, 20.0, 4000);
  b["dense_wan_bytes"] = 400000;
  c.OnEvent(a);
  c.OnEvent(b);
  StatusOr<RunSummary> s = c.Summarize(Info());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->dense_wan_bytes, 1000000u);
  EXPECT_EQ(SummaryToJson(*s).at("dense_wan_bytes"), 1000000);
  EXPECT_THAT(RenderSummaryTable(*s), HasSubstr("  dense WAN        976.6 KiB (100.0x what was sent)\n"));
  JobInfo ddp = Info();
  ddp.mode = "ddp";
  EXPECT_THAT(RenderSummaryTable(*c.Summarize(ddp)), HasSubstr("  dense WAN        976.6 KiB\n"));
}

TEST(SummaryTest, RestartsAppearInTheTableAndJson) {
  SummaryCollector c;
  json done = Done(0, 300, 3200, 0.8, 5.0, 100);
  done["resumed_from"] = 250;
  c.OnEvent(done);
  JobInfo info = Info();
  info.workers = 1;
  StatusOr<RunSummary> s = c.Summarize(info);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->resumed_from, 250);
  EXPECT_THAT(RenderSummaryTable(*s), HasSubstr("  restarts         0\n"));
  RestartRecord r;
  r.reason = "worker cloud/0 was killed by signal 9 (SIGKILL: Killed)";
  r.failed_at_step = 262;
  r.resumed_from = 250;
  r.steps_lost = 12;
  s->restarts = {r};
  s->total_wall_seconds = 31.5;
  EXPECT_THAT(RenderSummaryTable(*s), HasSubstr("  restarts         1 (12 steps lost; resumed at step 250)\n"));
  json j = SummaryToJson(*s);
  EXPECT_EQ(j.at("restarts"), 1);
  EXPECT_EQ(j.at("steps_lost"), 12);
  EXPECT_EQ(j.at("resumed_from"), 250);
  EXPECT_DOUBLE_EQ(j.at("total_wall_seconds").get<double>(), 31.5);
  EXPECT_EQ(j.at("restart_log").at(0).at("failed_at_step"), 262);
  EXPECT_EQ(j.at("restart_log").at(0).at("reason"), r.reason);
}

TEST(SummaryTest, MissingRankZeroIsAnError) {
  SummaryCollector c;
  c.OnEvent(Done(1, 100, 6400, 0.1, 9.0, 2000));
  StatusOr<RunSummary> s = c.Summarize(Info());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr("global rank 0 (got 1 of 4)"));
}

TEST(SummaryTest, WritesJsonAtomically) {
  TempDir dir;
  std::string path = dir.Join("summary.json");
  testing::WriteFile(path, "old contents");
  json value = {{"final_accuracy", 0.5}, {"steps", 3}};
  ASSERT_TRUE(WriteJsonAtomically(path, value).ok());
  EXPECT_EQ(json::parse(ReadFile(path)), value);
  // Only the target remains: the temporary file was renamed over it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);

  Status bad = WriteJsonAtomically(dir.Join("missing-dir/summary.json"), value);
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.message(), HasSubstr("missing-dir/summary.json.tmp."));
  EXPECT_FALSE(FileExists(dir.Join("missing-dir")));
}

}  // namespace
}  // namespace stella::cli
