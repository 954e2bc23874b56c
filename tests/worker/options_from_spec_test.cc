// The spec -> component wiring, without libtorch: each spec value reaches
// its component, defaults come from the spec library, and placement errors
// name the flag.
#include "runtime/worker/options_from_spec.h"

#include <gtest/gtest.h>

#include <string>

#include "src/spec/stella_job.h"

namespace stella::worker {
namespace {

constexpr char kJob[] = R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: wiring
  namespace: team
spec:
  model:
    name: cnn
  dataset:
    name: fashion-mnist
  optimizer:
    name: sgd
    learningRate: 0.05
    momentum: 0.8
  batchSize: 32
  training:
    epochs: 2
    seed: 7
  sync:
    mode: stella
    staleness: 2
    valuePrecision: fp16
  clusters:
    - name: a
      workers: 2
      wan: {bandwidthMbps: 40, latencyMs: 5}
    - name: b
      workers: 3
      wan: {bandwidthMbps: 8}
  checkpoint:
    path: /ckpt
)";

WorkerOptions Options(int cluster, int local_rank) {
  auto job = spec::ParseStellaJob(kJob);
  EXPECT_TRUE(job.ok()) << job.status().ToString();
  WorkerOptions o;
  o.job = *job;
  o.cluster_index = cluster;
  o.local_rank = local_rank;
  o.wan_addresses = {"10.0.0.1:7000", "10.0.0.2:7000"};
  return o;
}

TEST(OptionsFromSpecTest, PlacementCountsWorkersOfEarlierClusters) {
  auto p = PlacementFrom(Options(1, 2));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->global_rank, 4);
  EXPECT_EQ(p->world_size, 5);
}

TEST(OptionsFromSpecTest, PlacementErrorsNameTheFlag) {
  EXPECT_NE(PlacementFrom(Options(2, 0)).status().message().find("--cluster-index 2 out of range"), std::string::npos);
  EXPECT_NE(PlacementFrom(Options(0, 2)).status().message().find("--local-rank 2 out of range: cluster a has 2"),
            std::string::npos);
  WorkerOptions o = Options(0, 0);
  o.wan_addresses.pop_back();
  EXPECT_NE(PlacementFrom(o).status().message().find("--wan-ports: need one gateway address per cluster (2), got 1"),
            std::string::npos);
}

TEST(OptionsFromSpecTest, TotalStepsFromEpochs) {
  const auto o = Options(0, 0);
  // ceil(2 epochs * 1000 samples / (32 * 5))
  EXPECT_EQ(TotalSteps(o.job.spec, 1000, 5), 13);
  auto fixed = o.job.spec;
  fixed.training.steps = 40;
  EXPECT_EQ(TotalSteps(fixed, 1000, 5), 40);
}

TEST(OptionsFromSpecTest, WanMeshFollowsTheClusterAndFlags) {
  WorkerOptions o = Options(0, 0);
  o.tls_dir = "/tls";
  o.wan_link_timeout = std::chrono::milliseconds(3000);
  const auto mo = WanMeshOptionsFrom(o);
  EXPECT_EQ(mo.job_name, "wiring");
  EXPECT_EQ(mo.job_namespace, "team");
  EXPECT_EQ(mo.cluster_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(mo.egress_bits_per_second, 40e6);
  EXPECT_EQ(mo.egress_latency, std::chrono::microseconds(5000));
  EXPECT_EQ(mo.tls_dir, "/tls");
  EXPECT_EQ(mo.link_timeout, std::chrono::milliseconds(3000));
  EXPECT_EQ(mo.heartbeat_interval, std::chrono::milliseconds(300));
  EXPECT_EQ(WanRoundTimeout(o), o.collective_timeout / 2);
}

TEST(OptionsFromSpecTest, SparseSyncAndTunerTakeTheSpecValues) {
  const WorkerOptions o = Options(1, 0);
  const Placement p = *PlacementFrom(o);
  const std::vector<int64_t> sizes = {1000, 10, 70000};
  auto so = SparseSyncOptionsFrom(o, p, sizes, 9);
  ASSERT_TRUE(so.ok()) << so.status().ToString();
  EXPECT_EQ(so->optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(so->optimizer.lr, 0.05);
  EXPECT_DOUBLE_EQ(so->optimizer.momentum, 0.8);
  EXPECT_EQ(so->compression.precision, compress::ValuePrecision::kFp16);
  EXPECT_EQ(so->compression.compressor.kind, spec::ToString(o.job.spec.sync.compressor));
  EXPECT_EQ(so->compression.compressor.seed, 7u);
  EXPECT_EQ(so->cluster_workers, (std::vector<int>{2, 3}));
  EXPECT_EQ(so->num_control, 9u);
  EXPECT_FALSE(so->buckets.empty());

  const auto to = TunerOptionsFrom(o.job.spec, sizes, p.world_size);
  const spec::SyncSpec defaults;  // the one home of the density defaults
  EXPECT_EQ(to.initial_density, defaults.density);
  EXPECT_EQ(to.min_density, defaults.min_density);
  EXPECT_EQ(to.max_density, defaults.max_density);
  EXPECT_EQ(to.bytes_model.value_bytes, 2);
  EXPECT_EQ(to.global_batch, 32 * 5);
  EXPECT_EQ(to.lead_steps, 3);

  const auto d = TunerDriverOptionsFrom(o, p);
  EXPECT_EQ(d.initial_density, defaults.density);
  EXPECT_EQ(d.layout.fixed, static_cast<size_t>(kNumControlSlots));
  EXPECT_EQ(d.layout.size(), 2u + 5u + 4u);
  EXPECT_EQ(d.cluster_caps_bytes_per_s, (std::vector<double>{5e6, 1e6}));
  EXPECT_EQ(d.global_rank, 2);
}

TEST(OptionsFromSpecTest, MomentumCorrectionNeedsSgdAndErrorFeedback) {
  WorkerOptions o = Options(0, 0);
  o.job.spec.sync.momentum_correction = true;
  auto ok = CpuOptimizerOptionsFrom(o.job.spec);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->momentum, 0.0);  // moved into error feedback
  o.job.spec.sync.error_feedback = false;
  EXPECT_NE(CpuOptimizerOptionsFrom(o.job.spec).status().message().find("needs spec.sync.errorFeedback true"),
            std::string::npos);
  o.job.spec.sync.error_feedback = true;
  o.job.spec.optimizer.name = spec::OptimizerKind::kAdam;
  EXPECT_NE(CpuOptimizerOptionsFrom(o.job.spec).status().message().find("needs optimizer sgd, got adam"),
            std::string::npos);
}

TEST(OptionsFromSpecTest, CheckpointStorePerWorker) {
  const auto co = StoreOptionsFrom(Options(1, 2));
  EXPECT_EQ(co.job, "wiring");
  EXPECT_EQ(co.worker, "b/2");
  EXPECT_EQ(co.dir, checkpoint::WorkerDirectory("/ckpt", "b", 2));
  EXPECT_EQ(co.keep, kCheckpointsKept);
}

}  // namespace
}  // namespace stella::worker
