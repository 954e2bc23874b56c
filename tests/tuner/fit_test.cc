#include "runtime/tuner/fit.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace stella {
namespace tuner {
namespace {

// Deterministic noise in [-1, 1] (splitmix64), identical on every platform.
double Noise(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) / static_cast<double>(1ull << 53) * 2.0 - 1.0;
}

TEST(WindowedLinearFitTest, EmptyHasNoFit) {
  WindowedLinearFit fit(8);
  EXPECT_FALSE(fit.Fit().has_value());
  EXPECT_EQ(fit.size(), 0u);
}

TEST(WindowedLinearFitTest, RecoversNoiselessLine) {
  WindowedLinearFit fit(16);
  for (int b : {8, 16, 32, 64, 128}) fit.Add(b, 0.05 + 0.002 * b);
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_NEAR(m->a, 0.05, 1e-12);
  EXPECT_NEAR(m->c, 0.002, 1e-14);
  EXPECT_NEAR(m->Predict(100), 0.25, 1e-12);
}

TEST(WindowedLinearFitTest, RecoversLineFromNoisySamples) {
  WindowedLinearFit fit(64);
  uint64_t rng = 42;
  for (int i = 0; i < 64; ++i) {
    const double b = 16 + 4 * (i % 29);  // 16..128
    fit.Add(b, (0.05 + 0.002 * b) * (1.0 + 0.03 * Noise(&rng)));
  }
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_NEAR(m->a, 0.05, 0.01);
  EXPECT_NEAR(m->c, 0.002, 0.0002);
}

TEST(WindowedLinearFitTest, SingleSampleGoesThroughTheOrigin) {
  WindowedLinearFit fit(8);
  fit.Add(64, 0.32);
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->a, 0.0);
  EXPECT_DOUBLE_EQ(m->c, 0.005);
  EXPECT_DOUBLE_EQ(m->Predict(64), 0.32);
}

TEST(WindowedLinearFitTest, CloseBatchSizesDoNotFitAnIntercept) {
  // 64 and 66 spread by 3% < kMinRelativeBatchSpread: the noisy slope between
  // them (here negative) must not be used.
  WindowedLinearFit fit(8);
  fit.Add(64, 0.33);
  fit.Add(66, 0.31);
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->a, 0.0);
  EXPECT_GT(m->c, 0.0);
  EXPECT_NEAR(m->Predict(65), 0.32, 0.01);
}

TEST(WindowedLinearFitTest, UnphysicalSlopeFallsBackToOrigin) {
  // Larger batches measured faster (a disturbed worker): slope < 0.
  WindowedLinearFit fit(8);
  fit.Add(32, 0.5);
  fit.Add(64, 0.3);
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->a, 0.0);
  EXPECT_GT(m->c, 0.0);
}

TEST(WindowedLinearFitTest, NegativeInterceptFallsBackToOrigin) {
  WindowedLinearFit fit(8);
  fit.Add(10, 0.01);
  fit.Add(100, 0.5);  // line through these has a < 0
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->a, 0.0);
  EXPECT_GT(m->c, 0.0);
}

TEST(WindowedLinearFitTest, WindowForgetsOldSamples) {
  WindowedLinearFit fit(4);
  for (int b : {8, 16, 32, 64}) fit.Add(b, 1.0 + 0.1 * b);  // an old, slow regime
  for (int b : {8, 16, 32, 64}) fit.Add(b, 0.1 + 0.01 * b);
  EXPECT_EQ(fit.size(), 4u);
  auto m = fit.Fit();
  ASSERT_TRUE(m.has_value());
  EXPECT_NEAR(m->a, 0.1, 1e-12);
  EXPECT_NEAR(m->c, 0.01, 1e-14);
}

}  // namespace
}  // namespace tuner
}  // namespace stella
