// SparseExchange, the payload format, the block mask and the CPU optimizer
// stage: gateways run as threads over the in-memory mesh.
#include "runtime/pipeline/sparse_exchange.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "runtime/exchange/testing/in_memory.h"
#include "runtime/pipeline/block_mask.h"
#include "runtime/pipeline/cpu_optimizer.h"

namespace stella::pipeline {
namespace {

using compress::SparseGradient;

std::vector<float> RandomVector(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

SparseExchangeOptions Options(std::vector<int64_t> sizes, int world, int cluster, const std::string& kind = "topk") {
  SparseExchangeOptions o;
  o.tensor_sizes = std::move(sizes);
  o.compression.compressor.kind = kind;
  o.num_control = 2;
  o.world_size = world;
  o.cluster_index = cluster;
  return o;
}

Clock::TimePoint Deadline() { return SystemClock::Get().Now() + std::chrono::seconds(20); }

// One step's result on one gateway.
struct Result {
  Status status;
  std::vector<float> aggregate;
  std::vector<float> control;
  std::vector<std::vector<uint32_t>> touched;
};

// Runs `steps` exchanges on `clusters` gateway threads; cluster c's gradient at
// step t is grads(c, t). Returns the last step's results per cluster.
std::vector<Result> RunGateways(int clusters, int world, const std::vector<int64_t>& sizes, double density, int steps,
                                const std::function<std::vector<float>(int, int)>& grads,
                                exchange::testing::MeshHub* hub, const std::string& kind = "topk") {
  std::vector<Result> results(static_cast<size_t>(clusters));
  std::vector<std::thread> threads;
  for (int c = 0; c < clusters; ++c) {
    threads.emplace_back([&, c] {
      auto mesh = hub->Member(c);
      auto x = SparseExchange::Create(Options(sizes, world, c, kind), mesh.get());
      Result& r = results[static_cast<size_t>(c)];
      if (!x.ok()) {
        r.status = x.status();
        return;
      }
      for (int t = 0; t < steps; ++t) {
        std::vector<float> g = grads(c, t);
        const float control[2] = {static_cast<float>(c), 1.0f + c};
        r.aggregate.assign(g.size(), -1.0f);
        r.control.assign(2, -1.0f);
        r.status = (*x)->Exchange(static_cast<uint32_t>(t), density, g.data(), control, r.aggregate.data(),
                                  r.control.data(), &r.touched, nullptr, Deadline());
        if (!r.status.ok()) return;
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

TEST(PayloadTest, RoundTripsTensorsAndControl) {
  SparseGradient a{10, 1, {1, 7}, {0.5f, -2.0f}};
  SparseGradient b{40, 16, {2}, std::vector<float>(8, 3.0f)};  // tail block of 8
  const float control[2] = {1.0f, 0.25f};
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(EncodePayload(7, control, 2, {a}, compress::ValuePrecision::kFp32, &bytes).ok());
  PayloadLayout layout{{10}, 2, 1};
  auto d = DecodePayload(bytes.data(), bytes.size(), 7, layout);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->control, (std::vector<float>{1.0f, 0.25f}));
  ASSERT_EQ(d->tensors.size(), 1u);
  EXPECT_EQ(d->tensors[0].indices, a.indices);
  EXPECT_EQ(d->tensors[0].values, a.values);

  ASSERT_TRUE(EncodePayload(3, control, 2, {b}, compress::ValuePrecision::kFp16, &bytes).ok());
  auto e = DecodePayload(bytes.data(), bytes.size(), 3, PayloadLayout{{40}, 2, 16});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->tensors[0].values, b.values);
}

TEST(PayloadTest, RejectsMalformedPayloadsWithContext) {
  SparseGradient a{10, 1, {1, 7}, {0.5f, -2.0f}};
  const float control[2] = {0.0f, 1.0f};
  std::vector<uint8_t> good;
  ASSERT_TRUE(EncodePayload(5, control, 2, {a}, compress::ValuePrecision::kFp32, &good).ok());
  const PayloadLayout layout{{10}, 2, 1};
  auto expect_error = [&](std::vector<uint8_t> bytes, uint32_t step, const PayloadLayout& l, const std::string& what) {
    auto d = DecodePayload(bytes.data(), bytes.size(), step, l);
    ASSERT_FALSE(d.ok()) << what;
    EXPECT_NE(d.status().message().find(what), std::string::npos) << d.status().ToString();
  };
  expect_error({good.begin(), good.begin() + 10}, 5, layout, "shorter than its 16-byte header");
  auto bad_magic = good;
  bad_magic[0] ^= 1;
  expect_error(bad_magic, 5, layout, "bad magic");
  expect_error(good, 6, layout, "is for step 5, expected step 6");
  expect_error(good, 5, PayloadLayout{{10, 3}, 2, 1}, "carries 1 tensors, the model has 2");
  expect_error(good, 5, PayloadLayout{{10}, 3, 1}, "carries 2 control values, expected 3");
  // The peer's tensor has 10 elements; this model's has 11.
  expect_error(good, 5, PayloadLayout{{11}, 2, 1}, "tensor 0");
  expect_error(good, 5, PayloadLayout{{10}, 2, 16}, "block size 1, expected 16");
  expect_error({good.begin(), good.end() - 1}, 5, layout, "tensor 0 claims");
  auto trailing = good;
  trailing.push_back(0);
  expect_error(trailing, 5, layout, "1 trailing bytes");
  auto nan_control = good;
  const float nan = std::nanf("");
  std::memcpy(nan_control.data() + 16, &nan, 4);
  expect_error(nan_control, 5, layout, "control value 0 is not finite");
  auto nan_value = good;
  std::memcpy(nan_value.data() + nan_value.size() - 4, &nan, 4);
  expect_error(nan_value, 5, layout, "tensor 0 value 1 is not finite");
}

// Three gateways, several steps with error feedback at 10% density: every
// gateway ends with the same bits, equal to the cluster-order sum of what the
// clusters sent, times 1/world; touched is the sorted union.
TEST(SparseExchangeTest, AllGatewaysComputeTheSameAggregateInClusterOrder) {
  const std::vector<int64_t> sizes = {1000, 37, 4097};
  const size_t total = 1000 + 37 + 4097;
  exchange::testing::MeshHub hub(3);
  auto grads = [&](int c, int t) { return RandomVector(total, 100 * c + t); };
  auto results = RunGateways(3, 6, sizes, 0.1, 4, grads, &hub);
  for (const auto& r : results) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (int c = 1; c < 3; ++c) {
    EXPECT_EQ(std::memcmp(results[0].aggregate.data(), results[static_cast<size_t>(c)].aggregate.data(),
                          total * sizeof(float)),
              0)
        << "gateway " << c;
    EXPECT_EQ(results[0].touched, results[static_cast<size_t>(c)].touched);
    EXPECT_EQ(results[0].control, results[static_cast<size_t>(c)].control);
  }
  // Control: (0 + 1 + 2) / 6 and (1 + 2 + 3) / 6.
  EXPECT_FLOAT_EQ(results[0].control[0], 0.5f);
  EXPECT_FLOAT_EQ(results[0].control[1], 1.0f);
  // Touched: ascending, unique, at least one cluster's k and at most 3 k, and
  // nonzero aggregate elements only at touched indices.
  size_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto& u = results[0].touched[i];
    const size_t k = compress::SelectionSize(static_cast<size_t>(sizes[i]), 0.1);
    EXPECT_TRUE(std::is_sorted(u.begin(), u.end()) && std::adjacent_find(u.begin(), u.end()) == u.end());
    EXPECT_GE(u.size(), k);
    EXPECT_LE(u.size(), 3 * k);
    std::vector<bool> in(static_cast<size_t>(sizes[i]), false);
    for (uint32_t b : u) in[b] = true;
    for (size_t e = 0; e < static_cast<size_t>(sizes[i]); ++e) {
      if (!in[e]) {
        EXPECT_EQ(results[0].aggregate[offset + e], 0.0f) << "tensor " << i << " element " << e;
      }
    }
    offset += static_cast<size_t>(sizes[i]);
  }
}

// Density 1, fp32: the aggregate is bit-identical to the dense all-reduce's
// (0 + c0 + c1 + c2, then times the float 1/world) and every index is touched.
TEST(SparseExchangeTest, DensityOneEqualsTheDenseMeanBitForBit) {
  const std::vector<int64_t> sizes = {300, 17};
  const size_t total = 317;
  exchange::testing::MeshHub hub(3);
  auto grads = [&](int c, int t) { return RandomVector(total, 7 * c + t + 1); };
  auto results = RunGateways(3, 5, sizes, 1.0, 1, grads, &hub);
  for (const auto& r : results) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  std::vector<float> expected(total, 0.0f);
  for (int c = 0; c < 3; ++c) {
    auto g = grads(c, 0);
    for (size_t i = 0; i < total; ++i) expected[i] += g[i];
  }
  const float inv = 1.0f / 5.0f;
  for (auto& x : expected) x *= inv;
  EXPECT_EQ(std::memcmp(expected.data(), results[1].aggregate.data(), total * sizeof(float)), 0);
  EXPECT_EQ(results[1].touched[0].size(), 300u);
  EXPECT_EQ(results[1].touched[1].size(), 17u);
}

// One cluster: no mesh, but compression (and error feedback) still apply: the
// first step sends the k largest, the second (zero gradient) sends what the
// first held back.
TEST(SparseExchangeTest, SingleClusterStillCompressesWithErrorFeedback) {
  auto x = SparseExchange::Create(Options({8}, 1, 0), nullptr);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  std::vector<float> g = {1, -8, 3, 7, -2, 6, 5, 4};
  std::vector<float> agg(8), ctl(2);
  const float control[2] = {0, 0};
  std::vector<std::vector<uint32_t>> touched;
  ExchangeStats stats;
  ASSERT_TRUE((*x)->Exchange(0, 0.25, g.data(), control, agg.data(), ctl.data(), &touched, &stats, Deadline()).ok());
  EXPECT_EQ(touched[0], (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(agg, (std::vector<float>{0, -8, 0, 7, 0, 0, 0, 0}));
  EXPECT_EQ(stats.wan_bytes_sent, 0u);
  EXPECT_GT(stats.payload_bytes, 0u);
  std::vector<float> zero(8, 0.0f);
  ASSERT_TRUE(
      (*x)->Exchange(1, 0.25, zero.data(), control, agg.data(), ctl.data(), &touched, nullptr, Deadline()).ok());
  EXPECT_EQ(touched[0], (std::vector<uint32_t>{5, 6}));
  EXPECT_EQ(agg, (std::vector<float>{0, 0, 0, 0, 0, 6, 5, 0}));
  const float* residual = (*x)->error_feedback(0)->residual();
  EXPECT_EQ(std::vector<float>(residual, residual + 8), (std::vector<float>{1, 0, 3, 0, -2, 0, 0, 4}));
}

// A peer whose payload was corrupted in transit fails the step on every
// gateway that receives it, naming the cluster and the problem.
TEST(SparseExchangeTest, MalformedPeerPayloadIsRejected) {
  const std::vector<int64_t> sizes = {64};
  exchange::testing::MeshHub hub(2);
  hub.SetTamper([](int from, uint32_t, std::vector<uint8_t>* p) {
    if (from == 1) p->resize(p->size() - 3);  // truncated
  });
  auto grads = [&](int c, int t) { return RandomVector(64, 3 * c + t); };
  auto results = RunGateways(2, 2, sizes, 0.1, 1, grads, &hub);
  for (int c = 0; c < 2; ++c) {
    const Status& st = results[static_cast<size_t>(c)].status;
    ASSERT_FALSE(st.ok()) << "gateway " << c;
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
    EXPECT_NE(st.message().find("payload of cluster 1"), std::string::npos) << st.ToString();
  }
}

// Two gateways configured with different compressors (block sizes 1 and 16)
// cannot be merged: refused, not misread.
TEST(SparseExchangeTest, MismatchedBlockSizeIsRejected) {
  exchange::testing::MeshHub hub(2);
  std::vector<Status> st(2);
  std::vector<std::thread> threads;
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, c] {
      auto mesh = hub.Member(c);
      auto x = SparseExchange::Create(Options({64}, 2, c, c == 0 ? "topk" : "cacheline"), mesh.get());
      ASSERT_TRUE(x.ok());
      auto g = RandomVector(64, c);
      std::vector<float> agg(64), ctl(2);
      const float control[2] = {0, 0};
      std::vector<std::vector<uint32_t>> touched;
      st[static_cast<size_t>(c)] =
          (*x)->Exchange(0, 0.25, g.data(), control, agg.data(), ctl.data(), &touched, nullptr, Deadline());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_NE(st[0].message().find("block size 16, expected 1"), std::string::npos) << st[0].ToString();
  EXPECT_NE(st[1].message().find("block size 1, expected 16"), std::string::npos) << st[1].ToString();
}

TEST(SparseExchangeTest, NonFiniteGradientFailsTheStep) {
  auto x = SparseExchange::Create(Options({4}, 1, 0), nullptr);
  ASSERT_TRUE(x.ok());
  std::vector<float> g = {1, std::nanf(""), 2, 3}, agg(4), ctl(2);
  const float control[2] = {0, 0};
  std::vector<std::vector<uint32_t>> touched;
  Status st = (*x)->Exchange(0, 0.5, g.data(), control, agg.data(), ctl.data(), &touched, nullptr, Deadline());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("compressing tensor 0"), std::string::npos) << st.ToString();
}

TEST(BlockMaskTest, RoundTripsAcrossTensorBoundaries) {
  const std::vector<int64_t> sizes = {5, 40, 1, 17};
  for (uint32_t bs : {1u, 16u}) {
    std::vector<std::vector<uint32_t>> touched(4);
    touched[0] = bs == 1 ? std::vector<uint32_t>{0, 4} : std::vector<uint32_t>{0};
    touched[1] = bs == 1 ? std::vector<uint32_t>{3, 16, 17, 39} : std::vector<uint32_t>{1, 2};
    touched[3] = bs == 1 ? std::vector<uint32_t>{16} : std::vector<uint32_t>{1};
    std::vector<float> words(BlockMaskWords(sizes, bs));
    PackBlockMask(touched, sizes, bs, words.data());
    std::vector<std::vector<uint32_t>> back;
    ASSERT_TRUE(UnpackBlockMask(words.data(), sizes, bs, &back).ok());
    EXPECT_EQ(back, touched) << "block size " << bs;
  }
}

TEST(BlockMaskTest, RejectsCorruptWords) {
  const std::vector<int64_t> sizes = {20};  // 2 words, 4 valid bits in the last
  std::vector<std::vector<uint32_t>> out;
  std::vector<float> words = {1.0f, 0.5f};
  EXPECT_EQ(UnpackBlockMask(words.data(), sizes, 1, &out).code(), StatusCode::kDataLoss);
  words = {70000.0f, 0.0f};
  EXPECT_EQ(UnpackBlockMask(words.data(), sizes, 1, &out).code(), StatusCode::kDataLoss);
  words = {0.0f, 16.0f};  // bit 4 of the last word = block 20, past the end
  EXPECT_EQ(UnpackBlockMask(words.data(), sizes, 1, &out).code(), StatusCode::kDataLoss);
  words = {std::nanf(""), 0.0f};
  EXPECT_EQ(UnpackBlockMask(words.data(), sizes, 1, &out).code(), StatusCode::kDataLoss);
}

// All blocks touched: the stage's dense step equals a sparse step over every
// block bit for bit (the optim library's guarantee, relied on for exactness);
// a partial list leaves the other elements alone.
TEST(CpuOptimizerTest, DenseAndSparsePathsAgreeAndUntouchedStayPut) {
  const std::vector<int64_t> sizes = {33, 70};
  const auto init = RandomVector(103, 1);
  CpuOptimizerOptions o;
  o.tensor_sizes = sizes;
  o.optimizer.name = "adam";
  o.optimizer.lr = 0.01;
  auto full = CpuOptimizer::Create(o, init.data());
  ASSERT_TRUE(full.ok());
  auto reference = optim::TensorOptimizer::Create(o.optimizer, 70);
  ASSERT_TRUE(reference.ok());
  std::vector<float> ref(init.begin() + 33, init.end());
  std::vector<uint32_t> all70(70);
  for (uint32_t i = 0; i < 70; ++i) all70[i] = i;
  for (int step = 0; step < 3; ++step) {
    const auto g = RandomVector(103, 10 + step);
    std::vector<std::vector<uint32_t>> touched = {{}, all70};
    for (uint32_t i = 0; i < 33; ++i) touched[0].push_back(i);
    ASSERT_TRUE((*full)->Apply(g.data(), touched, 1).ok());
    ASSERT_TRUE((*reference)->StepSparse(ref.data(), all70.data(), 70, 1, g.data() + 33).ok());
  }
  EXPECT_EQ(std::memcmp((*full)->parameters() + 33, ref.data(), 70 * sizeof(float)), 0);

  auto partial = CpuOptimizer::Create(o, init.data());
  ASSERT_TRUE(partial.ok());
  const auto g = RandomVector(103, 99);
  ASSERT_TRUE((*partial)->Apply(g.data(), {{2, 5}, {}}, 1).ok());
  for (size_t i = 0; i < 103; ++i) {
    if (i == 2 || i == 5) {
      EXPECT_NE((*partial)->parameters()[i], init[i]) << i;
    } else {
      EXPECT_EQ((*partial)->parameters()[i], init[i]) << i;
    }
  }
  // A list that does not fit the tensor is refused.
  EXPECT_EQ((*partial)->Apply(g.data(), {{40}, {}}, 1).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stella::pipeline
