// TensorPipeline: per-tensor (per-bucket) pipelining with exact staleness,
// driven by SparseSync::StepBucket over the in-memory fakes (2 clusters x 2
// workers, each a thread), plus its error, stop and bucketing behaviour.
#include "runtime/pipeline/tensor_pipeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "runtime/exchange/testing/in_memory.h"
#include "runtime/pipeline/sparse_sync.h"

namespace stella::pipeline {
namespace {

constexpr int kClusters = 2, kWorkers = 2, kWorld = kClusters * kWorkers;
constexpr float kLr = 0.1f;
const std::vector<int64_t> kSizes = {30, 7, 50, 3, 20};  // 5 tensors, 110 floats

// Worker g's gradient of element k given the parameters it computed from:
// depends on the parameters, so using a wrong version changes the result.
float Gradient(int g, int64_t step, float param, size_t k) {
  return 0.5f * param + 0.01f * static_cast<float>(g + 1) + 0.001f * static_cast<float>((k + step) % 13);
}

struct WorkerResult {
  Status status;
  std::vector<float> parameters;         // model after Finish
  std::vector<std::vector<float>> used;  // model each step computed from
  std::vector<size_t> order;             // bucket order seen by the communication thread
};

// Each worker: one TensorPipeline driving SparseSync buckets (density 1,
// plain SGD). The "model" is a float vector; layer j = tensor j.
std::vector<WorkerResult> RunJob(int staleness, int steps, size_t bucket_bytes) {
  exchange::testing::MeshHub mesh_hub(kClusters);
  std::vector<std::unique_ptr<exchange::testing::GroupHub>> group_hubs;
  for (int c = 0; c < kClusters; ++c) group_hubs.push_back(std::make_unique<exchange::testing::GroupHub>(kWorkers));
  size_t total = 0;
  for (int64_t s : kSizes) total += static_cast<size_t>(s);
  std::vector<float> initial(total);
  for (size_t k = 0; k < total; ++k) initial[k] = 0.01f * static_cast<float>(k % 17);
  const auto buckets = MakeBuckets(kSizes, bucket_bytes);

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
        SparseSyncOptions so;
        so.tensor_sizes = kSizes;
        so.compression.compressor.kind = "topk";
        so.optimizer.name = "sgd";
        so.optimizer.lr = kLr;
        so.optimizer.momentum = 0.0;
        so.world_size = kWorld;
        so.cluster_index = c;
        so.num_control = 1;
        so.buckets = buckets;
        so.timeout = std::chrono::milliseconds(20000);
        auto sync = SparseSync::Create(so, group.get(), mesh.get(), initial.data());
        if (!sync.ok()) {
          out.status = sync.status();
          return;
        }
        SparseSync* sp = sync->get();

        TensorPipelineOptions po;
        po.staleness = staleness;
        po.tensor_sizes = kSizes;
        po.num_control = 1;
        po.buckets = buckets;
        po.progress_timeout = std::chrono::milliseconds(30000);
        std::vector<size_t>* order = &out.order;
        auto pipe = TensorPipeline::Create(
            po, sp->parameters(), [sp, order](int64_t step, size_t b, float* grad, float* control) -> StatusOr<bool> {
              order->push_back(b);
              STELLA_RETURN_IF_ERROR(
                  sp->StepBucket(static_cast<uint32_t>(step), b, /*density=*/1.0, grad, control, nullptr));
              return false;
            });
        if (!pipe.ok()) {
          out.status = pipe.status();
          return;
        }
        TensorPipeline& p = **pipe;

        std::vector<float> model(total, -1.0f);
        std::vector<size_t> offsets = {0};
        for (int64_t s : kSizes) offsets.push_back(offsets.back() + static_cast<size_t>(s));
        auto install = [&](size_t i, const float* src) {
          std::copy(src, src + kSizes[i], model.begin() + static_cast<std::ptrdiff_t>(offsets[i]));
        };
        for (int64_t t = 0; t < steps; ++t) {
          auto begin = p.BeginStep(t);
          if (!begin.ok()) {
            out.status = begin.status();
            return;
          }
          EXPECT_EQ(begin->version, std::max<int64_t>(0, t - staleness));
          float* buffer = p.GradientBuffer();
          for (size_t j = 0; j < kSizes.size(); ++j) {  // forward: layer by layer
            out.status = p.WaitTensors({j}, install);
            if (!out.status.ok()) return;
          }
          out.used.push_back(model);
          for (size_t j = kSizes.size(); j-- > 0;) {  // backward: last layer first
            for (size_t k = offsets[j]; k < offsets[j + 1]; ++k) buffer[k] = Gradient(g, t, model[k], k);
            p.TensorReady(j);
          }
          buffer[total] = 0.0f;
          out.status = p.Submit(install);
          if (!out.status.ok()) return;
        }
        auto fin = p.Finish(install);
        if (!fin.ok()) {
          out.status = fin.status();
          return;
        }
        EXPECT_EQ(fin->version, steps);
        out.parameters = model;
      });
    }
  }
  for (auto& t : threads) t.join();
  return results;
}

// The reference: step t computes from EXACTLY version max(0, t - s); the
// update is SGD on the job-wide mean, summed as the exchange does.
std::vector<std::vector<float>> Reference(int staleness, int steps) {
  size_t total = 0;
  for (int64_t s : kSizes) total += static_cast<size_t>(s);
  std::vector<std::vector<float>> versions(1, std::vector<float>(total));
  for (size_t k = 0; k < total; ++k) versions[0][k] = 0.01f * static_cast<float>(k % 17);
  for (int64_t t = 0; t < steps; ++t) {
    const auto& from = versions[static_cast<size_t>(std::max<int64_t>(0, t - staleness))];
    std::vector<float> next = versions.back();
    for (size_t k = 0; k < total; ++k) {
      const float c0 = Gradient(0, t, from[k], k) + Gradient(1, t, from[k], k);
      const float c1 = Gradient(2, t, from[k], k) + Gradient(3, t, from[k], k);
      const float mean = ((0.0f + c0) + c1) * (1.0f / kWorld);
      next[k] -= kLr * mean;
    }
    versions.push_back(next);
  }
  return versions;
}

TEST(TensorPipelineTest, ExactStalenessPerTensorAcrossWorkers) {
  constexpr int kSteps = 7;
  for (int s : {0, 1, 2}) {
    for (size_t bucket_bytes : {size_t{0}, size_t{200}, size_t{1} << 20}) {
      auto results = RunJob(s, kSteps, bucket_bytes);
      const auto ref = Reference(s, kSteps);
      const size_t num_buckets = MakeBuckets(kSizes, bucket_bytes).size();
      for (int g = 0; g < kWorld; ++g) {
        ASSERT_TRUE(results[g].status.ok()) << "s=" << s << " worker " << g << ": " << results[g].status.ToString();
        ASSERT_EQ(results[g].used.size(), size_t{kSteps});
        for (int t = 0; t < kSteps; ++t) {
          const auto& want = ref[static_cast<size_t>(std::max(0, t - s))];
          for (size_t k = 0; k < want.size(); ++k) {
            ASSERT_NEAR(results[g].used[t][k], want[k], 1e-5f) << "s=" << s << " bucket_bytes=" << bucket_bytes
                                                               << " worker " << g << " step " << t << " element " << k;
          }
        }
        for (size_t k = 0; k < ref.back().size(); ++k) ASSERT_NEAR(results[g].parameters[k], ref.back()[k], 1e-5f);
        // Buckets in the fixed order, every step.
        ASSERT_EQ(results[g].order.size(), num_buckets * kSteps);
        for (size_t i = 0; i < results[g].order.size(); ++i) EXPECT_EQ(results[g].order[i], i % num_buckets);
        // Bit-identical on every worker of every cluster.
        EXPECT_EQ(std::memcmp(results[g].parameters.data(), results[0].parameters.data(),
                              results[0].parameters.size() * sizeof(float)),
                  0)
            << "worker " << g << " diverged";
      }
    }
  }
}

TEST(TensorPipelineTest, MakeBucketsGroupsInReverseOrder) {
  const std::vector<int64_t> sizes = {100, 1, 100, 1, 100, 1};
  using B = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(MakeBuckets(sizes, 0), (B{{5, 6}, {4, 5}, {3, 4}, {2, 3}, {1, 2}, {0, 1}}));
  EXPECT_EQ(MakeBuckets(sizes, 400), (B{{4, 6}, {2, 4}, {0, 2}}));
  EXPECT_EQ(MakeBuckets(sizes, 1 << 20), (B{{0, 6}}));
}

// One worker, no collectives: a fake bucket function.
struct Solo {
  std::vector<float> master = std::vector<float>(6, 1.0f);
  std::unique_ptr<TensorPipeline> pipe;
  std::vector<float> model = std::vector<float>(6, 0.0f);
  InstallTensorFunction install = [this](size_t i, const float* p) { std::copy(p, p + 3, model.begin() + 3 * i); };

  Status Make(int staleness, BucketFunction f) {
    TensorPipelineOptions o;
    o.staleness = staleness;
    o.tensor_sizes = {3, 3};
    o.num_control = 1;
    o.buckets = {{1, 2}, {0, 1}};
    o.progress_timeout = std::chrono::milliseconds(20000);
    STELLA_ASSIGN_OR_RETURN(pipe, TensorPipeline::Create(o, master.data(), std::move(f)));
    return Status::Ok();
  }
  // One whole step; returns BeginStep's result.
  StatusOr<TensorPipeline::StepStart> Step(int64_t t, float stop_vote) {
    STELLA_ASSIGN_OR_RETURN(auto begin, pipe->BeginStep(t));
    if (begin.finished) return begin;
    STELLA_RETURN_IF_ERROR(pipe->WaitTensors({0, 1}, install));
    float* b = pipe->GradientBuffer();
    std::fill(b, b + 6, 1.0f);
    pipe->TensorReady(1);
    pipe->TensorReady(0);
    b[6] = stop_vote;
    STELLA_RETURN_IF_ERROR(pipe->Submit(install));
    return begin;
  }
};

TEST(TensorPipelineTest, BucketErrorSurfacesOnTheComputeThread) {
  Solo solo;
  ASSERT_TRUE(solo.Make(1,
                        [&](int64_t step, size_t b, float* g, float*) -> StatusOr<bool> {
                          if (step == 2 && b == 0) return UnavailableError("peer 3 went away");
                          for (int k = 0; k < 3; ++k) solo.master[3 * (1 - b) + k] -= g[k];
                          return false;
                        })
                  .ok());
  Status last;
  for (int64_t t = 0; t < 10 && last.ok(); ++t) last = solo.Step(t, 0).status();
  EXPECT_EQ(last.code(), StatusCode::kUnavailable) << last.ToString();
  EXPECT_NE(last.ToString().find("peer 3 went away"), std::string::npos);
  auto fin = solo.pipe->Finish(solo.install);
  EXPECT_EQ(fin.status().code(), StatusCode::kUnavailable);
}

TEST(TensorPipelineTest, AgreedStopEndsAfterTheStep) {
  for (int s : {0, 1, 2}) {
    Solo solo;
    ASSERT_TRUE(solo.Make(s,
                          [&](int64_t, size_t b, float* g, float* control) -> StatusOr<bool> {
                            for (int k = 0; k < 3; ++k) solo.master[3 * (1 - b) + k] -= g[k];
                            return control != nullptr && control[0] > 0;
                          })
                    .ok());
    int64_t ran = 0;
    for (int64_t t = 0; t < 20; ++t) {
      auto st = solo.Step(t, t == 3 ? 1.0f : 0.0f);
      ASSERT_TRUE(st.ok()) << st.status().ToString();
      if (st->finished) break;
      ++ran;
    }
    // Step 3 voted stop. Up to s later steps may already have started
    // (how many depends on thread timing); none of them is ever applied.
    EXPECT_GE(ran, 4) << "s=" << s;
    EXPECT_LE(ran, 4 + s) << "s=" << s;
    auto fin = solo.pipe->Finish(solo.install);
    ASSERT_TRUE(fin.ok()) << fin.status().ToString();
    EXPECT_TRUE(fin->finished);
    EXPECT_EQ(fin->version, 4);
    EXPECT_EQ(solo.model, std::vector<float>(6, 1.0f - 4.0f));
  }
}

TEST(TensorPipelineTest, RejectsBadOptions) {
  std::vector<float> master(6);
  auto f = [](int64_t, size_t, float*, float*) -> StatusOr<bool> { return false; };
  TensorPipelineOptions o;
  o.tensor_sizes = {3, 3};
  o.buckets = {{0, 1}, {1, 2}};  // tensor 0 not last
  EXPECT_EQ(TensorPipeline::Create(o, master.data(), f).status().code(), StatusCode::kInvalidArgument);
  o.buckets = {{1, 2}};  // tensor 0 missing
  EXPECT_EQ(TensorPipeline::Create(o, master.data(), f).status().code(), StatusCode::kInvalidArgument);
  o.buckets = {{0, 2}};
  o.staleness = -1;
  EXPECT_EQ(TensorPipeline::Create(o, master.data(), f).status().code(), StatusCode::kInvalidArgument);
  o.staleness = 1;
  EXPECT_TRUE(TensorPipeline::Create(o, master.data(), f).ok());
}

}  // namespace
}  // namespace stella::pipeline
