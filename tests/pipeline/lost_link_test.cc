// Lost WAN links in the stella mode, over the in-memory fakes with a delivery
// hook that drops payloads between clusters (a cut link): partial rounds are
// averaged over the clusters present, the clusters train apart while cut, and
// the state average after the link returns makes them bit-identical again.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "runtime/exchange/testing/in_memory.h"
#include "runtime/pipeline/sparse_exchange.h"
#include "runtime/pipeline/sparse_sync.h"

namespace stella::pipeline {
namespace {

Clock::TimePoint Deadline() { return SystemClock::Get().Now() + std::chrono::seconds(20); }

// Three gateways, cluster 2 cut off from the others for round 0: clusters 0
// and 1 average their two sums over their 3 + 1 workers, cluster 2 applies
// its own sum over its 2 workers; each reports who was missing.
TEST(PartialRoundTest, AveragesOverTheWorkersOfTheClustersPresent) {
  const std::vector<int64_t> sizes = {300, 17};
  const size_t total = 317;
  const std::vector<int> workers = {3, 1, 2};
  exchange::testing::MeshHub hub(3);
  hub.SetDeliver([](int from, int to, uint32_t) { return (from == 2) == (to == 2); });
  std::vector<std::vector<float>> grads(3), aggregate(3, std::vector<float>(total));
  std::vector<ExchangeStats> stats(3);
  std::vector<Status> status(3);
  std::vector<std::thread> threads;
  for (int c = 0; c < 3; ++c) {
    std::mt19937_64 rng(77 + c);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (size_t i = 0; i < total; ++i) grads[c].push_back(d(rng));
    threads.emplace_back([&, c] {
      auto mesh = hub.Member(c);
      SparseExchangeOptions o;
      o.tensor_sizes = sizes;
      o.compression.compressor.kind = "topk";
      o.compression.error_feedback = false;
      o.world_size = 6;
      o.cluster_workers = workers;
      o.cluster_index = c;
      auto x = SparseExchange::Create(o, mesh.get());
      if (!x.ok()) {
        status[c] = x.status();
        return;
      }
      std::vector<float> g = grads[c];
      std::vector<std::vector<uint32_t>> touched;
      status[c] =
          (*x)->Exchange(0, 1.0, g.data(), nullptr, aggregate[c].data(), nullptr, &touched, &stats[c], Deadline());
      EXPECT_TRUE((*x)->diverged()) << c;  // it missed payloads: no longer in step with the others
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < 3; ++c) ASSERT_TRUE(status[c].ok()) << status[c].ToString();
  EXPECT_EQ(stats[0].missing, std::vector<int>{2});
  EXPECT_EQ(stats[1].missing, std::vector<int>{2});
  EXPECT_EQ(stats[2].missing, (std::vector<int>{0, 1}));
  EXPECT_EQ(stats[0].present_workers, 4);
  EXPECT_EQ(stats[2].present_workers, 2);
  for (size_t i = 0; i < total; ++i) {
    const float ab = ((0.0f + grads[0][i]) + grads[1][i]) * static_cast<float>(1.0 / 4);
    ASSERT_EQ(aggregate[0][i], ab) << i;
    ASSERT_EQ(aggregate[1][i], ab) << i;
    ASSERT_EQ(aggregate[2][i], (0.0f + grads[2][i]) * static_cast<float>(1.0 / 2)) << i;
  }
}

TEST(PayloadStateTest, RoundTripsFlagsAndStateAndRejectsMismatches) {
  compress::SparseGradient a{10, 1, {1, 7}, {0.5f, -2.0f}};
  const float control[2] = {1.0f, 0.25f};
  const std::vector<float> state = {1.5f, -2.0f, 3.25f};
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(EncodePayload(4, control, 2, {a}, compress::ValuePrecision::kFp32, &bytes,
                            kPayloadDiverged | kPayloadHasState, state.data(), state.size())
                  .ok());
  PayloadLayout layout{{10}, 2, 1, 3};
  auto d = DecodePayload(bytes.data(), bytes.size(), 4, layout);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->flags, kPayloadDiverged | kPayloadHasState);
  EXPECT_EQ(d->state, state);
  EXPECT_EQ(d->tensors[0].values, a.values);

  auto expect_error = [&](const std::vector<uint8_t>& b, const PayloadLayout& l, const std::string& what) {
    auto r = DecodePayload(b.data(), b.size(), 4, l);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().ToString();
  };
  expect_error(bytes, PayloadLayout{{10}, 2, 1, 4}, "carries 3 state floats, expected 4");
  expect_error({bytes.begin(), bytes.end() - 2}, layout, "truncated in its state section");
  auto nan_state = bytes;
  const float nan = std::nanf("");
  std::memcpy(nan_state.data() + nan_state.size() - 4, &nan, 4);
  expect_error(nan_state, layout, "state value 2 is not finite");
  auto bad_flags = bytes;
  bad_flags[16 + 8] |= 8;  // the flags word follows the two control floats
  expect_error(bad_flags, layout, "unknown flags");
  // Without kPayloadHasState a payload carries no state, whatever the layout.
  ASSERT_TRUE(EncodePayload(4, control, 2, {a}, compress::ValuePrecision::kFp32, &bytes, kPayloadDiverged).ok());
  d = DecodePayload(bytes.data(), bytes.size(), 4, layout);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->state.empty());
}

constexpr int kClusters = 2, kWorkers = 2, kWorld = kClusters * kWorkers;

struct StepRecord {
  bool degraded = false;
  bool resynced = false;
  std::vector<float> parameters;
};

struct WorkerRun {
  Status status;
  std::vector<StepRecord> steps;
};

// 2 clusters x 2 workers, each a thread, `steps` steps of random gradients;
// `deliver` decides which payloads cross the (fake) WAN. With `buckets`, the
// tensors are stepped per bucket, each bucket resynchronizing on its own.
constexpr double kCutDensity = 0.1;

std::vector<WorkerRun> RunCutJob(SparseSyncOptions base, const std::vector<float>& initial, int steps,
                                 exchange::testing::MeshHub::Deliver deliver,
                                 std::vector<std::pair<size_t, size_t>> buckets = {}) {
  exchange::testing::MeshHub mesh_hub(kClusters);
  // The predicates count rounds from 0: step * buckets + bucket.
  mesh_hub.SetDeliver([deliver = std::move(deliver)](int from, int to, uint32_t tag) {
    return deliver(from, to, tag - exchange::kFirstTrainingRoundTag);
  });
  std::vector<std::unique_ptr<exchange::testing::GroupHub>> group_hubs;
  for (int c = 0; c < kClusters; ++c) group_hubs.push_back(std::make_unique<exchange::testing::GroupHub>(kWorkers));
  std::vector<WorkerRun> runs(kWorld);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClusters; ++c) {
    for (int r = 0; r < kWorkers; ++r) {
      threads.emplace_back([&, c, r] {
        const int g = c * kWorkers + r;
        WorkerRun& out = runs[static_cast<size_t>(g)];
        auto group = group_hubs[static_cast<size_t>(c)]->Member(r);
        std::unique_ptr<exchange::WanMesh> mesh;
        if (r == 0) mesh = mesh_hub.Member(c);
        SparseSyncOptions o = base;
        o.world_size = kWorld;
        o.cluster_workers = {kWorkers, kWorkers};
        o.cluster_index = c;
        o.buckets = buckets;
        auto sync = SparseSync::Create(o, group.get(), mesh.get(), initial.data());
        if (!sync.ok()) {
          out.status = sync.status();
          return;
        }
        std::mt19937_64 rng(500 + g);
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> gradient(initial.size());
        for (int t = 0; t < steps; ++t) {
          for (auto& x : gradient) x = d(rng);
          StepRecord rec;
          if (buckets.empty()) {
            SyncStepStats stats;
            out.status = (*sync)->Step(static_cast<uint32_t>(t), kCutDensity, gradient.data(), &stats);
            rec.degraded = stats.degraded;
            rec.resynced = stats.resynced;
          } else {
            size_t offset = 0;
            std::vector<size_t> offsets(base.tensor_sizes.size() + 1, 0);
            for (size_t i = 0; i < base.tensor_sizes.size(); ++i) {
              offsets[i + 1] = offsets[i] + static_cast<size_t>(base.tensor_sizes[i]);
            }
            for (size_t b = 0; b < buckets.size() && out.status.ok(); ++b) {
              offset = offsets[buckets[b].first];
              SyncStepStats stats;
              out.status = (*sync)->StepBucket(static_cast<uint32_t>(t), b, kCutDensity, gradient.data() + offset,
                                               nullptr, &stats);
              rec.degraded = rec.degraded || stats.degraded;
              rec.resynced = rec.resynced || stats.resynced;
            }
          }
          if (!out.status.ok()) return;
          rec.parameters.assign((*sync)->parameters(), (*sync)->parameters() + initial.size());
          out.steps.push_back(std::move(rec));
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  return runs;
}

SparseSyncOptions CutOptions(const std::string& optimizer) {
  SparseSyncOptions o;
  o.tensor_sizes = {400, 33, 900};
  o.compression.compressor.kind = "topk";
  o.optimizer.name = optimizer;
  o.optimizer.lr = optimizer == "sgd" ? 0.05 : 0.001;
  o.optimizer.momentum = optimizer == "sgd" ? 0.9 : 0.0;
  return o;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool AllFinite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// The link is cut for steps 4..9 (both directions). Within a cluster the
// workers stay identical throughout; across clusters the parameters differ
// while cut and are bit-identical again after the resync, optimizer state
// included (later steps keep them identical).
TEST(LostLinkSyncTest, ClustersTrainApartWhileCutAndAreBitIdenticalAfterResync) {
  for (const char* optimizer : {"sgd", "adam"}) {
    SCOPED_TRACE(optimizer);
    const auto o = CutOptions(optimizer);
    std::vector<float> initial(1333);
    for (size_t i = 0; i < initial.size(); ++i) initial[i] = 0.01f * static_cast<float>(i % 31);
    constexpr int kSteps = 20, kCutFrom = 4, kCutTo = 10;
    auto runs = RunCutJob(o, initial, kSteps, [](int, int, uint32_t tag) { return tag < kCutFrom || tag >= kCutTo; });
    for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(runs[g].status.ok()) << runs[g].status.ToString();
    int first_resync = -1;
    for (int t = 0; t < kSteps; ++t) {
      const bool cut = t >= kCutFrom && t < kCutTo;
      for (int g = 0; g < kWorld; ++g) {
        const auto& rec = runs[g].steps[static_cast<size_t>(t)];
        EXPECT_EQ(rec.degraded, cut) << "step " << t << " worker " << g;
        EXPECT_EQ(rec.resynced, runs[0].steps[static_cast<size_t>(t)].resynced) << "step " << t << " worker " << g;
        ASSERT_TRUE(AllFinite(rec.parameters)) << "step " << t << " worker " << g;
      }
      // Workers of one cluster always agree.
      EXPECT_TRUE(SameBits(runs[0].steps[t].parameters, runs[1].steps[t].parameters)) << "step " << t;
      EXPECT_TRUE(SameBits(runs[2].steps[t].parameters, runs[3].steps[t].parameters)) << "step " << t;
      if (runs[0].steps[t].resynced && first_resync < 0) first_resync = t;
    }
    // Apart while cut ...
    EXPECT_FALSE(SameBits(runs[0].steps[kCutTo - 1].parameters, runs[2].steps[kCutTo - 1].parameters));
    // ... resynchronized on the first complete round (both were diverged, so
    // both carried state) ...
    EXPECT_EQ(first_resync, kCutTo);
    // ... and identical from then on.
    for (int t = kCutTo; t < kSteps; ++t) {
      EXPECT_TRUE(SameBits(runs[0].steps[t].parameters, runs[2].steps[t].parameters)) << "step " << t;
    }
  }
}

// Cluster 0 misses cluster 1's payload of step 5 while cluster 1 gets
// cluster 0's: cluster 1 resyncs nothing (it was not diverged), cluster 0
// carries its diverged flag into step 6, both carry state in step 7, which
// resynchronizes them.
TEST(LostLinkSyncTest, OneWayLossSpreadsTheFlagAndResynchronizes) {
  const auto o = CutOptions("sgd");
  std::vector<float> initial(1333, 0.125f);
  auto runs =
      RunCutJob(o, initial, 12, [](int from, int to, uint32_t tag) { return !(tag == 5 && from == 1 && to == 0); });
  for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(runs[g].status.ok()) << runs[g].status.ToString();
  EXPECT_TRUE(runs[0].steps[5].degraded);
  EXPECT_FALSE(runs[2].steps[5].degraded);
  EXPECT_FALSE(SameBits(runs[0].steps[6].parameters, runs[2].steps[6].parameters));
  for (int t = 0; t < 12; ++t) {
    EXPECT_EQ(runs[0].steps[t].resynced, t == 7) << t;
    EXPECT_EQ(runs[2].steps[t].resynced, t == 7) << t;
  }
  EXPECT_TRUE(SameBits(runs[1].steps[11].parameters, runs[3].steps[11].parameters));
}

// Per-bucket pipelining: each bucket resynchronizes on its own round.
TEST(LostLinkSyncTest, BucketsResynchronizeIndependently) {
  const auto o = CutOptions("sgd");
  std::vector<float> initial(1333, -0.25f);
  // Buckets in reverse model order, the last holds tensor 0 (as MakeBuckets).
  const std::vector<std::pair<size_t, size_t>> buckets = {{2, 3}, {0, 2}};
  auto runs = RunCutJob(
      o, initial, 10, [](int, int, uint32_t tag) { return tag / 2 < 3 || tag / 2 >= 6; }, buckets);
  for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(runs[g].status.ok()) << runs[g].status.ToString();
  EXPECT_TRUE(runs[0].steps[4].degraded);
  EXPECT_FALSE(SameBits(runs[0].steps[5].parameters, runs[2].steps[5].parameters));
  EXPECT_TRUE(runs[0].steps[6].resynced);
  EXPECT_TRUE(SameBits(runs[0].steps[9].parameters, runs[3].steps[9].parameters));
}

// Without resync the clusters survive the cut but keep their difference.
TEST(LostLinkSyncTest, WithoutResyncClustersStayApart) {
  auto o = CutOptions("sgd");
  o.resync = false;
  std::vector<float> initial(1333, 0.5f);
  auto runs = RunCutJob(o, initial, 12, [](int, int, uint32_t tag) { return tag < 3 || tag >= 6; });
  for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(runs[g].status.ok()) << runs[g].status.ToString();
  for (int t = 0; t < 12; ++t) EXPECT_FALSE(runs[0].steps[t].resynced);
  EXPECT_FALSE(SameBits(runs[0].steps[11].parameters, runs[2].steps[11].parameters));
  EXPECT_TRUE(AllFinite(runs[0].steps[11].parameters));
}

}  // namespace
}  // namespace stella::pipeline
