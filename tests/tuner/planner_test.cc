#include "runtime/tuner/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "runtime/tuner/bytes_model.h"

namespace stella {
namespace tuner {
namespace {

int Sum(const std::vector<int>& v) { return std::accumulate(v.begin(), v.end(), 0); }

TEST(BytesModelTest, DefaultFormulaCountsBlocksIndicesValuesAndHeader) {
  BytesModel m;  // fp32, u16 indices, blocks of 16, 24-byte header
  // n = 1000, d = 0.1: k = 100 elements -> 7 blocks -> 112 values.
  EXPECT_EQ(TensorBytes(m, 1000, 0.1), 24u + 7 * 2 + 112 * 4);
  // The tail block is clipped: n = 20, d = 1: 2 blocks, 20 values.
  EXPECT_EQ(TensorBytes(m, 20, 1.0), 24u + 2 * 2 + 20 * 4);
  // The smallest density still keeps one element (one block).
  EXPECT_EQ(TensorBytes(m, 1000, 1e-9), 24u + 2 + 16 * 4);
  EXPECT_EQ(TensorBytes(m, 0, 0.5), 0u);
  m.value_bytes = 2;
  EXPECT_EQ(PayloadBytes(m, {1000, 1000}, 0.1), 2 * (24u + 7 * 2 + 112 * 2));
}

TEST(BytesModelTest, CustomEncodedSizeReplacesTheFormula) {
  BytesModel m;
  m.encoded_size = [](uint64_t n, double d) { return static_cast<uint64_t>(n * d) + 1; };
  EXPECT_EQ(PayloadBytes(m, {100, 1000}, 0.5), 51u + 501u);
}

TEST(BytesModelTest, ValidationNamesTheField) {
  BytesModel m;
  m.block_size = 0;
  Status s = ValidateBytesModel(m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block_size"), std::string::npos);
}

TEST(PlanBatchesTest, IdenticalWorkersSplitEqually) {
  std::vector<LinearModel> models(4, LinearModel{0.02, 0.004});
  auto plan = PlanBatches(models, 256, 1, 0);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->batch_sizes, (std::vector<int>{64, 64, 64, 64}));
  EXPECT_DOUBLE_EQ(plan->step_seconds, 0.02 + 0.004 * 64);
}

TEST(PlanBatchesTest, SlowerWorkerGetsProportionallyLess) {
  // Worker 2 is exactly 2x slower (no intercept): it should get half.
  std::vector<LinearModel> models = {{0, 0.004}, {0, 0.004}, {0, 0.008}};
  auto plan = PlanBatches(models, 250, 1, 0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(Sum(plan->batch_sizes), 250);
  EXPECT_EQ(plan->batch_sizes, (std::vector<int>{100, 100, 50}));
}

TEST(PlanBatchesTest, MinimizesTheSlowestWorkerWithIntercepts) {
  std::vector<LinearModel> models = {{0.05, 0.003}, {0.01, 0.006}, {0.2, 0.001}, {0.0, 0.01}};
  const int global = 300;
  auto plan = PlanBatches(models, global, 1, 0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(Sum(plan->batch_sizes), global);
  // Optimality: moving one sample from any worker to any other never lowers
  // the maximum.
  for (size_t i = 0; i < models.size(); ++i) {
    for (size_t j = 0; j < models.size(); ++j) {
      if (i == j || plan->batch_sizes[i] <= 1) continue;
      std::vector<int> moved = plan->batch_sizes;
      --moved[i];
      ++moved[j];
      EXPECT_GE(PredictStepSeconds(models, moved), plan->step_seconds - 1e-12)
          << "moving one sample from " << i << " to " << j;
    }
  }
}

TEST(PlanBatchesTest, HonoursGranularityAndCap) {
  std::vector<LinearModel> models = {{0, 0.001}, {0, 0.004}, {0, 0.004}};
  auto plan = PlanBatches(models, 256, 8, 128);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(Sum(plan->batch_sizes), 256);
  for (int b : plan->batch_sizes) {
    EXPECT_EQ(b % 8, 0);
    EXPECT_GE(b, 8);
    EXPECT_LE(b, 128);
  }
  EXPECT_EQ(plan->batch_sizes[0], 128);  // would take 170 uncapped
}

TEST(PlanBatchesTest, VerySlowWorkerStillGetsOneUnit) {
  std::vector<LinearModel> models = {{0, 0.001}, {0, 100.0}};
  auto plan = PlanBatches(models, 64, 4, 0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->batch_sizes, (std::vector<int>{60, 4}));
}

TEST(PlanBatchesTest, RejectsImpossibleSplits) {
  std::vector<LinearModel> two(2, LinearModel{0, 0.01});
  EXPECT_EQ(PlanBatches({}, 64, 1, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBatches(two, 65, 2, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBatches(two, 2, 2, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBatches(two, 64, 1, 16).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBatches({{0, 0}, {0, 1}}, 64, 1, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanBatches(two, 64, 0, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST(EvenSplitTest, SpreadsTheRemainderOverTheFirstWorkers) {
  auto split = EvenSplit(3, 80, 8, 0);  // 10 units over 3 workers
  ASSERT_TRUE(split.ok());
  EXPECT_EQ(*split, (std::vector<int>{32, 24, 24}));
  EXPECT_FALSE(EvenSplit(3, 16, 8, 0).ok());
}

TEST(ScaleLearningRateTest, LinearScaling) {
  EXPECT_DOUBLE_EQ(ScaleLearningRate(0.1, 256, 512), 0.2);
  EXPECT_DOUBLE_EQ(ScaleLearningRate(0.1, 256, 192), 0.075);
  EXPECT_DOUBLE_EQ(ScaleLearningRate(0.1, 256, 256), 0.1);
}

TEST(FeasibleDensityTest, LargestDensityThatFitsTheBudget) {
  BytesModel m;
  const std::vector<uint64_t> tensors(10, 1000000);
  const double bw = 12.5e6;  // 100 Mbit/s
  const double budget = 0.3;
  const int peers = 2;
  const double d = FeasibleDensity(m, tensors, peers, bw, budget);
  ASSERT_GT(d, 0.0);
  ASSERT_LT(d, 1.0);
  EXPECT_LE(PayloadBytes(m, tensors, d) * peers / bw, budget);
  // Slightly more no longer fits (bytes are step functions of d: 1% above).
  EXPECT_GT(PayloadBytes(m, tensors, d * 1.01) * peers / bw, budget);
  // Halving the bandwidth about halves the density; one peer doubles it.
  EXPECT_NEAR(FeasibleDensity(m, tensors, peers, bw / 2, budget), d / 2, d * 0.02);
  EXPECT_NEAR(FeasibleDensity(m, tensors, 1, bw, budget), 2 * d, d * 0.04);
}

TEST(FeasibleDensityTest, ReportsHeadroomAndInfeasibility) {
  BytesModel m;
  const std::vector<uint64_t> tensors = {1000};
  const double full = static_cast<double>(PayloadBytes(m, tensors, 1.0));
  EXPECT_DOUBLE_EQ(FeasibleDensity(m, tensors, 1, full * 3, 1.0), 3.0);
  // Not even one block of one tensor fits.
  EXPECT_EQ(FeasibleDensity(m, tensors, 1, 10.0, 1.0), 0.0);
}

TEST(QuantizeDownTest, GeometricGrid) {
  EXPECT_DOUBLE_EQ(QuantizeDown(0.01, 10), 0.01);
  EXPECT_NEAR(QuantizeDown(0.0125, 10), 0.01, 1e-15);
  EXPECT_NEAR(QuantizeDown(0.0127, 10), std::pow(10.0, -1.9), 1e-15);
  EXPECT_NEAR(QuantizeDown(0.5, 1), 0.1, 1e-15);
  for (double d = 1e-4; d < 1.0; d *= 1.07) {
    const double q = QuantizeDown(d, 10);
    EXPECT_LE(q, d);
    EXPECT_GT(q, d / std::pow(10.0, 0.1) * (1 - 1e-9));
  }
}

}  // namespace
}  // namespace tuner
}  // namespace stella
