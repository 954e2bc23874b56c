// The `stella` sync mode's training loop, pipelined per tensor: this (the
// compute) thread runs forward/backward; autograd hooks hand each gradient to
// the pipeline as backward produces it, and the pipeline's communication
// thread runs SparseSync per bucket of tensors (intra-cluster sum, sparse WAN
// exchange at the gateway, broadcast, CPU optimizer on the bucket's slice of
// the master copy) while backward goes on, up to `staleness` steps behind.
// Each layer's forward pass installs its own tensors at version
// step - staleness. The stop flag, the loss and the tuner's telemetry ride in
// the control section of the last bucket.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "runtime/worker/worker_internal.h"

namespace stella::worker {
namespace {

// Sums a step's buckets on the communication thread.
void Accumulate(const pipeline::SyncStepStats& st, pipeline::SyncStepStats* total) {
  total->allreduce_seconds += st.allreduce_seconds;
  total->compress_seconds += st.compress_seconds;
  total->wan_seconds += st.wan_seconds;
  total->broadcast_seconds += st.broadcast_seconds;
  total->optimizer_seconds += st.optimizer_seconds;
  total->wan_bytes_sent += st.wan_bytes_sent;
  total->degraded = total->degraded || st.degraded;
  total->peer_left = total->peer_left || st.peer_left;
}

// The gateway's share of the tuner's telemetry: the slowest link's goodput
// and the bytes sent last step (0 elsewhere).
std::pair<double, double> GatewayTelemetry(const exchange::WanMesh* mesh, const WorkerMetrics& metrics) {
  if (mesh == nullptr) return {0, 0};
  double goodput = 0;
  for (const auto& p : mesh->stats()) {
    if (p.goodput_bytes_per_second > 0 && (goodput == 0 || p.goodput_bytes_per_second < goodput)) {
      goodput = p.goodput_bytes_per_second;
    }
  }
  return {goodput, metrics.wan_bytes_per_step.Value()};
}

}  // namespace

// Communication thread: one bucket of step `step`. Touches only the sync
// object, the tuner driver and lock-free metric handles, never the model.
// Returns whether the job agreed to stop (after the step's last bucket).
StatusOr<bool> Worker::StellaBucket(int64_t step, size_t bucket, float* gradient, float* control,
                                    pipeline::SyncStepStats* total) {
  State& s = *state_;
  pipeline::SparseSync* sync = s.sparse_sync.get();
  pipeline::SyncStepStats st;
  STELLA_RETURN_IF_ERROR(
      sync->StepBucket(static_cast<uint32_t>(step), bucket, s.driver->density(), gradient, control, &st));
  Accumulate(st, total);
  if (st.resynced) {
    s.metrics->resyncs.Increment();
    if (sync->is_gateway()) s.events->Emit("wan_resync", {{"step", step}, {"bucket", bucket}});
  }
  if (bucket != sync->num_buckets() - 1) return false;
  applied_.store(step + 1);
  WorkerMetrics& m = *s.metrics;
  if (total->degraded) m.degraded_steps.Increment();
  m.ObservePhase(WorkerMetrics::kCompression, total->compress_seconds);
  m.ObservePhase(WorkerMetrics::kCommunication,
                 total->allreduce_seconds + total->wan_seconds + total->broadcast_seconds);
  m.ObservePhase(WorkerMetrics::kOptimizer, total->optimizer_seconds);
  m.wan_bytes_per_step.Set(static_cast<double>(total->wan_bytes_sent));
  // A partial round's telemetry lacks the missing clusters: no decision.
  if (!total->degraded) {
    STELLA_ASSIGN_OR_RETURN(const tuner::TunerDriver::Change change, s.driver->Decide(step, control));
    if (change.any()) m.tuner_decisions.Increment();
    if (change.density && s.global_rank() == 0) {
      std::fprintf(stderr, "stella: tuner: %s\n", s.driver->last_log_line().c_str());
    }
  }
  m.density.Set(s.driver->density());
  const bool peer_left = total->peer_left;
  *total = pipeline::SyncStepStats();
  // A peer that left has ended its job: stop with it.
  return control[kStopSlot] > 0 || peer_left;
}

Status Worker::RunStella(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const size_t n = static_cast<size_t>(s.trainer->num_parameters());
  const Clock& clock = loop.clock;
  WorkerMetrics* metrics = s.metrics.get();

  pipeline::TensorPipelineOptions po;
  po.staleness = spec.sync.staleness;
  po.tensor_sizes = s.trainer->tensor_sizes();
  po.num_control = TelemetryLayoutFrom(spec, s.world_size()).size();
  po.buckets = pipeline::MakeBuckets(po.tensor_sizes, kBucketBytes);
  // Longer than one bucket's collectives (each bounded by the collective
  // timeout), so a slow step fails inside its collective with a precise error.
  po.progress_timeout = 2 * s.options.collective_timeout + std::chrono::seconds(10);
  auto total = std::make_shared<pipeline::SyncStepStats>();
  auto bucket_function = [this, total](int64_t step, size_t bucket, float* gradient, float* control) -> StatusOr<bool> {
    return StellaBucket(step, bucket, gradient, control, total.get());
  };
  STELLA_ASSIGN_OR_RETURN(auto pipe, pipeline::TensorPipeline::Create(po, s.sparse_sync->parameters(), bucket_function,
                                                                      loop.resume_snapshot.get()));
  loop.resume_snapshot.reset();
  auto install = [&s](size_t tensor, const float* params) { s.trainer->SetTensorParameters(tensor, params); };
  pipeline::TensorPipeline* p = pipe.get();
  auto gate = [p, &install](const std::vector<size_t>& tensors) { return p->WaitTensors(tensors, install); };

  while (loop.step < s.total_steps) {
    const auto t0 = clock.Now();
    auto begin = pipe->BeginStep(loop.step);
    if (!begin.ok()) return begin.status();
    loop.applied = begin->version;
    if (begin->version > 0) loop.last_loss = begin->control[kLossSlot];
    if (begin->finished) break;  // all workers agreed to stop
    const auto t1 = clock.Now();
    loop.batch = s.driver->BatchForStep(loop.step, loop.batch);
    metrics->batch_size.Set(loop.batch);
    metrics->inflight_steps.Set(static_cast<double>(loop.step - begin->version));
    loop.sampler_marks.push_back({loop.step, loop.sampler->epoch(), loop.sampler->cursor()});
    if (loop.sampler_marks.size() > static_cast<size_t>(spec.sync.staleness) + 2) loop.sampler_marks.pop_front();
    auto indices = loop.sampler->Next(loop.batch);
    float* buffer = pipe->GradientBuffer();
    compute::Trainer::GradientSink sink;
    sink.buffer = buffer;
    // Unequal batches: weight this worker's mean gradient by its share of
    // the global batch, so the job-wide mean stays the per-sample mean.
    sink.scale = static_cast<float>(loop.batch) / static_cast<float>(spec.batch_size);
    sink.ready = [p](size_t tensor) { p->TensorReady(tensor); };
    STELLA_ASSIGN_OR_RETURN(float loss, s.trainer->ForwardBackwardPipelined(s.train, indices, gate, sink));
    buffer[n + kStopSlot] = (stop_requested_.load() || loop.target_reached) ? 1.0f : 0.0f;
    buffer[n + kLossSlot] = loss;
    const auto [goodput, bytes] = GatewayTelemetry(s.mesh.get(), *metrics);
    s.driver->FillTelemetry(SecondsBetween(t1, clock.Now()), goodput, bytes, buffer + n);
    const auto t2 = clock.Now();
    Status st = pipe->Submit(install);
    if (!st.ok()) return st;
    const auto t3 = clock.Now();
    ++loop.step;
    metrics->ObservePhase(WorkerMetrics::kWait, SecondsBetween(t0, t1) + SecondsBetween(t2, t3));
    AfterStep(loop, SecondsBetween(t1, t2), SecondsBetween(t0, t3), loop.last_loss, s.driver->density());
    STELLA_RETURN_IF_ERROR(MaybeCheckpoint(loop, pipe.get()));
  }
  // The end of training (all steps, the target, or an agreed stop) is a
  // checkpoint too, at the last applied step: a stopped job resumes where it
  // stopped (steps computed after the agreed stop were never applied).
  if (s.store && spec.checkpoint.interval_steps > 0) {
    auto snapshot = pipe->Drain();
    if (!snapshot.ok()) return snapshot.status();
    loop.applied = snapshot->next_step;
    if (loop.last_checkpoint != loop.applied) STELLA_RETURN_IF_ERROR(SaveCheckpoint(loop, &*snapshot));
  }
  auto fin = pipe->Finish(install);
  if (!fin.ok()) return fin.status();
  loop.applied = fin->version;
  return Status::Ok();
}

}  // namespace stella::worker
