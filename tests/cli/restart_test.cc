// RestartTracker: the restart policy of `stella run` and its accounting of
// steps lost, fed with the events a real job sends.
#include "src/cli/restart.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace stella::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

spec::StellaJob Job(const std::string& path, int interval, int backoff_limit) {
  spec::StellaJob job;
  job.metadata.name = "j";
  job.spec.checkpoint.path = path;
  job.spec.checkpoint.interval_steps = interval;
  job.spec.run_policy.backoff_limit = backoff_limit;
  return job;
}

json Event(const std::string& kind, int rank, json fields) {
  fields["event"] = kind;
  fields["global_rank"] = rank;
  return fields;
}

const Status kKilled = InternalError("worker cloud/0 was killed by signal 9 (SIGKILL: Killed); last lines:\n  x");

TEST(RestartTrackerTest, RestartsAndCountsStepsLostFromTheResumePoint) {
  RestartTracker t(Job("/ckpt", 50, 3));
  EXPECT_TRUE(t.checkpointing());
  t.BeginAttempt();
  t.OnEvent(Event("progress", 0, {{"step", 140}, {"applied", 139}}));
  t.OnEvent(Event("checkpoint", 1, {{"step", 100}}));
  t.OnEvent(Event("stopping", 1, {{"signal", 15}, {"applied", 143}}));  // a survivor's exact step
  t.OnEvent(Event("progress", 0, {{"step", "garbage"}}));               // ignored
  auto v = t.OnFailure(kKilled);
  EXPECT_TRUE(v.restart);
  EXPECT_THAT(v.message,
              HasSubstr("restart 1/3: worker cloud/0 was killed by signal 9 (SIGKILL: Killed) (at step 143)"));
  EXPECT_THAT(v.message, Not(HasSubstr("last lines")));  // the first line only
  EXPECT_EQ(t.restarts(), 1);
  EXPECT_EQ(t.steps_lost(), 0);  // not known before the next attempt resumes
  t.BeginAttempt();
  t.OnEvent(Event("resume", 1, {{"step", 50}}));  // only rank 0's resume counts
  t.OnEvent(Event("resume", 0, {{"step", 100}, {"from_checkpoint", true}}));
  ASSERT_EQ(t.records().size(), 1u);
  EXPECT_EQ(t.records()[0].failed_at_step, 143);
  EXPECT_EQ(t.records()[0].resumed_from, 100);
  EXPECT_EQ(t.steps_lost(), 43);
}

TEST(RestartTrackerTest, StopsAtTheBackoffLimitWithTheReason) {
  RestartTracker t(Job("/ckpt", 10, 2));
  for (int attempt = 0; attempt < 2; ++attempt) {
    t.BeginAttempt();
    t.OnEvent(Event("resume", 0, {{"step", 20}}));
    t.OnEvent(Event("error", 0, {{"applied", 25}}));
    EXPECT_TRUE(t.OnFailure(kKilled).restart);
  }
  t.BeginAttempt();
  auto v = t.OnFailure(kKilled);
  EXPECT_FALSE(v.restart);
  EXPECT_THAT(v.message, HasSubstr("worker cloud/0 was killed by signal 9"));
  EXPECT_THAT(v.message,
              HasSubstr("no restart left: the job was restarted 2 time(s), spec.runPolicy.backoffLimit is 2"));
  // Attempt 3 failed before it resumed: only the first restart's loss is
  // known (failed at 25, resumed at 20).
  EXPECT_EQ(t.records()[0].steps_lost, 5);
  EXPECT_EQ(t.records()[1].resumed_from, -1);
  EXPECT_EQ(t.steps_lost(), 5);
}

TEST(RestartTrackerTest, WithoutCheckpointingFailsFastAndSaysWhy) {
  for (const auto& job : {Job("", 0, 3), Job("/ckpt", 0, 3)}) {  // a path alone writes no checkpoints
    RestartTracker t(job);
    EXPECT_FALSE(t.checkpointing());
    auto v = t.OnFailure(kKilled);
    EXPECT_FALSE(v.restart);
    EXPECT_THAT(v.message, HasSubstr("worker cloud/0 was killed"));
    EXPECT_THAT(v.message, HasSubstr("checkpointing would have allowed a restart"));
    EXPECT_THAT(v.message, HasSubstr("spec.checkpoint.intervalSteps"));
  }
}

TEST(RestartTrackerTest, DeadlinesAndStopsAreNeverRestarted) {
  RestartTracker t(Job("/ckpt", 10, 3));
  auto v = t.OnFailure(DeadlineExceededError("run did not finish before its deadline"));
  EXPECT_FALSE(v.restart);
  EXPECT_EQ(v.message, "run did not finish before its deadline");
  EXPECT_FALSE(t.OnFailure(CancelledError("stopped")).restart);
  EXPECT_EQ(t.restarts(), 0);
}

TEST(RestartTrackerTest, ResumingBehindTheFailureNeverCountsNegative) {
  RestartTracker t(Job("/ckpt", 10, 3));
  t.BeginAttempt();
  t.OnEvent(Event("progress", 0, {{"applied", 7}}));
  ASSERT_TRUE(t.OnFailure(kKilled).restart);
  t.BeginAttempt();
  t.OnEvent(Event("resume", 0, {{"step", 0}, {"from_checkpoint", false}}));  // nothing common: step 0
  EXPECT_EQ(t.steps_lost(), 7);
}

}  // namespace
}  // namespace stella::cli
