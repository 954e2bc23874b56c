// TensorPipeline: the bounded-staleness pipeline of the stella mode. The unit of work
// is a bucket of consecutive parameter tensors, not the whole step, so the
// communication of step t starts as soon as backward has produced the
// gradients of the last layers, and the forward pass of step t+1+s gates each
// layer only on that layer's own tensors.
//
// Stages of one bucket of step t (the step function runs 2-6 on the owned,
// named communication thread):
//   1. gradient ready: the trainer's autograd hook copies a tensor's gradient
//      into the step's host buffer (GradientBuffer) and calls TensorReady;
//   2. intra-cluster sum, 3. gateway compression + WAN exchange, 4. intra-
//      cluster broadcast, 5. CPU optimizer on the bucket's slice of the
//      master copy, 6. publish: the bucket's tensors reach version t + 1;
//   7. copy back: WaitTensors, on the compute thread, installs a layer's
//      tensors right before that layer's forward pass.
// Buckets are processed in the fixed order of `buckets` (MakeBuckets: reverse
// model order, the order backward produces them), waiting for each one's
// readiness in turn: every worker issues the collectives in the same order.
// The bucket holding tensor 0 is last and carries the control section (stop
// flag, loss, telemetry), which Submit marks ready.
//
// Staleness s: the forward pass of step t installs EXACTLY version
// max(0, t - s) of every tensor (not the newest available), so a run is
// reproducible bit for bit; s + 1 published copies per tensor are kept. s = 0
// is fully synchronous. At most s + 1 steps are in flight: BeginStep(t)
// waits until step t - s - 1 has been applied entirely (its gradient buffer is
// then free). Because tensor 0 is published last, that wait also satisfies
// every layer's gate of step t; the per-layer gate still guards each install
// and is what a different bucket order would rely on.
//
// Checkpoints: Drain, between two steps, waits until every submitted step is
// applied, so the master copy, the optimizer and the exchange state all
// describe one step boundary, and returns the published versions that the
// next s steps will still install. A pipeline created with that snapshot
// continues exactly where the drained one would have: the same versions are
// installed at the same steps, so a resumed run is bit-identical to an
// uninterrupted one. Draining costs a pipeline bubble, nothing else: which
// version a step installs never depends on timing.
//
// Errors of the step function end the pipeline: every later or current wait
// returns them. Every wait is bounded by progress_timeout without progress.
// An agreed stop (step function returns true on the last bucket) makes
// BeginStep report `finished`.
//
// Thread safety: BeginStep, GradientBuffer, WaitTensors, Submit and Finish
// are called by the compute thread; TensorReady may also be called from
// autograd's device threads during backward. The destructor stops and joins
// the communication thread.
#ifndef STELLA_RUNTIME_PIPELINE_TENSOR_PIPELINE_H_
#define STELLA_RUNTIME_PIPELINE_TENSOR_PIPELINE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/base/thread_annotations.h"

namespace stella::pipeline {

// Groups tensors into buckets in reverse model order: consecutive tensors are
// added until a bucket holds >= min_bytes of fp32 gradient (as DDP's buckets
// do), and the remainder ends the last bucket. min_bytes 0: one bucket per
// tensor. Returns [first, end) ranges in processing order.
std::vector<std::pair<size_t, size_t>> MakeBuckets(const std::vector<int64_t>& tensor_sizes, size_t min_bytes);

// Runs one bucket of one step: `gradient` is the bucket's slice of the step's
// buffer (scratch afterwards); `control` is non-null only for the last bucket
// (the one holding tensor 0) and must be replaced by the agreed values. The
// function updates the bucket's tensors in the master copy. Returns true (last
// bucket only) when all workers agreed to stop after this step.
using BucketFunction = std::function<StatusOr<bool>(int64_t step, size_t bucket, float* gradient, float* control)>;
// Installs tensor `tensor`'s parameters (its size in floats) into the model.
using InstallTensorFunction = std::function<void(size_t tensor, const float* parameters)>;

struct TensorPipelineOptions {
  // Bounded staleness s, 0..64. Default 1.
  int staleness = 1;
  // Elements per tensor, model order. Required (non-empty).
  std::vector<int64_t> tensor_sizes;
  // Control floats per step. Default 0.
  size_t num_control = 0;
  // Processing order: a partition of the tensors into ranges whose last
  // entry holds tensor 0. Required (see MakeBuckets).
  std::vector<std::pair<size_t, size_t>> buckets;
  // Every wait fails with DeadlineExceeded after this long without progress.
  // Should exceed the collectives' own timeout. Default 150 s.
  std::chrono::milliseconds progress_timeout{150000};
  // Name of the communication thread. Default "stella-comm".
  std::string thread_name = "stella-comm";
};

// The in-flight state a pipeline needs to continue at step `next_step`
// (see Drain).
struct PipelineSnapshot {
  int64_t next_step = 0;  // steps applied so far; the next BeginStep's step
  // Versions max(0, next_step - s) .. next_step of all tensors, oldest first,
  // each sum-of-sizes floats; the newest equals the master copy.
  std::vector<std::vector<float>> versions;
  std::vector<float> control;  // agreed control values of step next_step - 1
};

class TensorPipeline {
 public:
  struct StepStart {
    int64_t version = 0;         // the version every tensor of this step is installed at
    bool finished = false;       // all workers agreed to stop: do not run this step
    double wait_seconds = 0;     // time spent waiting (back-pressure)
    std::vector<float> control;  // agreed control values of the newest completed step (zeros before any)
  };

  // `master` (sum of tensor_sizes floats) is what the step function updates;
  // the pipeline copies a bucket's tensors after each bucket. It must stay
  // valid until the pipeline is destroyed. InvalidArgument for bad options.
  // With `resume` (from Drain of a pipeline with the same options, possibly
  // in an earlier process) the first step is resume->next_step and the
  // versions it holds are installed as if this pipeline had published them;
  // `master` must then hold its newest version. InvalidArgument when the
  // snapshot does not fit the options.
  static StatusOr<std::unique_ptr<TensorPipeline>> Create(const TensorPipelineOptions& options, const float* master,
                                                          BucketFunction function,
                                                          const PipelineSnapshot* resume = nullptr);
  ~TensorPipeline();
  TensorPipeline(const TensorPipeline&) = delete;
  TensorPipeline& operator=(const TensorPipeline&) = delete;

  // Starts step `step` (0, 1, 2, ... each after the previous one's Submit):
  // waits until step - s - 1 is applied. Installs nothing (WaitTensors does).
  StatusOr<StepStart> BeginStep(int64_t step);

  // The current step's buffer: [gradient (sum of sizes) | control]. Tensor
  // i's gradient goes at its model offset (tensor_offset(i)).
  float* GradientBuffer();
  size_t tensor_offset(size_t i) const { return offsets_[i]; }

  // Before the forward pass of a layer: waits until each listed tensor has
  // version >= step - s and installs exactly version max(0, step - s) of each
  // one not installed yet this step.
  Status WaitTensors(const std::vector<size_t>& tensors, const InstallTensorFunction& install);

  // Tensor `tensor`'s gradient of the current step is in the buffer. Each
  // tensor at most once per step, after its install.
  void TensorReady(size_t tensor);

  // Ends the step: the control floats are in the buffer; tensors without a
  // gradient this step get zeros (and any tensor not installed yet is
  // installed, so the model is at one version). After an agreed stop or on
  // error the step is dropped (the error returned).
  Status Submit(const InstallTensorFunction& install);

  // Between Submit and the next BeginStep (or Finish): waits until every
  // submitted step is applied, or the agreed stop, and returns the snapshot
  // to resume from: next_step is the number of steps applied, which after an
  // agreed stop may be fewer than were submitted (those are dropped). Errors
  // of the step function as any wait.
  StatusOr<PipelineSnapshot> Drain();

  // Waits until every submitted step is applied (or the agreed stop), joins
  // the communication thread and installs the newest version of every
  // tensor. Call once, last.
  StatusOr<StepStart> Finish(const InstallTensorFunction& install);

  int staleness() const { return options_.staleness; }
  // Version of tensor i that is published (for tests and metrics).
  int64_t tensor_version(size_t i) const;

 private:
  struct Slot {
    int64_t step = -1;           // step using it, -1 when free
    std::vector<float> buffer;   // [gradient | control]
    std::vector<uint8_t> ready;  // per tensor
    bool control_ready = false;
  };

  TensorPipeline(const TensorPipelineOptions& options, const float* master, BucketFunction function,
                 const PipelineSnapshot* resume);
  void CommunicationLoop();
  // Waits (mu_ held) for `done`, an error or the stop; false with *status
  // set on timeout or error. `done` runs with mu_ held.
  template <typename Pred>
  bool WaitLocked(Pred done, const std::string& what, Status* status) REQUIRES(mu_);
  void InstallLocked(size_t tensor, int64_t version, const InstallTensorFunction& install) REQUIRES(mu_);

  const TensorPipelineOptions options_;
  const size_t num_tensors_;
  const size_t num_parameters_;
  std::vector<size_t> offsets_;  // per tensor, plus the total
  const int64_t first_step_;     // the communication thread's first step
  const float* master_;          // not owned
  BucketFunction function_;

  // Lock order: mu_ only.
  mutable Mutex mu_;
  CondVar changed_;                                            // any of the state below changed
  std::vector<Slot> slots_ GUARDED_BY(mu_);                    // step t uses slot t % (s + 1)
  std::vector<std::vector<float>> published_ GUARDED_BY(mu_);  // version v lives in slot v % (s + 1)
  std::vector<int64_t> version_ GUARDED_BY(mu_);               // per tensor
  int64_t applied_steps_ GUARDED_BY(mu_) = 0;                  // steps whose every bucket is applied
  std::vector<float> newest_control_ GUARDED_BY(mu_);
  bool finished_ GUARDED_BY(mu_) = false;     // agreed stop
  bool abort_ GUARDED_BY(mu_) = false;        // the communication thread must leave
  int64_t progress_ GUARDED_BY(mu_) = 0;      // bumped on every published bucket
  int64_t active_step_ GUARDED_BY(mu_) = -1;  // the step TensorReady refers to
  Status error_ GUARDED_BY(mu_);
  int64_t submitted_ GUARDED_BY(mu_) = 0;           // steps submitted
  std::vector<int64_t> installed_ GUARDED_BY(mu_);  // version installed per tensor (-1 none)
  std::vector<uint8_t> installed_this_step_ GUARDED_BY(mu_);

  // Compute thread only.
  int64_t current_step_ = -1;
  bool in_step_ = false;
  bool finish_called_ = false;

  std::thread thread_;
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_TENSOR_PIPELINE_H_
