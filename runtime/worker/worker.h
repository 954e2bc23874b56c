// Worker: one training process of a StellaJob. Wires the stages together —
// data shard, compute (libtorch), intra-cluster group, WAN mesh (gateways
// only), gradient exchange, optimizer, metrics — and runs the training loop.
//
// Two sync modes (spec.sync.mode): ddp (dense hierarchical all-reduce, the
// libtorch optimizer, everything inline) and stella (sparse WAN exchange with
// error feedback and the CPU optimizer on a master copy, run by the
// pipeline's communication thread with bounded staleness; see
// runtime/pipeline/).
//
// Every worker runs the same number of steps; decisions that must be taken
// together (stop on a signal, stop at the target accuracy) ride on the
// gradient all-reduce as extra values, so all workers stop at the same step.
// While a WAN link is down, a vote reaches only the clusters present in the
// round; a cluster stops on its own clusters' votes, and a peer that left the
// job (said Bye) counts as a vote to stop. A cluster that cannot reach the
// one that stopped trains on until its own end (steps, or a later Bye).
//
// Checkpoints (spec.checkpoint): every intervalSteps steps and when training
// ends, each worker writes its own state (worker_state.h) to its own
// directory under spec.checkpoint.path, at a step boundary where every
// computed step is applied (stella mode drains its pipeline first). Before
// training, the workers of a job with a checkpoint path agree, in one
// job-wide collective, on the newest step every worker holds complete; with
// `resume` set on every worker they continue from it bit for bit, otherwise
// (or when there is none: logged) they start at step 0.
//
// Events (EventSink): start, resume, progress, eval, checkpoint, done;
// "stopping" (OnStopSignal) and "error" (a failed Run) carry the steps
// applied so far, which the CLI uses to count steps lost by a restart.
//
// Thread safety: Run is called once, from one thread. RequestStop,
// OnStopSignal and applied_steps may be called from any thread.
#ifndef STELLA_RUNTIME_WORKER_WORKER_H_
#define STELLA_RUNTIME_WORKER_WORKER_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/worker/worker_options.h"
#include "src/base/status.h"

namespace stella::pipeline {
struct PipelineSnapshot;
struct SyncStepStats;
class TensorPipeline;
}  // namespace stella::pipeline

namespace stella::worker {

class Worker {
 public:
  static StatusOr<std::unique_ptr<Worker>> Create(const WorkerOptions& options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Trains to the end (steps/epochs, or target accuracy, or a stop request).
  Status Run();

  void RequestStop() { stop_requested_.store(true); }
  // RequestStop, and a "stopping" event with the signal and applied_steps.
  void OnStopSignal(int signal);
  // Updates applied to the parameters so far (including those restored).
  int64_t applied_steps() const { return applied_.load(); }

 private:
  struct State;  // worker_internal.h
  struct Loop;
  explicit Worker(std::unique_ptr<State> state);

  // Create's stages (worker.cc).
  static std::map<std::string, std::string> Labels(const State& s);
  static Status StartMetrics(State& s);
  static Status ConnectGroups(State& s);
  static Status CreateStellaStages(State& s);

  Status RunTraining();
  // The training loops (dense_loop.cc, stella_loop.cc).
  Status RunDense(Loop& loop);
  Status RunStella(Loop& loop);
  // Stella mode: one bucket of a step, on the pipeline's communication thread.
  StatusOr<bool> StellaBucket(int64_t step, size_t bucket, float* gradient, float* control,
                              pipeline::SyncStepStats* total);
  // Metrics, progress events and evaluation after a computed step.
  void AfterStep(Loop& loop, double compute_seconds, double step_seconds, float loss, double density);
  void Evaluate(Loop& loop);
  // WAN bytes sent/received by this gateway so far (0 elsewhere).
  std::pair<uint64_t, uint64_t> WanTotals();
  uint64_t DenseWanBytes(int64_t steps) const;

  // Checkpoints and resume (resume.cc). The job-wide resume agreement, then
  // the restored loop state, if any.
  Status AgreeAndRestore(Loop& loop);
  Status RestoreFrom(Loop& loop, int64_t step);
  // A checkpoint of step loop.applied; `snapshot` in stella mode.
  Status SaveCheckpoint(Loop& loop, const pipeline::PipelineSnapshot* snapshot);
  // Periodic checkpoint after a step, when due (stella: drains `pipe`).
  Status MaybeCheckpoint(Loop& loop, pipeline::TensorPipeline* pipe);

  std::unique_ptr<State> state_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<int64_t> applied_{0};
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_H_
