// RuntimeScraper: the runtime's /metrics read off the reconcile path. Passes
// are driven with explicit time points (ScrapeDue), so nothing sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "operator/controller/runtime_scraper.h"
#include "tests/operator/reconcile_fixture.h"

namespace stella::op::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kPath[] = "/api/v1/namespaces/team/pods/mnist-a-0:9400/proxy/metrics";

kube::Response Metrics(int step) {
  return {200, json("# TYPE stella_steps_total counter\nstella_steps_total " + std::to_string(step) +
                    "\nstella_samples_per_second 812.5\nstella_density 0.02\nstella_batch_size 64\n")};
}

struct ScraperTest : ::testing::Test {
  ScraperTest() : log(LogLevel::kError) {
    RuntimeScraperOptions o;
    o.interval = milliseconds(1000);
    o.on_update = [this](const std::string& key) { updates.push_back(key); };
    scraper = std::make_unique<RuntimeScraper>(o, &log);
  }
  Logger log;
  FakeApi api;
  std::vector<std::string> updates;
  std::unique_ptr<RuntimeScraper> scraper;
};

TEST_F(ScraperTest, ScrapesTrackedJobsAndReportsChangesOnce) {
  api.SetRaw(kPath, Metrics(120));
  scraper->Track(kUid, kKey, &api, kPath);
  EXPECT_FALSE(scraper->Latest(kUid).has_value());  // nothing read yet: Track never blocks on the worker

  const auto t0 = Clock::now();
  scraper->ScrapeDue(t0);
  auto f = scraper->Latest(kUid);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->step, 120);
  EXPECT_DOUBLE_EQ(f->samples_per_second, 812.5);
  EXPECT_DOUBLE_EQ(f->density, 0.02);
  EXPECT_EQ(f->batch_size, 64);
  EXPECT_THAT(updates, ::testing::ElementsAre(kKey));

  // Not due again before the interval.
  scraper->ScrapeDue(t0 + milliseconds(500));
  EXPECT_EQ(api.Count("GET"), 1);
  // Due, same figures: read, but no update.
  scraper->Track(kUid, kKey, &api, kPath);
  scraper->ScrapeDue(Clock::now() + milliseconds(1000));
  EXPECT_EQ(api.Count("GET"), 2);
  EXPECT_EQ(updates.size(), 1u);
}

TEST_F(ScraperTest, FailedScrapeKeepsTheLastFigures) {
  api.SetRaw(kPath, Metrics(7));
  scraper->Track(kUid, kKey, &api, kPath);
  const auto t0 = Clock::now();
  scraper->ScrapeDue(t0);
  api.SetRaw(kPath, kube::testing::StatusResponse(503, "ServiceUnavailable", "no endpoints"));
  scraper->Track(kUid, kKey, &api, kPath);
  scraper->ScrapeDue(t0 + milliseconds(1000));
  ASSERT_TRUE(scraper->Latest(kUid).has_value());
  EXPECT_EQ(scraper->Latest(kUid)->step, 7);
}

TEST_F(ScraperTest, ForgottenAndStaleJobsAreDropped) {
  api.SetRaw(kPath, Metrics(1));
  scraper->Track(kUid, kKey, &api, kPath);
  scraper->Track("other-uid", "team/other", &api, kPath);
  scraper->ScrapeDue(Clock::now());
  scraper->Forget(kUid);
  EXPECT_FALSE(scraper->Latest(kUid).has_value());
  // Not tracked again for more than three intervals: dropped, not scraped.
  api.ClearRequests();
  scraper->ScrapeDue(Clock::now() + milliseconds(3001));
  EXPECT_FALSE(scraper->Latest("other-uid").has_value());
  EXPECT_EQ(api.Count("GET"), 0);
}

TEST_F(ScraperTest, StartAndStopJoinTheThread) {
  scraper->Start();
  scraper->Start();  // idempotent
  scraper->Stop();
  scraper->Stop();
  SUCCEED();
}

// The status phase reads the scraper's cache and names the target; it never
// scrapes itself.
TEST(StatusPhaseRuntimeTest, RunningJobShowsTheCachedFigures) {
  Fixture f;
  Logger log(LogLevel::kError);
  RuntimeScraperOptions o;
  o.interval = milliseconds(1000);
  RuntimeScraper scraper(o, &log);
  f.deps.runtime = &scraper;
  f.PutJob(JobSpec(1));
  ASSERT_TRUE(f.Reconcile().ok());
  f.SetAllPods(f.hub, "Running");
  f.hub.SetRaw(kPath, Metrics(4200));
  f.hub.ClearRequests();
  ASSERT_TRUE(f.Reconcile().ok());
  EXPECT_EQ(f.hub.Count("GET " + std::string(kPath)), 0);  // no scrape inside Reconcile
  EXPECT_EQ(f.ReadStatus().phase, "Running");
  EXPECT_FALSE(f.ReadStatus().batch_size.has_value());
  EXPECT_FALSE(f.Job()["status"].contains("step"));  // not reported yet: left out

  scraper.ScrapeDue(Clock::now());
  ASSERT_TRUE(f.Reconcile().ok());
  spec::JobStatus s = f.ReadStatus();
  EXPECT_EQ(s.step, 4200);
  EXPECT_DOUBLE_EQ(s.samples_per_second, 812.5);
  EXPECT_EQ(s.batch_size, std::optional<int64_t>(64));

  // Finished: the target goes.
  f.SetAllPods(f.hub, "Succeeded");
  ASSERT_TRUE(f.Reconcile().ok());
  EXPECT_FALSE(scraper.Latest(kUid).has_value());
}

}  // namespace
}  // namespace stella::op::testing
