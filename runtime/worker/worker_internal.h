// Private to runtime/worker: what a Worker holds (State) and the bookkeeping
// of one Run (Loop), shared by worker.cc (wiring, reporting), dense_loop.cc,
// stella_loop.cc and resume.cc.
#ifndef STELLA_RUNTIME_WORKER_WORKER_INTERNAL_H_
#define STELLA_RUNTIME_WORKER_WORKER_INTERNAL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/compute/trainer.h"
#include "runtime/data/dataset.h"
#include "runtime/exchange/dense_allreduce.h"
#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"
#include "runtime/pipeline/sparse_sync.h"
#include "runtime/pipeline/tensor_pipeline.h"
#include "runtime/tuner/tuner_driver.h"
#include "runtime/worker/events.h"
#include "runtime/worker/options_from_spec.h"
#include "runtime/worker/worker.h"
#include "runtime/worker/worker_metrics.h"
#include "runtime/worker/worker_state.h"
#include "src/base/clock.h"
#include "src/metrics/exposer.h"
#include "src/metrics/registry.h"

namespace stella::worker {

struct Worker::State {
  WorkerOptions options;
  Placement placement;
  int64_t total_steps = 0;
  data::Dataset train;
  data::Dataset test;  // loaded on global rank 0 only
  std::unique_ptr<compute::Trainer> trainer;
  std::unique_ptr<exchange::IntraClusterGroup> group;
  std::unique_ptr<exchange::WanMesh> mesh;              // gateways of multi-cluster jobs
  std::unique_ptr<exchange::DenseAllReduce> allreduce;  // ddp mode
  std::unique_ptr<pipeline::SparseSync> sparse_sync;    // stella mode
  // Stella mode: owns the density and batch sizes (and the Tuner when
  // spec.sync.tuner is on).
  std::unique_ptr<tuner::TunerDriver> driver;
  // Declared before the exposer so the exposer (which reads it) dies first.
  metrics::Registry registry;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<WanMetrics> wan_metrics;
  std::unique_ptr<metrics::Exposer> exposer;
  std::unique_ptr<EventSink> events;
  // This worker's checkpoint directory; null without spec.checkpoint.path.
  std::unique_ptr<checkpoint::CheckpointStore> store;
  CheckpointMeta meta;  // what a checkpoint must match to continue this job

  int global_rank() const { return placement.global_rank; }
  int world_size() const { return placement.world_size; }
};

struct Worker::Loop {
  const Clock& clock = SystemClock::Get();
  Clock::TimePoint start;
  double busy_seconds = 0;
  // Throughput window: samples/s is measured over wall time, not summed
  // from per-step durations (those leave out evaluations and the time
  // between steps, and read 2-4x high).
  Clock::TimePoint rate_window_start;
  int64_t rate_window_steps = 0;
  double final_accuracy = -1;
  bool target_reached = false;
  int64_t step = 0;     // steps computed (forward/backward done)
  int64_t applied = 0;  // updates applied to the parameters
  uint64_t last_wan_sent = 0;
  std::unique_ptr<data::BatchSampler> sampler;
  int batch = 0;  // this worker's batch size (the tuner may rebalance it)
  float last_loss = 0;
  int64_t resumed_from = 0;      // the step training (re)started at
  int64_t last_checkpoint = -1;  // step of the newest checkpoint written or resumed from
  // Stella mode: the pipeline state to continue from after a resume.
  std::unique_ptr<pipeline::PipelineSnapshot> resume_snapshot;
  // Stella mode: the sampler position before each of the last few computed
  // steps, so that a checkpoint of an applied step behind the computed ones
  // (an agreed stop drops the steps in flight) records where that step began.
  struct SamplerMark {
    int64_t step, epoch, cursor;
  };
  std::deque<SamplerMark> sampler_marks;
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_INTERNAL_H_
