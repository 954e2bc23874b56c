// The `ddp` sync mode's training loop: forward/backward, one dense
// hierarchical all-reduce of [gradient | control] (Gloo or NCCL inside the
// cluster, the WAN mesh between gateways), then libtorch's optimizer, all on
// this thread.
#include <string>
#include <vector>

#include "runtime/worker/worker_internal.h"

namespace stella::worker {

Status Worker::RunDense(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const int64_t n = s.trainer->num_parameters();
  std::vector<float> buffer(static_cast<size_t>(n) + kNumControlSlots);
  const Clock& clock = loop.clock;
  bool stop_agreed = false;
  while (loop.step < s.total_steps && !stop_agreed) {
    const auto t0 = clock.Now();
    auto indices = loop.sampler->Next(spec.batch_size);
    STELLA_ASSIGN_OR_RETURN(float loss, s.trainer->ForwardBackward(s.train, indices));
    const auto t1 = clock.Now();
    s.trainer->CopyGradientsTo(buffer.data());
    buffer[static_cast<size_t>(n) + kStopSlot] = (stop_requested_.load() || loop.target_reached) ? 1.0f : 0.0f;
    buffer[static_cast<size_t>(n) + kLossSlot] = loss;
    exchange::DenseRoundInfo round;
    Status st = s.allreduce->AllReduceMean(buffer.data(), buffer.size(),
                                           exchange::kFirstTrainingRoundTag + static_cast<uint32_t>(loop.step),
                                           clock.Now() + WanRoundTimeout(s.options), &round);
    if (!st.ok()) return st.WithContext("step " + std::to_string(loop.step + 1) + " gradient exchange");
    const auto t2 = clock.Now();
    if (round.degraded) s.metrics->degraded_steps.Increment();
    // A peer that left has ended its job: stop with it.
    stop_agreed = buffer[static_cast<size_t>(n) + kStopSlot] > 0 || round.peer_left;
    s.trainer->SetGradients(buffer.data());
    s.trainer->OptimizerStep();
    const auto t3 = clock.Now();
    ++loop.step;
    loop.applied = loop.step;
    applied_.store(loop.applied);
    loop.last_loss = buffer[static_cast<size_t>(n) + kLossSlot];
    s.metrics->ObservePhase(WorkerMetrics::kCommunication, SecondsBetween(t1, t2));
    s.metrics->ObservePhase(WorkerMetrics::kOptimizer, SecondsBetween(t2, t3));
    s.metrics->ObservePhase(WorkerMetrics::kWait, 0.0);         // dense: waiting is inside communication
    s.metrics->ObservePhase(WorkerMetrics::kCompression, 0.0);  // dense: nothing is compressed
    AfterStep(loop, SecondsBetween(t0, t1), SecondsBetween(t0, t3), loop.last_loss, 1.0);
    if (!stop_agreed) STELLA_RETURN_IF_ERROR(MaybeCheckpoint(loop, nullptr));
  }
  // The end of training (all steps, the target, or an agreed stop) is a
  // checkpoint too: a stopped job resumes where it stopped.
  if (s.store && spec.checkpoint.interval_steps > 0 && loop.last_checkpoint != loop.applied) {
    STELLA_RETURN_IF_ERROR(SaveCheckpoint(loop, nullptr));
  }
  return Status::Ok();
}

}  // namespace stella::worker
