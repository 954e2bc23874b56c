// A worker's checkpoint contents as sections: round trips of both modes'
// state (everything compared field by field), missing or malformed sections
// named in the error, and the compatibility rules.
#include "runtime/worker/worker_state.h"

#include <gtest/gtest.h>

namespace stella::worker {
namespace {

WorkerState StellaState() {
  WorkerState s;
  s.meta = {"stella", 4, 2, 1, {6, 2}};
  s.loop.step = 120;
  s.loop.sampler_epoch = 3;
  s.loop.sampler_cursor = 17;
  s.loop.batch = 48;
  s.loop.target_reached = true;
  s.loop.final_accuracy = 0.81;
  s.loop.last_loss = 0.5f;
  s.parameters = {1, 2, 3, 4, 5, 6, 7, 8};
  pipeline::SparseSyncState sync;
  sync.master = s.parameters;
  sync.optimizer.resize(2);
  sync.optimizer[0] = {120, std::vector<float>(6, 0.1f), std::vector<float>(6, 0.2f)};
  sync.optimizer[1] = {119, std::vector<float>(2, 0.3f), std::vector<float>(2, 0.4f)};
  sync.exchange.resize(2);
  sync.exchange[0] = {"randomk-state", std::vector<float>(6, -1.0f), {}};
  sync.exchange[1] = {"x", std::vector<float>(2, -2.0f), {}};
  s.density = 0.031;
  s.sync = sync;
  pipeline::PipelineSnapshot p;
  p.next_step = 120;
  p.versions = {std::vector<float>(8, 9.0f), s.parameters};
  p.control = {0, 0.5f, 3};
  s.pipeline = p;
  TunerRecord t;
  t.tuner = "tuner-bytes";
  t.last_batches = {40, 56};
  tuner::Decision d;
  d.round = 3;
  d.apply_at_step = 122;
  d.density = 0.031;
  d.worker_ids = {0, 1};
  d.batch_sizes = {40, 56};
  d.reason = "slow worker";
  t.history = {d};
  t.pending = {d};
  s.tuner = t;
  return s;
}

TEST(WorkerStateTest, StellaStateRoundTrips) {
  const WorkerState in = StellaState();
  auto out = DecodeWorkerState(EncodeWorkerState(in), "mem");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->meta.mode, "stella");
  EXPECT_EQ(out->meta.tensor_sizes, in.meta.tensor_sizes);
  EXPECT_EQ(out->loop.step, 120);
  EXPECT_EQ(out->loop.sampler_epoch, 3);
  EXPECT_EQ(out->loop.sampler_cursor, 17);
  EXPECT_EQ(out->loop.batch, 48);
  EXPECT_TRUE(out->loop.target_reached);
  EXPECT_EQ(out->loop.final_accuracy, 0.81);
  EXPECT_EQ(out->parameters, in.parameters);
  ASSERT_TRUE(out->sync && out->pipeline && out->tuner);
  EXPECT_EQ(out->sync->master, in.parameters);
  EXPECT_EQ(out->density, 0.031);
  ASSERT_EQ(out->sync->optimizer.size(), 2u);
  EXPECT_EQ(out->sync->optimizer[1].step, 119);
  EXPECT_EQ(out->sync->optimizer[1].second_moment, in.sync->optimizer[1].second_moment);
  EXPECT_EQ(out->sync->exchange[0].compressor, "randomk-state");
  EXPECT_EQ(out->sync->exchange[1].residual, in.sync->exchange[1].residual);
  EXPECT_EQ(out->pipeline->versions, in.pipeline->versions);
  EXPECT_EQ(out->pipeline->control, in.pipeline->control);
  EXPECT_EQ(out->tuner->tuner, "tuner-bytes");
  EXPECT_EQ(out->tuner->last_batches, in.tuner->last_batches);
  ASSERT_EQ(out->tuner->pending.size(), 1u);
  EXPECT_EQ(out->tuner->pending[0].ToLogLine(), in.tuner->pending[0].ToLogLine());
}

TEST(WorkerStateTest, DdpStateRoundTrips) {
  WorkerState in;
  in.meta = {"ddp", 2, 0, 0, {3}};
  in.loop.step = 50;
  in.loop.batch = 64;
  in.parameters = {0.5f, -0.5f, 2};
  in.torch_optimizer = std::string("PK\0\x03zip", 6);
  auto out = DecodeWorkerState(EncodeWorkerState(in), "mem");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->torch_optimizer, in.torch_optimizer);
  EXPECT_EQ(out->parameters, in.parameters);
  EXPECT_FALSE(out->sync || out->pipeline || out->tuner);
}

TEST(WorkerStateTest, MissingOrMalformedSectionsAreNamed) {
  checkpoint::Sections full = EncodeWorkerState(StellaState());
  checkpoint::Sections partial;
  for (const auto& [name, bytes] : full.all()) {
    if (name != "pipeline") partial.Put(name, bytes);
  }
  auto missing = DecodeWorkerState(partial, "/x/step-1.ckpt");
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(missing.status().message().find("/x/step-1.ckpt: missing section \"pipeline\""), std::string::npos)
      << missing.status().message();
  checkpoint::Sections bad = full;
  bad.Put("loop", "short");
  auto malformed = DecodeWorkerState(bad, "f");
  EXPECT_EQ(malformed.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(malformed.status().message().find("section \"loop\""), std::string::npos) << malformed.status().message();
}

TEST(WorkerStateTest, IncompatibleCheckpointsAreRefusedNamingTheDifference) {
  const CheckpointMeta now{"stella", 4, 2, 1, {6, 2}};
  EXPECT_TRUE(CheckCompatible(now, now).ok());
  auto refused = [&](CheckpointMeta saved, const std::string& what) {
    Status st = CheckCompatible(saved, now);
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
  };
  refused({"ddp", 4, 2, 0, {6, 2}}, "spec.sync.mode ddp, the job runs stella");
  refused({"stella", 2, 1, 1, {6, 2}}, "rank 1 of 2 workers, this worker is rank 2 of 4");
  refused({"stella", 4, 2, 3, {6, 2}}, "spec.sync.staleness 3, the job has 1");
  refused({"stella", 4, 2, 1, {6, 3}}, "spec.model changed");
}

}  // namespace
}  // namespace stella::worker
