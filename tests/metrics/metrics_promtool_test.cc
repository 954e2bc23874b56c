// Validates Registry::Serialize() output with the real `promtool check
// metrics` (format errors and lint warnings alike).
#include <unistd.h>

#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "src/metrics/registry.h"
#include "tests/metrics/test_process.h"

namespace stella {
namespace metrics {
namespace {

constexpr char kPromtool[] = "/usr/bin/promtool";

// One registry with every metric type, labels needing escapes, help text with
// a backslash and a newline, and the special float values.
void Populate(Registry* registry) {
  Family<Counter>& sent = registry->AddCounter("stella_bytes_sent_total", "Bytes sent to a peer.");
  sent.Add({{"peer", "cluster-b"}, {"link", "wan"}}).Increment(123456789);
  sent.Add({{"peer", "quote\"back\\slash\nnewline"}, {"link", "lan"}}).Increment(0.5);
  registry->AddCounter("stella_restarts_total", "Restarts.").Add({});

  Family<Gauge>& depth = registry->AddGauge("stella_queue_depth", "Items queued.\nPer stage \\ shard.");
  depth.Add({{"stage", "compress"}}).Set(17);
  depth.Add({{"stage", "exchange"}}).Set(-3.25);
  depth.Add({{"stage", "inf"}}).Set(std::numeric_limits<double>::infinity());
  depth.Add({{"stage", "nan"}}).Set(std::nan(""));
  registry->AddGauge("stella_start_time_seconds", "Start time.").Add({}).Set(1.7e9);

  Family<Histogram>& latency = registry->AddHistogram("stella_step_seconds", "Training step latency.",
                                                      Histogram::ExponentialBuckets(0.001, 10, 5));
  Histogram& forward = latency.Add({{"phase", "forward"}});
  for (double v : {0.0005, 0.002, 0.02, 0.2, 2.0, 20.0, 200.0}) forward.Observe(v);
  latency.Add({{"phase", "backward"}});  // zero observations
  registry->AddHistogram("stella_message_bytes", "Message sizes.", {}).Add({}).Observe(1 << 20);
}

TEST(MetricsPromtoolTest, SerializedRegistryPassesPromtoolCheckMetrics) {
  ASSERT_EQ(::access(kPromtool, X_OK), 0)
      << kPromtool << " is missing or not executable; the project setup installs it "
      << "(Debian package 'prometheus'). This test must not be skipped.";

  Registry registry;
  Populate(&registry);
  const std::string exposition = registry.Serialize();

  StatusOr<std::unique_ptr<testing::TempDir>> dir = testing::TempDir::Create("stella-promtool-");
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  const std::string input = (*dir)->path() + "/metrics.txt";
  const std::string output = (*dir)->path() + "/promtool.out";
  ASSERT_TRUE(testing::WriteFile(input, exposition).ok());

  StatusOr<std::unique_ptr<testing::ChildProcess>> promtool =
      testing::ChildProcess::Start({kPromtool, "check", "metrics"}, input, output);
  ASSERT_TRUE(promtool.ok()) << promtool.status().ToString();
  StatusOr<int> exit_code = (*promtool)->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status().ToString();
  StatusOr<std::string> complaints = testing::ReadFile(output);
  ASSERT_TRUE(complaints.ok()) << complaints.status().ToString();

  EXPECT_EQ(*exit_code, 0) << "promtool output:\n" << *complaints << "\ninput:\n" << exposition;
  EXPECT_EQ(*complaints, "") << "input:\n" << exposition;
}

// Guards the test itself: promtool must actually flag a bad exposition, or a
// pass above would mean nothing.
TEST(MetricsPromtoolTest, PromtoolFlagsACounterWithoutTotalSuffix) {
  ASSERT_EQ(::access(kPromtool, X_OK), 0) << kPromtool << " is missing";
  StatusOr<std::unique_ptr<testing::TempDir>> dir = testing::TempDir::Create("stella-promtool-");
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  const std::string input = (*dir)->path() + "/bad.txt";
  const std::string output = (*dir)->path() + "/promtool.out";
  ASSERT_TRUE(testing::WriteFile(input,
                                 "# HELP stella_requests Requests.\n"
                                 "# TYPE stella_requests counter\n"
                                 "stella_requests 1\n")
                  .ok());
  StatusOr<std::unique_ptr<testing::ChildProcess>> promtool =
      testing::ChildProcess::Start({kPromtool, "check", "metrics"}, input, output);
  ASSERT_TRUE(promtool.ok()) << promtool.status().ToString();
  StatusOr<int> exit_code = (*promtool)->Wait(std::chrono::seconds(60));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status().ToString();
  StatusOr<std::string> complaints = testing::ReadFile(output);
  ASSERT_TRUE(complaints.ok());
  EXPECT_NE(*exit_code, 0);
  EXPECT_NE(complaints->find("_total"), std::string::npos) << *complaints;
}

}  // namespace
}  // namespace metrics
}  // namespace stella
