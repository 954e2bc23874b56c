#include "runtime/compress/compressor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "runtime/compress/internal/kernels.h"
#include "tests/compress/test_util.h"

namespace stella {
namespace compress {
namespace {

using testing::RandomTensor;
using testing::ReferenceCacheline;
using testing::ReferenceTopK;

std::unique_ptr<Compressor> Make(const std::string& kind, uint64_t seed = 0x5eed) {
  CompressorOptions o;
  o.kind = kind;
  o.seed = seed;
  auto c = CreateCompressor(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(c).value();
}

SparseGradient Reference(const std::string& kind, const std::vector<float>& g, double density) {
  return kind == "cacheline" ? ReferenceCacheline(g, density) : ReferenceTopK(g, density);
}

void ExpectSame(const SparseGradient& got, const SparseGradient& want, const std::string& what) {
  EXPECT_EQ(got.num_elements, want.num_elements) << what;
  EXPECT_EQ(got.block_size, want.block_size) << what;
  EXPECT_EQ(got.indices, want.indices) << what;
  EXPECT_EQ(got.values, want.values) << what;
  EXPECT_TRUE(ValidateSparseGradient(got).ok()) << what;
}

TEST(SelectionSizeTest, RoundsAndClamps) {
  EXPECT_EQ(SelectionSize(0, 0.5), 0u);
  EXPECT_EQ(SelectionSize(1, 0.001), 1u);
  EXPECT_EQ(SelectionSize(10, 0.04), 1u);  // llround(0.4) = 0 -> clamped to 1
  EXPECT_EQ(SelectionSize(15, 0.5), 8u);   // 7.5 rounds half away from zero
  EXPECT_EQ(SelectionSize(1000, 0.01), 10u);
  EXPECT_EQ(SelectionSize(17, 1.0), 17u);
}

TEST(SparseGradientTest, CoveredElementsCountsTheShortTailBlock) {
  SparseGradient s;
  s.num_elements = 35;  // blocks 0,1 full, block 2 has 3 elements
  s.block_size = 16;
  s.indices = {0, 2};
  EXPECT_EQ(CoveredElements(s), 19u);
  s.indices = {2};
  EXPECT_EQ(CoveredElements(s), 3u);
  s.indices = {7};  // past the end covers nothing
  EXPECT_EQ(CoveredElements(s), 0u);
  EXPECT_EQ(NumBlocks(35, 16), 3u);
  EXPECT_EQ(NumBlocks(32, 16), 2u);
  EXPECT_EQ(NumBlocks(0, 16), 0u);
}

TEST(SparseGradientTest, ValidateNamesTheViolation) {
  SparseGradient s;
  s.num_elements = 10;
  s.indices = {1, 1};
  s.values = {1, 2};
  Status st = ValidateSparseGradient(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("strictly ascending"), std::string::npos) << st.ToString();
  s.indices = {1, 10};
  st = ValidateSparseGradient(s);
  EXPECT_NE(st.message().find("block 10"), std::string::npos) << st.ToString();
  s.indices = {1, 9};
  s.values = {1};
  st = ValidateSparseGradient(s);
  EXPECT_NE(st.message().find("has 1 values"), std::string::npos) << st.ToString();
  s.block_size = 0;
  EXPECT_FALSE(ValidateSparseGradient(s).ok());
}

TEST(BlockL1ScoreTest, IsTheUnsignedSumInTheDocumentedOrder) {
  std::vector<float> x = RandomTensor(16, 3);
  double sum = 0;
  for (float v : x) sum += std::fabs(v);
  EXPECT_NEAR(BlockL1Score(x.data(), 16), sum, 1e-5 * sum);
  float t[4];
  for (int l = 0; l < 4; ++l) {
    t[l] = (std::fabs(x[l]) + std::fabs(x[l + 8])) + (std::fabs(x[l + 4]) + std::fabs(x[l + 12]));
  }
  EXPECT_EQ(BlockL1Score(x.data(), 16), (t[0] + t[2]) + (t[1] + t[3]));
  const float neg[3] = {-1.0f, -2.0f, -4.0f};  // a tail block scores |values|
  EXPECT_EQ(BlockL1Score(neg, 3), 7.0f);
  EXPECT_EQ(BlockL1Score(neg, 0), 0.0f);
}

TEST(BlockL1ScoreTest, TheStreamingKernelIsBitIdentical) {
  // The SIMD scoring pass must agree bit for bit with the scalar definition,
  // or ties and near-ties would select differently from the reference.
  for (size_t n : {1, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
    std::vector<float> g = RandomTensor(n, 50 + n);
    std::vector<float> scores((n + 15) / 16);
    std::vector<uint64_t> cand;
    bool finite = false;
    internal::ComputeBlockScores(g.data(), n, scores.data(), 0.0f, &cand, &finite);
    EXPECT_TRUE(finite);
    for (size_t b = 0; b < scores.size(); ++b) {
      const float want = BlockL1Score(g.data() + 16 * b, std::min<size_t>(16, n - 16 * b));
      ASSERT_EQ(internal::FloatBits(scores[b]), internal::FloatBits(want)) << n << " " << b;
    }
    g[n / 2] = std::numeric_limits<float>::quiet_NaN();
    internal::ComputeBlockScores(g.data(), n, scores.data(), 0.0f, nullptr, &finite);
    EXPECT_FALSE(finite) << n;
  }
}

TEST(CreateCompressorTest, RejectsUnknownKindListingTheValidOnes) {
  CompressorOptions o;
  o.kind = "top-k";
  auto c = CreateCompressor(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  for (const char* k : {"\"top-k\"", "topk", "randomk", "threshold", "cacheline"}) {
    EXPECT_NE(c.status().message().find(k), std::string::npos) << c.status().ToString();
  }
}

TEST(CreateCompressorTest, RejectsOutOfRangeOptions) {
  CompressorOptions o;
  o.kind = "threshold";
  o.threshold_decrease = 1.0;
  EXPECT_EQ(CreateCompressor(o).status().code(), StatusCode::kInvalidArgument);
  o = CompressorOptions();
  o.kind = "cacheline";
  o.max_candidate_ratio = 0.5;
  EXPECT_FALSE(CreateCompressor(o).ok());
  o = CompressorOptions();
  o.kind = "threshold";
  o.initial_threshold = -1.0f;
  EXPECT_FALSE(CreateCompressor(o).ok());
  o = CompressorOptions();
  o.kind = "cacheline";
  o.max_rescans = -1;
  EXPECT_FALSE(CreateCompressor(o).ok());
  o = CompressorOptions();  // no kind: there is no default to fall back on
  EXPECT_NE(CreateCompressor(o).status().message().find("CompressorOptions.kind: required"), std::string::npos);
}

class CompressorKindTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(AllKinds, CompressorKindTest, ::testing::Values("topk", "randomk", "threshold", "cacheline"),
                         [](const auto& info) { return info.param; });

TEST_P(CompressorKindTest, NameMatchesKind) { EXPECT_EQ(Make(GetParam())->name(), GetParam()); }

TEST_P(CompressorKindTest, RejectsDensityOutsideUnitInterval) {
  auto c = Make(GetParam());
  std::vector<float> g = RandomTensor(100, 1);
  SparseGradient out;
  for (double d : {0.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    Status st = c->Compress(g.data(), g.size(), d, &out);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << d;
    EXPECT_NE(st.message().find("density"), std::string::npos) << st.ToString();
  }
  EXPECT_EQ(c->Compress(g.data(), g.size(), 0.1, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Compress(nullptr, 10, 0.1, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->Compress(nullptr, 0, 0.1, &out).ok());
  EXPECT_EQ(c->stats().calls, 1u);
}

TEST_P(CompressorKindTest, RejectsNanAndInfNamingTheFirstBadElement) {
  const std::string kind = GetParam();
  struct Case {
    size_t n;
    std::vector<std::pair<size_t, float>> bad;
    std::string message;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {1000, {{17, nan}}, "gradient element 17 is NaN"},
      {1000, {{500, nan}, {5, inf}}, "gradient element 5 is +Inf"},
      {1000, {{999, -inf}}, "gradient element 999 is -Inf"},
      {1003, {{1001, nan}}, "gradient element 1001 is NaN"},  // in the tail block
      {3, {{0, nan}}, "gradient element 0 is NaN"},
      {65537, {{65536, inf}, {40000, 1e30f}}, "gradient element 65536 is +Inf"},
  };
  for (double density : {0.01, 1.0}) {
    auto c = Make(kind);
    SparseGradient out;
    // Warm up first so the adaptive threshold is set; a NaN must still be
    // caught when it sits in an element far below the threshold.
    std::vector<float> warm = RandomTensor(1000, 9, 100.0f);
    ASSERT_TRUE(c->Compress(warm.data(), warm.size(), density, &out).ok());
    for (const Case& cs : cases) {
      std::vector<float> g = RandomTensor(cs.n, 11, 1e-3f);
      for (const auto& [i, v] : cs.bad) g[i] = v;
      Status st = c->Compress(g.data(), g.size(), density, &out);
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << kind << " " << cs.message;
      EXPECT_EQ(st.message(), cs.message) << kind << " density " << density;
    }
    // The instance is still usable afterwards.
    ASSERT_TRUE(c->Compress(warm.data(), warm.size(), density, &out).ok());
    EXPECT_TRUE(ValidateSparseGradient(out).ok());
  }
}

TEST_P(CompressorKindTest, HugeFiniteValuesAreNotMistakenForInf) {
  // 16 values of 3e38 overflow a block score to +Inf; that is legal.
  auto c = Make(GetParam());
  std::vector<float> g = RandomTensor(256, 4);
  for (size_t i = 160; i < 176; ++i) g[i] = 3e38f;
  SparseGradient out;
  ASSERT_TRUE(c->Compress(g.data(), g.size(), 0.0625, &out).ok());
  if (GetParam() == "cacheline") {
    EXPECT_EQ(out.indices, std::vector<uint32_t>({10}));
  } else if (GetParam() != "randomk") {
    EXPECT_EQ(out.indices.size(), 16u);
    EXPECT_EQ(out.indices.front(), 160u);
  }
}

class ExactCompressorTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(ExactKinds, ExactCompressorTest, ::testing::Values("topk", "threshold", "cacheline"),
                         [](const auto& info) { return info.param; });

TEST_P(ExactCompressorTest, MatchesBruteForceReference) {
  const std::string kind = GetParam();
  for (size_t n : {0, 1, 15, 16, 17, 1000, 65537}) {
    auto c = Make(kind);  // one instance per tensor, as in the pipeline
    uint64_t seed = n;
    for (double density : {0.001, 0.01, 0.5, 1.0, 0.01, 0.001}) {
      for (int rep = 0; rep < 2; ++rep) {  // the second call runs on adapted state
        std::vector<float> g = RandomTensor(n, ++seed);
        SparseGradient out;
        ASSERT_TRUE(c->Compress(g.data(), n, density, &out).ok());
        ExpectSame(out, Reference(kind, g, density),
                   kind + " n=" + std::to_string(n) + " density=" + std::to_string(density));
      }
    }
  }
}

TEST_P(ExactCompressorTest, TiesGoToTheLowerIndex) {
  const std::string kind = GetParam();
  std::vector<std::vector<float>> tensors;
  tensors.push_back(std::vector<float>(1000, 0.5f));  // all equal
  tensors.push_back(std::vector<float>(1000, 0.0f));  // all zero
  std::vector<float> alternating(1000);
  for (size_t i = 0; i < alternating.size(); ++i) alternating[i] = (i % 2) ? -1.0f : 1.0f;
  tensors.push_back(alternating);  // +1 and -1 tie on |g|
  std::vector<float> few(4099);    // few distinct values, many ties at the cut
  std::mt19937_64 rng(5);
  for (float& v : few) v = static_cast<float>(static_cast<int>(rng() % 5) - 2);
  tensors.push_back(few);
  for (size_t t = 0; t < tensors.size(); ++t) {
    auto c = Make(kind);
    for (double density : {0.01, 0.3, 0.5, 0.01}) {
      SparseGradient out;
      ASSERT_TRUE(c->Compress(tensors[t].data(), tensors[t].size(), density, &out).ok());
      ExpectSame(out, Reference(kind, tensors[t], density),
                 kind + " tensor " + std::to_string(t) + " density " + std::to_string(density));
    }
  }
  // All equal: exactly the first k (or first ceil(k/16) blocks).
  auto c = Make(kind);
  SparseGradient out;
  ASSERT_TRUE(c->Compress(tensors[0].data(), 1000, 0.05, &out).ok());
  const size_t want = kind == "cacheline" ? 4 : 50;
  ASSERT_EQ(out.indices.size(), want);
  for (size_t j = 0; j < want; ++j) EXPECT_EQ(out.indices[j], j);
}

TEST(TopKTest, ThresholdAndTopKAgreeOnEveryInput) {
  auto topk = Make("topk");
  auto threshold = Make("threshold");
  for (int step = 0; step < 20; ++step) {
    std::vector<float> g = RandomTensor(5000, 100 + step, step % 3 == 0 ? 10.0f : 1.0f);
    SparseGradient a, b;
    ASSERT_TRUE(topk->Compress(g.data(), g.size(), 0.02, &a).ok());
    ASSERT_TRUE(threshold->Compress(g.data(), g.size(), 0.02, &b).ok());
    EXPECT_EQ(a.indices, b.indices) << step;
    EXPECT_EQ(a.values, b.values) << step;
  }
}

TEST(RandomKTest, DistinctSortedAndCarriesTheValues) {
  auto c = Make("randomk");
  for (size_t n : {1, 15, 16, 17, 1000, 65537}) {
    for (double density : {0.001, 0.01, 0.5, 0.99, 1.0}) {
      std::vector<float> g = RandomTensor(n, n);
      SparseGradient out;
      ASSERT_TRUE(c->Compress(g.data(), n, density, &out).ok());
      EXPECT_EQ(out.num_elements, n);
      EXPECT_EQ(out.block_size, 1u);
      ASSERT_EQ(out.indices.size(), SelectionSize(n, density));
      ASSERT_TRUE(ValidateSparseGradient(out).ok());  // strictly ascending, in range
      for (size_t j = 0; j < out.indices.size(); ++j) {
        EXPECT_EQ(out.values[j], g[out.indices[j]]);  // unscaled
      }
    }
  }
}

TEST(RandomKTest, ReproducibleForASeedAndCallSequence) {
  auto a = Make("randomk", 42);
  auto b = Make("randomk", 42);
  auto other = Make("randomk", 43);
  std::vector<float> g = RandomTensor(10000, 1);
  bool any_differs = false;
  std::vector<uint32_t> first;
  for (int step = 0; step < 3; ++step) {
    SparseGradient x, y, z;
    ASSERT_TRUE(a->Compress(g.data(), g.size(), 0.01, &x).ok());
    ASSERT_TRUE(b->Compress(g.data(), g.size(), 0.01, &y).ok());
    ASSERT_TRUE(other->Compress(g.data(), g.size(), 0.01, &z).ok());
    EXPECT_EQ(x.indices, y.indices);
    any_differs |= x.indices != z.indices;
    if (step == 0) first = x.indices;
    if (step > 0) {
      EXPECT_NE(x.indices, first);  // the generator advances per call
    }
  }
  EXPECT_TRUE(any_differs);
}

TEST(RandomKTest, RoughlyUniform) {
  // Fixed seed, so the statistic is deterministic; the bound is far in the
  // tail of chi-square with 99 degrees of freedom (mean 99, sd 14).
  constexpr size_t kN = 100, kTrials = 5000;
  auto c = Make("randomk", 7);
  std::vector<float> g(kN, 1.0f);
  std::vector<int> count(kN, 0);
  SparseGradient out;
  for (size_t t = 0; t < kTrials; ++t) {
    ASSERT_TRUE(c->Compress(g.data(), kN, 0.1, &out).ok());
    for (uint32_t i : out.indices) ++count[i];
  }
  const double expected = kTrials * 10.0 / kN;
  double chi2 = 0;
  for (int v : count) {
    chi2 += (v - expected) * (v - expected) / expected;
    EXPECT_GT(v, expected * 0.7);
    EXPECT_LT(v, expected * 1.3);
  }
  EXPECT_LT(chi2, 200.0);
}

TEST(CachelineTest, ScansTheWholeTensorWhenEveryBlockPassesTheThreshold) {
  // Every block has the same score, except three winners placed near the
  // start, in the middle and in the very last block. A selector that stopped
  // once it had enough candidates (the prototype) returns blocks 0, 1, 2.
  constexpr size_t kBlocks = 1000;
  std::vector<float> g(kBlocks * 16, 1.0f);
  for (size_t b : {3, 500, 999}) g[b * 16 + 7] = 1.001f;
  auto c = Make("cacheline");
  SparseGradient out;
  for (int call = 0; call < 3; ++call) {
    ASSERT_TRUE(c->Compress(g.data(), g.size(), 48.0 / g.size(), &out).ok());
    EXPECT_EQ(out.indices, std::vector<uint32_t>({3, 500, 999})) << call;
    EXPECT_EQ(out.values.size(), 48u);
  }
  // With the winners removed every block ties: the documented tie rule picks
  // the lowest block indices.
  std::fill(g.begin(), g.end(), 1.0f);
  ASSERT_TRUE(c->Compress(g.data(), g.size(), 48.0 / g.size(), &out).ok());
  EXPECT_EQ(out.indices, std::vector<uint32_t>({0, 1, 2}));
}

TEST(CachelineTest, PicksTheBestBlocksAtTheEnd) {
  std::vector<float> g(16000);
  for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(i) * 1e-3f;
  auto c = Make("cacheline");
  SparseGradient out;
  for (int call = 0; call < 3; ++call) {  // also after the threshold adapted
    ASSERT_TRUE(c->Compress(g.data(), g.size(), 0.01, &out).ok());
    ASSERT_EQ(out.indices.size(), 10u);
    for (size_t j = 0; j < 10; ++j) EXPECT_EQ(out.indices[j], 990 + j);
    EXPECT_EQ(out.values.front(), g[990 * 16]);
    EXPECT_EQ(out.values.back(), g.back());
  }
}

TEST(CachelineTest, ScoresANegativeTailBlockByMagnitude) {
  // The prototype summed the tail block with signs: a strongly negative tail
  // scored lowest instead of highest.
  std::vector<float> g = RandomTensor(16 * 100 + 3, 8, 0.01f);
  g[1600] = -1000.0f;
  g[1601] = -1000.0f;
  g[1602] = -1000.0f;
  auto c = Make("cacheline");
  SparseGradient out;
  ASSERT_TRUE(c->Compress(g.data(), g.size(), 0.01, &out).ok());  // k = 16 -> one block
  ASSERT_EQ(out.indices, std::vector<uint32_t>({100}));
  EXPECT_EQ(out.values, std::vector<float>({-1000.0f, -1000.0f, -1000.0f}));
  EXPECT_EQ(out.block_size, 16u);
}

TEST(ThresholdTest, AdaptsTauOverCallsAndStaysExact) {
  auto c = Make("threshold");
  constexpr size_t kN = 20000;
  constexpr double kDensity = 0.01;
  uint64_t seed = 1000;
  auto step = [&](float scale) {
    std::vector<float> g = RandomTensor(kN, ++seed, scale);
    SparseGradient out;
    EXPECT_TRUE(c->Compress(g.data(), kN, kDensity, &out).ok());
    ExpectSame(out, ReferenceTopK(g, kDensity), "scale " + std::to_string(scale));
    return c->stats();
  };
  // Steady state: after the first estimate nearly every call is one pass.
  CompressorStats s = step(1.0f);
  const float tau0 = s.threshold;
  EXPECT_GT(tau0, 0.0f);
  for (int i = 0; i < 30; ++i) s = step(1.0f);
  EXPECT_LE(s.input_passes, s.calls + 3);
  EXPECT_EQ(s.exact_fallbacks, 0u);

  // Gradients grow 4x: far too many candidates, tau rises additively.
  float before = s.threshold;
  for (int i = 0; i < 10; ++i) {
    s = step(4.0f);
    EXPECT_GT(s.threshold, before) << i;
    EXPECT_GT(s.last_candidates, 3 * SelectionSize(kN, kDensity));
    before = s.threshold;
  }
  EXPECT_TRUE(std::isfinite(s.threshold));

  // Gradients shrink 40x: too few candidates, rescans and an exact fallback,
  // then tau settles lower and single passes resume.
  const float high = s.threshold;
  s = step(0.1f);
  EXPECT_GT(s.rescans, 0u);
  EXPECT_LT(s.threshold, high);
  const CompressorStats settled = step(0.1f);
  for (int i = 0; i < 20; ++i) s = step(0.1f);
  EXPECT_LE(s.input_passes - settled.input_passes, 20u + 4u);
  EXPECT_LT(s.threshold, tau0);
}

TEST(ThresholdTest, ATooHighInitialThresholdFallsBackExactly) {
  for (const char* kind : {"threshold", "cacheline"}) {
    CompressorOptions o;
    o.kind = kind;
    o.initial_threshold = 1e6f;
    o.max_rescans = 1;
    auto c = CreateCompressor(o);
    ASSERT_TRUE(c.ok());
    std::vector<float> g = RandomTensor(4000, 77);
    SparseGradient out;
    ASSERT_TRUE((*c)->Compress(g.data(), g.size(), 0.01, &out).ok());
    ExpectSame(out, Reference(kind, g, 0.01), kind);
    EXPECT_EQ((*c)->stats().exact_fallbacks, 1u) << kind;
    EXPECT_LT((*c)->stats().threshold, 1e6f) << kind;
    // The threshold restarted just below the k-th value: next call is direct.
    g = RandomTensor(4000, 78);
    ASSERT_TRUE((*c)->Compress(g.data(), g.size(), 0.01, &out).ok());
    ExpectSame(out, Reference(kind, g, 0.01), kind);
    EXPECT_EQ((*c)->stats().exact_fallbacks, 1u) << kind;
  }
}

TEST(CachelineTest, AdaptsOnBlockScoresAndStaysExact) {
  auto c = Make("cacheline");
  for (int i = 0; i < 40; ++i) {
    const float scale = i < 15 ? 1.0f : (i < 25 ? 8.0f : 0.05f);
    std::vector<float> g = RandomTensor(16 * 1000 + 9, 300 + i, scale);
    SparseGradient out;
    ASSERT_TRUE(c->Compress(g.data(), g.size(), 0.01, &out).ok());
    ExpectSame(out, ReferenceCacheline(g, 0.01), "call " + std::to_string(i));
  }
  const CompressorStats s = c->stats();
  EXPECT_EQ(s.calls, 40u);
  EXPECT_EQ(s.input_passes, 40u);  // rescans work on the scores, not the input
  EXPECT_GT(s.threshold, 0.0f);
}

}  // namespace
}  // namespace compress
}  // namespace stella

namespace stella {
namespace compress {
namespace {

// A compressor restored from SaveState continues exactly as the saved one:
// the same selections (random-k's generator) and the same adaptive threshold.
TEST_P(CompressorKindTest, SavedStateContinuesTheSameSelections) {
  auto a = Make(GetParam(), 7);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g = RandomTensor(5000, 10 + step);
    SparseGradient out;
    ASSERT_TRUE(a->Compress(g.data(), g.size(), 0.02, &out).ok());
  }
  const std::string state = a->SaveState();
  auto b = Make(GetParam(), 999);  // another seed: only the state can make it agree
  ASSERT_TRUE(b->LoadState(state).ok()) << b->LoadState(state).ToString();
  EXPECT_EQ(b->stats().threshold, a->stats().threshold);
  for (int step = 3; step < 6; ++step) {
    std::vector<float> g = RandomTensor(5000, 10 + step);
    SparseGradient x, y;
    ASSERT_TRUE(a->Compress(g.data(), g.size(), 0.02, &x).ok());
    ASSERT_TRUE(b->Compress(g.data(), g.size(), 0.02, &y).ok());
    ExpectSame(y, x, GetParam() + " step " + std::to_string(step));
    EXPECT_EQ(b->stats().threshold, a->stats().threshold);
  }
}

TEST_P(CompressorKindTest, LoadStateRejectsAnotherKindAndTruncationUnchanged) {
  auto c = Make(GetParam());
  const std::string other = GetParam() == "topk" ? "randomk" : "topk";
  Status st = c->LoadState(Make(other)->SaveState());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("state of a " + other + " compressor given to a " + GetParam()), std::string::npos)
      << st.message();
  const std::string mine = c->SaveState();
  EXPECT_EQ(c->LoadState(mine.substr(0, mine.size() - 1)).code(), StatusCode::kDataLoss);
  EXPECT_EQ(c->LoadState(mine + "x").code(), StatusCode::kDataLoss);
  EXPECT_EQ(c->SaveState(), mine);  // unchanged by the failed loads
}

}  // namespace
}  // namespace compress
}  // namespace stella
