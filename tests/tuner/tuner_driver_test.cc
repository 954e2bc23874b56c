// TunerDriver: telemetry slots, decisions every few steps, the batch queue
// handed to the compute thread, and checkpoints of its state.
#include "runtime/tuner/tuner_driver.h"

#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

namespace stella::tuner {
namespace {

constexpr int kClusters = 2;
constexpr int kWorld = 3;  // cluster 0: ranks 0, 1; cluster 1: rank 2

TunerDriverOptions DriverOptions(bool with_tuner, int rank = 0) {
  TunerDriverOptions d;
  d.layout.fixed = 2;
  d.layout.world = kWorld;
  d.layout.clusters = kClusters;
  d.cluster_workers = {2, 1};
  d.cluster_caps_bytes_per_s = {0, 0};
  d.global_rank = rank;
  d.cluster_index = rank < 2 ? 0 : 1;
  d.initial_batch = 32;
  d.initial_density = 0.01;
  d.every_steps = 5;
  if (with_tuner) {
    TunerOptions t;
    t.tensor_sizes = std::vector<uint64_t>(4, 250000);
    t.min_density = 0.001;
    t.max_density = 0.1;
    t.initial_density = 0.01;
    t.global_batch = 96;
    t.lead_steps = 2;
    auto created = Tuner::Create(t);
    STELLA_CHECK(created.ok());
    d.tuner = std::move(created).value();
  }
  return d;
}

std::unique_ptr<TunerDriver> NewDriver(bool with_tuner) {
  auto d = TunerDriver::Create(DriverOptions(with_tuner));
  STELLA_CHECK(d.ok());
  return std::move(d).value();
}

// The job-wide mean of a control section in which worker r reported
// compute[r] seconds and each gateway its link's goodput and bytes.
std::vector<float> MeanControl(const TelemetryLayout& l, const std::vector<double>& compute, double goodput,
                               double bytes) {
  std::vector<float> c(l.size(), 0.0f);
  for (int r = 0; r < l.world; ++r) c[l.compute(r)] = static_cast<float>(compute[static_cast<size_t>(r)] / l.world);
  for (int k = 0; k < l.clusters; ++k) {
    c[l.goodput(k)] = static_cast<float>(goodput / l.world);
    c[l.bytes(k)] = static_cast<float>(bytes / l.world);
  }
  return c;
}

TEST(TunerDriverTest, FillTelemetryWritesOnlyThisWorkersSlots) {
  auto d = TunerDriver::Create(DriverOptions(false, /*rank=*/2));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const TelemetryLayout l = DriverOptions(false).layout;
  std::vector<float> control(l.size(), 9.0f);
  (*d)->FillTelemetry(0.25, 1e6, 4096, control.data());
  EXPECT_EQ(control[0], 9.0f);  // the fixed slots are the caller's
  EXPECT_EQ(control[1], 9.0f);
  EXPECT_EQ(control[l.compute(2)], 0.25f);
  EXPECT_EQ(control[l.compute(0)], 0.0f);
  EXPECT_EQ(control[l.goodput(1)], 1e6f);
  EXPECT_EQ(control[l.bytes(1)], 4096.0f);
  EXPECT_EQ(control[l.goodput(0)], 0.0f);
}

TEST(TunerDriverTest, WithoutATunerTheDensityStaysAtTheSpecValue) {
  auto d = TunerDriver::Create(DriverOptions(false));
  ASSERT_TRUE(d.ok());
  const auto c = MeanControl(DriverOptions(false).layout, {0.1, 0.1, 0.1}, 1e3, 1e6);
  for (int64_t step = 0; step < 20; ++step) {
    auto change = (*d)->Decide(step, c.data());
    ASSERT_TRUE(change.ok());
    EXPECT_FALSE(change->any());
  }
  EXPECT_EQ((*d)->density(), 0.01);
  EXPECT_EQ((*d)->BatchForStep(100, 32), 32);
}

TEST(TunerDriverTest, DecidesEveryFewStepsAndQueuesBatchPlans) {
  auto d = TunerDriver::Create(DriverOptions(true));
  ASSERT_TRUE(d.ok());
  const TelemetryLayout l = DriverOptions(true).layout;
  // Rank 2 is four times slower: the plan moves batch to ranks 0 and 1. The
  // link (100 kB/s against 0.1 s of compute) fits far less than 1% density.
  const auto c = MeanControl(l, {0.1, 0.1, 0.4}, 1e5, 80000);
  auto off_round = (*d)->Decide(0, c.data());
  ASSERT_TRUE(off_round.ok());
  EXPECT_FALSE(off_round->any());  // (0 + 1) % 5 != 0
  bool density_fell = false, replanned = false;
  for (int64_t step = 4; step < 60 && !(density_fell && replanned); step += 5) {
    auto change = (*d)->Decide(step, c.data());
    ASSERT_TRUE(change.ok()) << change.status().ToString();
    density_fell = density_fell || change->density;
    replanned = replanned || change->batches;
  }
  EXPECT_TRUE(density_fell);
  EXPECT_LT((*d)->density(), 0.01);
  ASSERT_TRUE(replanned);
  // The compute thread takes the plan at its step, not before.
  EXPECT_EQ((*d)->BatchForStep(0, 32), 32);
  const int later = (*d)->BatchForStep(1000, 32);
  EXPECT_GT(later, 32);  // rank 0 is fast: it gets more of the global batch
  EXPECT_EQ((*d)->BatchAt(1000, 0), later);
}

TEST(TunerDriverTest, StateRoundTripsAndDecidesAlike) {
  const TelemetryLayout l = DriverOptions(true).layout;
  const auto c = MeanControl(l, {0.1, 0.1, 0.4}, 1e6, 80000);
  auto a = NewDriver(true);
  for (int64_t step = 4; step < 30; step += 5) ASSERT_TRUE(a->Decide(step, c.data()).ok());
  const TunerDriverState saved = a->SaveState(30);
  EXPECT_TRUE(saved.has_tuner);
  EXPECT_EQ(saved.density, a->density());

  auto b = NewDriver(true);
  ASSERT_TRUE(b->LoadState(saved).ok());
  EXPECT_EQ(b->density(), a->density());
  const auto faster = MeanControl(l, {0.1, 0.1, 0.1}, 5e7, 80000);
  for (int64_t step = 34; step < 80; step += 5) {
    auto ca = a->Decide(step, faster.data());
    auto cb = b->Decide(step, faster.data());
    ASSERT_TRUE(ca.ok() && cb.ok());
    EXPECT_EQ(ca->density, cb->density);
    EXPECT_EQ(a->density(), b->density()) << step;
    EXPECT_EQ(a->BatchAt(step + 10, 2), b->BatchAt(step + 10, 2)) << step;
  }

  // A driver without a tuner ignores tuner state: the spec's density.
  auto plain = NewDriver(false);
  ASSERT_TRUE(plain->LoadState(saved).ok());
  EXPECT_EQ(plain->density(), 0.01);
  TunerDriverState bad = saved;
  bad.density = 0;
  EXPECT_EQ(b->LoadState(bad).code(), StatusCode::kDataLoss);
}

TEST(TunerDriverTest, RejectsOptionsThatDoNotFitTheLayout) {
  TunerDriverOptions o = DriverOptions(false);
  o.cluster_workers = {2, 2};
  EXPECT_NE(TunerDriver::Create(std::move(o)).status().message().find("must match the layout"), std::string::npos);
  o = DriverOptions(false);
  o.initial_density = 0;
  EXPECT_NE(TunerDriver::Create(std::move(o)).status().message().find("initial density must be in (0, 1]"),
            std::string::npos);
}

}  // namespace
}  // namespace stella::tuner
