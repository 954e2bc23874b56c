// Checkpoint and resume of the stella mode's state, over the in-memory fakes
// (2 clusters x 2 workers, each a thread): a run drained at step R, torn down
// (new collectives, new SparseSync, new pipeline) and resumed from the saved
// state must compute exactly what an uninterrupted run computes, step by
// step, with sparse selection, error feedback, Adam, random-k (whose
// generator must be restored) and staleness 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/exchange/testing/in_memory.h"
#include "runtime/pipeline/sparse_sync.h"
#include "runtime/pipeline/tensor_pipeline.h"

namespace stella::pipeline {
namespace {

constexpr int kClusters = 2, kWorkers = 2, kWorld = kClusters * kWorkers;
const std::vector<int64_t> kSizes = {30, 7, 50, 3, 20};  // 5 tensors, 110 floats

float Gradient(int g, int64_t step, float param, size_t k) {
  return 0.5f * param + 0.01f * static_cast<float>(g + 1) + 0.001f * static_cast<float>((k + step) % 13);
}

struct Config {
  int staleness = 2;
  double density = 0.2;
  std::string compressor = "randomk";
  std::string optimizer = "adam";
};

// What one worker carries over a restart.
struct Saved {
  SparseSyncState sync;
  PipelineSnapshot pipeline;
};

struct WorkerRun {
  Status status;
  std::vector<std::vector<float>> used;  // the model each step computed from
  std::vector<float> master;             // at the end of the phase
  Saved saved;                           // when the phase ended with a drain
};

// Runs steps [first, end) on fresh collectives. With `resume`, worker g
// starts from resume[g]; with `drain_at` in (first, end] the pipeline is
// drained when that many steps are done (and saved into WorkerRun::saved);
// training then goes on to `end` unless stop_after_drain.
std::vector<WorkerRun> RunPhase(const Config& cfg, int64_t first, int64_t end, const std::vector<Saved>* resume,
                                int64_t drain_at, bool stop_after_drain) {
  exchange::testing::MeshHub mesh_hub(kClusters);
  std::vector<std::unique_ptr<exchange::testing::GroupHub>> group_hubs;
  for (int c = 0; c < kClusters; ++c) group_hubs.push_back(std::make_unique<exchange::testing::GroupHub>(kWorkers));
  size_t total = 0;
  for (int64_t s : kSizes) total += static_cast<size_t>(s);
  std::vector<float> initial(total);
  for (size_t k = 0; k < total; ++k) initial[k] = 0.01f * static_cast<float>(k % 17);
  const auto buckets = MakeBuckets(kSizes, 100);  // several buckets

  std::vector<WorkerRun> results(kWorld);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClusters; ++c) {
    for (int r = 0; r < kWorkers; ++r) {
      threads.emplace_back([&, c, r] {
        const int g = c * kWorkers + r;
        WorkerRun& out = results[static_cast<size_t>(g)];
        auto group = group_hubs[static_cast<size_t>(c)]->Member(r);
        std::unique_ptr<exchange::WanMesh> mesh;
        if (r == 0) mesh = mesh_hub.Member(c);
        SparseSyncOptions so;
        so.tensor_sizes = kSizes;
        so.optimizer.name = cfg.optimizer;
        so.optimizer.lr = 0.01;
        so.compression.compressor.kind = cfg.compressor;
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
        const PipelineSnapshot* snapshot = nullptr;
        if (resume != nullptr) {
          const Saved& mine = (*resume)[static_cast<size_t>(g)];
          out.status = sp->LoadState(mine.sync);
          if (!out.status.ok()) return;
          snapshot = &mine.pipeline;
        }
        TensorPipelineOptions po;
        po.staleness = cfg.staleness;
        po.tensor_sizes = kSizes;
        po.num_control = 1;
        po.buckets = buckets;
        po.progress_timeout = std::chrono::milliseconds(30000);
        auto pipe = TensorPipeline::Create(
            po, sp->parameters(),
            [sp, density = cfg.density](int64_t step, size_t b, float* grad, float* control) -> StatusOr<bool> {
              STELLA_RETURN_IF_ERROR(sp->StepBucket(static_cast<uint32_t>(step), b, density, grad, control, nullptr));
              return false;
            },
            snapshot);
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
        for (int64_t t = first; t < end; ++t) {
          if (t == drain_at) {
            auto snap = p.Drain();
            if (!snap.ok()) {
              out.status = snap.status();
              return;
            }
            EXPECT_EQ(snap->next_step, t);
            out.saved.pipeline = std::move(snap).value();
            out.saved.sync = sp->SaveState();
            if (stop_after_drain) {
              out.master.assign(sp->parameters(), sp->parameters() + total);
              return;
            }
          }
          auto begin = p.BeginStep(t);
          if (!begin.ok()) {
            out.status = begin.status();
            return;
          }
          float* buffer = p.GradientBuffer();
          for (size_t j = 0; j < kSizes.size(); ++j) {
            out.status = p.WaitTensors({j}, install);
            if (!out.status.ok()) return;
          }
          out.used.push_back(model);
          for (size_t j = kSizes.size(); j-- > 0;) {
            for (size_t k = offsets[j]; k < offsets[j + 1]; ++k) buffer[k] = Gradient(g, t, model[k], k);
            p.TensorReady(j);
          }
          buffer[total] = static_cast<float>(t);
          out.status = p.Submit(install);
          if (!out.status.ok()) return;
        }
        auto fin = p.Finish(install);
        if (!fin.ok()) {
          out.status = fin.status();
          return;
        }
        EXPECT_EQ(fin->version, end);
        out.master.assign(sp->parameters(), sp->parameters() + total);
      });
    }
  }
  for (auto& t : threads) t.join();
  return results;
}

void ExpectResumeIsExact(const Config& cfg, int64_t restart_at, int64_t steps) {
  auto whole = RunPhase(cfg, 0, steps, nullptr, -1, false);
  auto drained = RunPhase(cfg, 0, steps, nullptr, restart_at, false);
  auto before = RunPhase(cfg, 0, steps, nullptr, restart_at, true);
  std::vector<Saved> saved;
  for (auto& w : before) {
    ASSERT_TRUE(w.status.ok()) << w.status.ToString();
    saved.push_back(w.saved);
  }
  auto after = RunPhase(cfg, restart_at, steps, &saved, -1, false);
  for (int g = 0; g < kWorld; ++g) {
    const auto& a = whole[static_cast<size_t>(g)];
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    ASSERT_TRUE(drained[static_cast<size_t>(g)].status.ok()) << drained[static_cast<size_t>(g)].status.ToString();
    ASSERT_TRUE(after[static_cast<size_t>(g)].status.ok()) << after[static_cast<size_t>(g)].status.ToString();
    // Draining changes nothing.
    EXPECT_EQ(drained[static_cast<size_t>(g)].used, a.used) << "worker " << g;
    EXPECT_EQ(drained[static_cast<size_t>(g)].master, a.master) << "worker " << g;
    // The resumed run computes from exactly the same models, step by step.
    std::vector<std::vector<float>> joined = before[static_cast<size_t>(g)].used;
    const auto& rest = after[static_cast<size_t>(g)].used;
    joined.insert(joined.end(), rest.begin(), rest.end());
    ASSERT_EQ(joined.size(), a.used.size());
    for (size_t t = 0; t < joined.size(); ++t) {
      ASSERT_EQ(joined[t], a.used[t]) << "worker " << g << " step " << t << " (restart at " << restart_at << ")";
    }
    EXPECT_EQ(after[static_cast<size_t>(g)].master, a.master) << "worker " << g;
  }
  // The run really trained: the parameters moved.
  EXPECT_NE(whole[0].used.front(), whole[0].master);
}

TEST(PipelineResumeTest, ResumedRunIsBitIdenticalWithStalenessTwoRandomKAdam) { ExpectResumeIsExact(Config{}, 7, 14); }

TEST(PipelineResumeTest, ResumeBeforeTheRingIsFullAndSynchronousTopK) {
  Config early;
  early.staleness = 3;
  ExpectResumeIsExact(early, 2, 8);  // fewer versions than staleness + 1 exist at step 2
  Config sync;
  sync.staleness = 0;
  sync.compressor = "cacheline";
  sync.optimizer = "sgd";
  ExpectResumeIsExact(sync, 5, 10);
}

TEST(PipelineResumeTest, MismatchedSnapshotsAreRejected) {
  TensorPipelineOptions po;
  po.staleness = 1;
  po.tensor_sizes = {4, 2};
  po.buckets = MakeBuckets(po.tensor_sizes, 0);
  po.num_control = 1;
  std::vector<float> master(6, 1.0f);
  auto fn = [](int64_t, size_t, float*, float*) -> StatusOr<bool> { return false; };
  PipelineSnapshot snap;
  snap.next_step = 5;
  snap.versions = {std::vector<float>(6, 0.0f), master};
  snap.control = {0.0f};
  EXPECT_TRUE(TensorPipeline::Create(po, master.data(), fn, &snap).ok());
  PipelineSnapshot few = snap;
  few.versions.pop_back();
  EXPECT_NE(
      TensorPipeline::Create(po, master.data(), fn, &few).status().message().find("needs 2 saved versions, got 1"),
      std::string::npos);
  PipelineSnapshot wrong_size = snap;
  wrong_size.versions[0].resize(5);
  EXPECT_FALSE(TensorPipeline::Create(po, master.data(), fn, &wrong_size).ok());
  PipelineSnapshot stale_master = snap;
  stale_master.versions[1][0] = 2.0f;
  EXPECT_NE(TensorPipeline::Create(po, master.data(), fn, &stale_master).status().message().find("newest version"),
            std::string::npos);
  PipelineSnapshot no_control = snap;
  no_control.control.clear();
  EXPECT_FALSE(TensorPipeline::Create(po, master.data(), fn, &no_control).ok());
}

// State of a gateway does not load into a non-gateway (and vice versa), and
// sizes must match.
TEST(PipelineResumeTest, SparseSyncStateMustFitTheWorkersRole) {
  exchange::testing::GroupHub hub(2);
  auto g0 = hub.Member(0);
  auto g1 = hub.Member(1);
  SparseSyncOptions so;
  so.tensor_sizes = {8, 8};
  so.compression.compressor.kind = "topk";
  std::vector<float> init(16, 0.5f);
  auto gateway = SparseSync::Create(so, g0.get(), nullptr, init.data());
  auto member = SparseSync::Create(so, g1.get(), nullptr, init.data());
  ASSERT_TRUE(gateway.ok() && member.ok());
  SparseSyncState gs = (*gateway)->SaveState();
  SparseSyncState ms = (*member)->SaveState();
  EXPECT_EQ(gs.exchange.size(), 2u);
  EXPECT_TRUE(ms.exchange.empty());
  EXPECT_NE((*member)->LoadState(gs).message().find("not a gateway"), std::string::npos);
  EXPECT_NE((*gateway)->LoadState(ms).message().find("is its cluster's gateway"), std::string::npos);
  SparseSyncState short_master = gs;
  short_master.master.resize(15);
  EXPECT_NE((*gateway)->LoadState(short_master).message().find("holds 15 parameters, the model has 16"),
            std::string::npos);
  EXPECT_TRUE((*member)->LoadState(ms).ok());
}

// After an agreed stop, Drain reports the stop step as the resume point even
// though later steps were submitted (they are dropped), with the ring of
// versions behind it intact.
TEST(PipelineResumeTest, DrainAfterAnAgreedStopSnapshotsTheStopStep) {
  TensorPipelineOptions po;
  po.staleness = 2;
  po.tensor_sizes = {3};
  po.buckets = MakeBuckets(po.tensor_sizes, 0);
  po.num_control = 1;
  std::vector<float> master(3, 0.0f);
  // Step t adds 1 to the master copy; the workers "agree" to stop after step
  // 4, which is held back until steps 5 and 6 are submitted (staleness 2
  // allows them), so they are surely in flight.
  std::atomic<int64_t> submitted{0};
  auto fn = [&master, &submitted](int64_t step, size_t, float*, float* control) -> StatusOr<bool> {
    while (step == 4 && submitted.load() < 7) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (float& v : master) v += 1.0f;
    control[0] = static_cast<float>(step);
    return step == 4;
  };
  auto pipe = TensorPipeline::Create(po, master.data(), fn);
  ASSERT_TRUE(pipe.ok());
  std::vector<float> model(3);
  auto install = [&](size_t, const float* src) { std::copy(src, src + 3, model.begin()); };
  int64_t t = 0;
  for (; t < 20; ++t) {
    auto begin = (*pipe)->BeginStep(t);
    ASSERT_TRUE(begin.ok());
    if (begin->finished) break;
    ASSERT_TRUE((*pipe)->WaitTensors({0}, install).ok());
    (*pipe)->TensorReady(0);
    (*pipe)->GradientBuffer()[3] = 0.0f;
    if (!(*pipe)->Submit(install).ok()) break;
    submitted.store(t + 1);
  }
  EXPECT_EQ(t, 7);  // steps 5 and 6 were computed, then BeginStep(7) saw the stop
  auto snap = (*pipe)->Drain();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(snap->next_step, 5);
  ASSERT_EQ(snap->versions.size(), 3u);  // versions 3, 4, 5
  EXPECT_EQ(snap->versions[0], std::vector<float>(3, 3.0f));
  EXPECT_EQ(snap->versions[2], std::vector<float>(3, 5.0f));
  EXPECT_EQ(snap->control, std::vector<float>{4.0f});
  EXPECT_TRUE((*pipe)->Finish(install).ok());
}

}  // namespace
}  // namespace stella::pipeline
