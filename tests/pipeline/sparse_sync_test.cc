// SparseSync end to end over the in-memory fakes: 2 clusters x 2 workers, each
// a thread with its own gradients, its own group member and (gateways) mesh
// member.
#include "runtime/pipeline/sparse_sync.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "runtime/exchange/testing/in_memory.h"

namespace stella::pipeline {
namespace {

constexpr int kClusters = 2, kWorkers = 2, kWorld = kClusters * kWorkers;

struct WorkerResult {
  Status status;
  std::vector<float> parameters;
  std::vector<float> control;  // last step's agreed control values
  size_t touched = 0;          // last step
};

std::vector<WorkerResult> RunJob(SparseSyncOptions base, const std::vector<float>& initial, int steps,
                                 double density = 0.05) {
  exchange::testing::MeshHub mesh_hub(kClusters);
  std::vector<std::unique_ptr<exchange::testing::GroupHub>> group_hubs;
  for (int c = 0; c < kClusters; ++c) group_hubs.push_back(std::make_unique<exchange::testing::GroupHub>(kWorkers));
  std::vector<WorkerResult> results(kWorld);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClusters; ++c) {
    for (int r = 0; r < kWorkers; ++r) {
      threads.emplace_back([&, c, r] {
        const int g = c * kWorkers + r;
        WorkerResult& out = results[static_cast<size_t>(g)];
        auto group = group_hubs[static_cast<size_t>(c)]->Member(r);
        std::unique_ptr<exchange::WanMesh> mesh;
        if (r == 0) mesh = mesh_hub.Member(c);
        SparseSyncOptions o = base;
        o.world_size = kWorld;
        o.cluster_index = c;
        o.num_control = 2;
        auto sync = SparseSync::Create(o, group.get(), mesh.get(), initial.data());
        if (!sync.ok()) {
          out.status = sync.status();
          return;
        }
        std::mt19937_64 rng(1000 + g);
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> buffer(initial.size() + 2);
        for (int t = 0; t < steps; ++t) {
          for (size_t i = 0; i < initial.size(); ++i) buffer[i] = d(rng);
          buffer[initial.size()] = (g == 3 && t == steps - 1) ? 1.0f : 0.0f;  // stop vote of one worker
          buffer[initial.size() + 1] = static_cast<float>(g);                 // "loss"
          SyncStepStats stats;
          out.status = (*sync)->Step(static_cast<uint32_t>(t), density, buffer.data(), &stats);
          if (!out.status.ok()) return;
          out.touched = stats.touched_elements;
        }
        out.parameters.assign((*sync)->parameters(), (*sync)->parameters() + initial.size());
        out.control.assign(buffer.end() - 2, buffer.end());
      });
    }
  }
  for (auto& t : threads) t.join();
  return results;
}

SparseSyncOptions BaseOptions(const std::vector<int64_t>& sizes) {
  SparseSyncOptions o;
  o.tensor_sizes = sizes;
  o.optimizer.name = "sgd";
  o.optimizer.lr = 0.1;
  o.optimizer.momentum = 0.9;
  o.compression.compressor.kind = "topk";
  return o;
}

TEST(SparseSyncTest, AllWorkersOfAllClustersKeepIdenticalParameters) {
  for (const char* kind : {"topk", "cacheline", "randomk"}) {
    const std::vector<int64_t> sizes = {500, 64, 1030};
    std::vector<float> initial(1594);
    for (size_t i = 0; i < initial.size(); ++i) initial[i] = 0.001f * static_cast<float>(i % 97);
    auto o = BaseOptions(sizes);
    o.compression.compressor.kind = kind;
    o.compression.precision = compress::ValuePrecision::kFp16;
    auto results = RunJob(o, initial, 6);
    for (int g = 0; g < kWorld; ++g)
      ASSERT_TRUE(results[g].status.ok()) << kind << ": " << results[g].status.ToString();
    for (int g = 1; g < kWorld; ++g) {
      EXPECT_EQ(std::memcmp(results[0].parameters.data(), results[g].parameters.data(), initial.size() * 4), 0)
          << kind << ": worker " << g << " diverged";
    }
    // Sparse: some parameters moved, most did not in the last step.
    EXPECT_NE(results[0].parameters, initial) << kind;
    EXPECT_GT(results[0].touched, 0u) << kind;
    EXPECT_LT(results[0].touched, initial.size() / 2) << kind;
    // Control values are the job-wide mean: one stop vote of four, mean "loss" 1.5.
    EXPECT_FLOAT_EQ(results[2].control[0], 0.25f) << kind;
    EXPECT_FLOAT_EQ(results[2].control[1], 1.5f) << kind;
  }
}

// Density 1: the master copy follows plain dense SGD on the job-wide mean
// gradient, computed here independently.
TEST(SparseSyncTest, DensityOneAppliesTheDenseMean) {
  const std::vector<int64_t> sizes = {40, 9};
  std::vector<float> initial(49, 0.5f);
  auto o = BaseOptions(sizes);
  o.optimizer.momentum = 0.0;
  auto results = RunJob(o, initial, 1, /*density=*/1.0);
  for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(results[g].status.ok()) << results[g].status.ToString();
  // Recompute the first step's gradients (same generators as RunJob).
  std::vector<std::vector<float>> grads(kWorld, std::vector<float>(49));
  for (int g = 0; g < kWorld; ++g) {
    std::mt19937_64 rng(1000 + g);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& x : grads[g]) x = d(rng);
  }
  for (size_t i = 0; i < 49; ++i) {
    const float c0 = grads[0][i] + grads[1][i], c1 = grads[2][i] + grads[3][i];
    const float mean = ((0.0f + c0) + c1) * (1.0f / kWorld);
    EXPECT_NEAR(results[3].parameters[i], 0.5f - 0.1f * mean, 1e-6f) << i;
  }
  EXPECT_EQ(results[3].touched, 49u);
}

TEST(SparseSyncTest, RejectsBadOptions) {
  exchange::testing::GroupHub hub(1);
  auto group = hub.Member(0);
  std::vector<float> initial(4);
  auto o = BaseOptions({4});
  {
    // The density is per step (the tuner driver owns it): checked there.
    auto sync = SparseSync::Create(o, group.get(), nullptr, initial.data());
    ASSERT_TRUE(sync.ok());
    std::vector<float> buffer(4, 1.0f);
    for (double bad : {0.0, -0.5, 1.5}) {
      Status st = (*sync)->Step(0, bad, buffer.data(), nullptr);
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
      EXPECT_NE(st.message().find("density must be in (0, 1]"), std::string::npos) << st.message();
    }
  }
  o = BaseOptions({4});
  o.compression.compressor.kind = "bogus";
  EXPECT_EQ(SparseSync::Create(o, group.get(), nullptr, initial.data()).status().code(), StatusCode::kInvalidArgument);
  o = BaseOptions({4});
  o.optimizer.lr = -1;
  EXPECT_EQ(SparseSync::Create(o, group.get(), nullptr, initial.data()).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stella::pipeline
