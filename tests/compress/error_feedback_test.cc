#include "runtime/compress/error_feedback.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/compress/wire.h"
#include "tests/compress/test_util.h"

namespace stella {
namespace compress {
namespace {

using testing::RandomTensor;

std::unique_ptr<ErrorFeedback> MakeFeedback(size_t n, double momentum = 0.0) {
  ErrorFeedbackOptions o;
  o.num_elements = n;
  o.momentum = momentum;
  auto ef = ErrorFeedback::Create(o);
  EXPECT_TRUE(ef.ok()) << ef.status().ToString();
  return std::move(ef).value();
}

std::unique_ptr<Compressor> MakeCompressor(const std::string& kind) {
  CompressorOptions o;
  o.kind = kind;
  return std::move(CreateCompressor(o)).value();
}

// Adds what a SparseGradient carries to a double-precision dense sum.
void AddTo(const SparseGradient& s, std::vector<double>* sum) {
  size_t v = 0;
  for (uint32_t b : s.indices) {
    for (size_t e = size_t{b} * s.block_size; e < std::min<size_t>((size_t{b} + 1) * s.block_size, s.num_elements);
         ++e) {
      (*sum)[e] += s.values[v++];
    }
  }
}

TEST(ErrorFeedbackTest, CreateValidatesOptions) {
  ErrorFeedbackOptions o;
  o.num_elements = 10;
  o.momentum = 1.0;
  EXPECT_EQ(ErrorFeedback::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.momentum = -0.5;
  EXPECT_FALSE(ErrorFeedback::Create(o).ok());
  o.momentum = 0.9;
  auto ef = ErrorFeedback::Create(o);
  ASSERT_TRUE(ef.ok());
  EXPECT_TRUE((*ef)->momentum_correction());
  EXPECT_EQ((*ef)->velocity().size(), 10u);
}

class ConservationTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(AllKinds, ConservationTest, ::testing::Values("topk", "randomk", "threshold", "cacheline"),
                         [](const auto& info) { return info.param; });

// Over many steps nothing is lost or invented: everything sent plus the
// final residual equals everything accumulated, element by element.
TEST_P(ConservationTest, SentPlusResidualEqualsSumOfGradients) {
  for (ValuePrecision precision : {ValuePrecision::kFp32, ValuePrecision::kFp16}) {
    constexpr size_t kN = 1003;  // a short tail block for cacheline
    auto compressor = MakeCompressor(GetParam());
    auto ef = MakeFeedback(kN);
    std::vector<double> grad_sum(kN, 0.0), sent_sum(kN, 0.0);
    std::vector<float> acc(kN);
    SparseGradient sent;
    size_t ever_sent = 0;
    for (int step = 0; step < 60; ++step) {
      std::vector<float> g = RandomTensor(kN, 500 + step);
      for (size_t i = 0; i < kN; ++i) grad_sum[i] += g[i];
      ef->Accumulate(g.data(), acc.data(), kN);
      ASSERT_TRUE(compressor->Compress(acc.data(), kN, 0.05, &sent).ok());
      RoundValues(&sent, precision);  // what goes on the wire
      ef->Update(sent);
      AddTo(sent, &sent_sum);
      ever_sent += sent.values.size();
    }
    EXPECT_GT(ever_sent, 0u);
    for (size_t i = 0; i < kN; ++i) {
      const double total = sent_sum[i] + ef->residual()[i];
      EXPECT_NEAR(total, grad_sum[i], 2e-4 * (1.0 + std::fabs(grad_sum[i])))
          << GetParam() << " element " << i << " precision " << ValuePrecisionName(precision);
    }
  }
}

TEST_P(ConservationTest, FullDensityLeavesNoResidual) {
  constexpr size_t kN = 257;
  auto compressor = MakeCompressor(GetParam());
  auto ef = MakeFeedback(kN);
  std::vector<float> acc(kN);
  SparseGradient sent;
  for (int step = 0; step < 5; ++step) {
    std::vector<float> g = RandomTensor(kN, 900 + step);
    ef->Accumulate(g.data(), acc.data(), kN);
    EXPECT_EQ(acc, g);  // the residual was zero
    ASSERT_TRUE(compressor->Compress(acc.data(), kN, 1.0, &sent).ok());
    ASSERT_EQ(sent.values.size(), kN);
    ef->Update(sent);
    for (size_t i = 0; i < kN; ++i) ASSERT_EQ(ef->residual()[i], 0.0f) << i;
  }
}

TEST(ErrorFeedbackTest, UnsentValuesCarryOverAndSentOnesReset) {
  auto ef = MakeFeedback(4);
  const float g1[4] = {1, -2, 3, 0.5f};
  float acc[4];
  ef->Accumulate(g1, acc, 4);
  SparseGradient sent;
  sent.num_elements = 4;
  sent.indices = {2};
  sent.values = {3};
  ef->Update(sent);
  EXPECT_EQ(std::vector<float>(ef->residual(), ef->residual() + 4), std::vector<float>({1, -2, 0, 0.5f}));
  const float g2[4] = {1, 1, 1, 1};
  ef->Accumulate(g2, acc, 4);
  EXPECT_EQ(std::vector<float>(acc, acc + 4), std::vector<float>({2, -1, 1, 1.5f}));
  // A rounded value leaves its rounding error behind.
  sent.indices = {0, 3};
  sent.values = {2, 1.25f};
  ef->Update(sent);
  EXPECT_EQ(std::vector<float>(ef->residual(), ef->residual() + 4), std::vector<float>({0, -1, 1, 0.25f}));
}

TEST(ErrorFeedbackTest, AccumulateInPlaceAndReset) {
  auto ef = MakeFeedback(3);
  float g[3] = {1, 2, 3};
  ef->Accumulate(g, g, 3);
  SparseGradient none;
  none.num_elements = 3;
  ef->Update(none);  // nothing sent: everything stays
  float g2[3] = {1, 1, 1};
  ef->Accumulate(g2, g2, 3);
  EXPECT_EQ(std::vector<float>(g2, g2 + 3), std::vector<float>({2, 3, 4}));
  ef->Reset();
  EXPECT_EQ(std::vector<float>(ef->residual(), ef->residual() + 3), std::vector<float>(3, 0.0f));
  float g3[3] = {5, 5, 5};
  ef->Accumulate(g3, g3, 3);  // Reset restarted the ordering contract
  EXPECT_EQ(g3[0], 5.0f);
}

TEST(ErrorFeedbackTest, MomentumCorrectionFollowsDgc) {
  constexpr size_t kN = 64;
  constexpr float kM = 0.9f;
  auto ef = MakeFeedback(kN, kM);
  auto compressor = MakeCompressor("topk");
  std::vector<float> u(kN, 0.0f), v(kN, 0.0f), acc(kN);
  SparseGradient sent;
  for (int step = 0; step < 8; ++step) {
    std::vector<float> g = RandomTensor(kN, 40 + step);
    for (size_t i = 0; i < kN; ++i) {
      u[i] = kM * u[i] + g[i];
      v[i] += u[i];
    }
    ef->Accumulate(g.data(), acc.data(), kN);
    ASSERT_EQ(acc, v) << step;
    ASSERT_TRUE(compressor->Compress(acc.data(), kN, 0.1, &sent).ok());
    ef->Update(sent);
    for (uint32_t i : sent.indices) {
      u[i] = 0.0f;
      v[i] = 0.0f;
      EXPECT_EQ(ef->velocity()[i], 0.0f);
      EXPECT_EQ(ef->residual()[i], 0.0f);
    }
    ASSERT_EQ(std::vector<float>(ef->residual(), ef->residual() + kN), v);
    ASSERT_EQ(ef->velocity(), u);
  }
}

TEST(ErrorFeedbackTest, BlockSelectionsClearWholeBlocks) {
  constexpr size_t kN = 40;  // blocks 0,1 full, block 2 has 8 elements
  auto ef = MakeFeedback(kN);
  std::vector<float> g(kN, 1.0f), acc(kN);
  ef->Accumulate(g.data(), acc.data(), kN);
  SparseGradient sent;
  sent.num_elements = kN;
  sent.block_size = 16;
  sent.indices = {2};
  sent.values.assign(8, 1.0f);
  ef->Update(sent);
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(ef->residual()[i], i >= 32 ? 0.0f : 1.0f) << i;
}

using ErrorFeedbackDeathTest = ::testing::Test;

TEST_F(ErrorFeedbackDeathTest, OrderingContractIsEnforced) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  SparseGradient none;
  none.num_elements = 4;
  float g[4] = {1, 2, 3, 4};
  EXPECT_DEATH(
      {
        auto ef = MakeFeedback(4);
        ef->Update(none);  // Update without Accumulate
      },
      "check failed");
  EXPECT_DEATH(
      {
        auto ef = MakeFeedback(4);
        ef->Accumulate(g, g, 4);
        ef->Accumulate(g, g, 4);  // the previous step was never updated
      },
      "check failed");
  EXPECT_DEATH(
      {
        auto ef = MakeFeedback(4);
        ef->Accumulate(g, g, 3);  // wrong size
      },
      "check failed");
}

}  // namespace
}  // namespace compress
}  // namespace stella

namespace stella {
namespace compress {
namespace {

// Restoring residual and velocity mid-training continues bit for bit, with
// and without momentum correction.
TEST(ErrorFeedbackTest, LoadStateContinuesBitForBit) {
  for (double m : {0.0, 0.9}) {
    constexpr size_t kN = 256;
    auto a = MakeFeedback(kN, m);
    auto compressor = MakeCompressor("topk");
    std::vector<float> acc(kN);
    SparseGradient sent;
    for (int step = 0; step < 4; ++step) {
      std::vector<float> g = RandomTensor(kN, 70 + step);
      a->Accumulate(g.data(), acc.data(), kN);
      ASSERT_TRUE(compressor->Compress(acc.data(), kN, 0.05, &sent).ok());
      a->Update(sent);
    }
    auto b = MakeFeedback(kN, m);
    ASSERT_TRUE(b->LoadState(std::vector<float>(a->residual(), a->residual() + kN), a->velocity()).ok());
    for (int step = 4; step < 8; ++step) {
      std::vector<float> g = RandomTensor(kN, 70 + step);
      std::vector<float> acc_b(kN);
      a->Accumulate(g.data(), acc.data(), kN);
      b->Accumulate(g.data(), acc_b.data(), kN);
      ASSERT_EQ(acc, acc_b) << "momentum " << m << " step " << step;
      ASSERT_TRUE(compressor->Compress(acc.data(), kN, 0.05, &sent).ok());
      a->Update(sent);
      b->Update(sent);
    }
  }
}

TEST(ErrorFeedbackTest, LoadStateRejectsWrongSizesNamingTheBuffer) {
  auto plain = MakeFeedback(8);
  Status st = plain->LoadState(std::vector<float>(7), {});
  EXPECT_NE(st.message().find("residual holds 7 floats, the tensor has 8"), std::string::npos) << st.message();
  st = plain->LoadState(std::vector<float>(8), std::vector<float>(8));
  EXPECT_NE(st.message().find("velocity holds 8 floats, expected 0 (momentum correction off)"), std::string::npos)
      << st.message();
  auto dgc = MakeFeedback(8, 0.5);
  EXPECT_FALSE(dgc->LoadState(std::vector<float>(8), {}).ok());
  EXPECT_TRUE(dgc->LoadState(std::vector<float>(8, 1.0f), std::vector<float>(8, 2.0f)).ok());
  EXPECT_EQ(dgc->residual()[3], 1.0f);
  EXPECT_EQ(dgc->velocity()[3], 2.0f);
}

}  // namespace
}  // namespace compress
}  // namespace stella
