// StalePipeline: overlaps the communication and optimizer work of step t with
// the forward/backward of the next steps, with bounded staleness s.
//
// The compute thread (the caller) per step t:
//   BeginStep(t)  waits until the parameters include the update of step
//                 t-1-s (version >= t - s) and installs EXACTLY version
//                 max(0, t - s) into the model through a callback, on the
//                 compute thread (libtorch is touched by that thread only);
//   ...forward/backward into a buffer from AcquireBuffer()...
//   Submit(t, buffer)
// and Finish() at the end. An owned, named communication thread pops the
// buffers in step order from a bounded queue (back-pressure), runs the step
// function (collectives, exchange, optimizer on the master copy), then
// publishes a copy of the master parameters as the next version.
// s = 0 is fully synchronous: step t starts from the parameters after step
// t-1, exactly as if everything ran inline.
//
// Why exactly t - s and not the newest version: the delay is then a fixed
// property of the schedule, not of thread timing, so a run is reproducible
// bit for bit. The price is s + 1 published copies of the parameters (the
// versions t-s .. t that can exist while step t begins).
//
// Each buffer is [gradient (num_parameters) | control (num_control)]. The step
// function replaces the control floats with the agreed job-wide values and
// returns true when all workers agreed to stop after this step; the pipeline
// then drops the steps already submitted behind it (every worker drops the
// same ones, since the decision came from the same aggregate).
// An error of the step function ends the pipeline; BeginStep, Submit and
// Finish then return it. No wait can hang: each is bounded by
// progress_timeout without a new version.
//
// Thread safety: BeginStep, AcquireBuffer, Submit and Finish are called by one
// thread (the compute thread). The step function runs on the communication
// thread. The destructor stops and joins the communication thread.
#ifndef STELLA_RUNTIME_PIPELINE_STALE_PIPELINE_H_
#define STELLA_RUNTIME_PIPELINE_STALE_PIPELINE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/pipeline/bounded_queue.h"
#include "runtime/pipeline/version_gate.h"
#include "src/base/status.h"

namespace stella::pipeline {

// Runs step `step` on `buffer` (see above). Returns true to stop after it.
using StepFunction = std::function<StatusOr<bool>(int64_t step, std::vector<float>* buffer)>;
// Installs parameters (num_parameters floats) into the model.
using InstallFunction = std::function<void(const float* parameters)>;

struct StalePipelineOptions {
  // Bounded staleness s, 0..8: the forward pass of step t uses parameters
  // that include at least the updates of steps 0 .. t-1-s. Default 1 (the
  // prototype's fixed one-step delay).
  int staleness = 1;
  // Floats of parameters and of control values per buffer. Required / 0.
  size_t num_parameters = 0;
  size_t num_control = 0;
  // Every wait fails with DeadlineExceeded after this long without a new
  // version. Should exceed the collectives' own timeout. Default 150 s.
  std::chrono::milliseconds progress_timeout{150000};
  // Name of the communication thread (Linux truncates to 15 bytes).
  // Default "stella-comm".
  std::string thread_name = "stella-comm";
};

class StalePipeline {
 public:
  struct StepStart {
    int64_t version = 0;         // updates included in the installed parameters
    bool finished = false;       // all workers agreed to stop: do not run this step
    double wait_seconds = 0;     // time spent waiting for the parameters
    std::vector<float> control;  // agreed control values of the last completed step (zeros before any)
  };

  // `master` points at the master parameters that the step function updates;
  // the communication thread copies them after every step. It must stay
  // valid (and be written only by the step function) until the pipeline is
  // destroyed. The step function must not call back into the pipeline.
  static StatusOr<std::unique_ptr<StalePipeline>> Create(const StalePipelineOptions& options, const float* master,
                                                         StepFunction step_function);
  ~StalePipeline();
  StalePipeline(const StalePipeline&) = delete;
  StalePipeline& operator=(const StalePipeline&) = delete;

  // Waits for version >= step - staleness, then calls install with the
  // parameters of version max(0, step - staleness) unless that version is
  // already installed. Steps must be begun in order 0, 1, 2, ...
  StatusOr<StepStart> BeginStep(int64_t step, const InstallFunction& install);

  // A buffer of num_parameters + num_control floats (recycled, contents
  // unspecified).
  std::vector<float> AcquireBuffer();

  // Queues the gradient of the step last begun. Blocks while the queue is
  // full. After an agreed stop the buffer is silently dropped (Ok).
  Status Submit(int64_t step, std::vector<float> buffer);

  // Waits until every submitted step is applied (or the agreed stop), stops
  // the communication thread and installs the final parameters. Returns the
  // final state (version = updates applied in total). Call once, last.
  StatusOr<StepStart> Finish(const InstallFunction& install);

  int staleness() const { return options_.staleness; }

 private:
  struct Item {
    int64_t step = 0;
    std::vector<float> buffer;
  };

  StalePipeline(const StalePipelineOptions& options, const float* master, StepFunction step_function);
  void CommunicationLoop();
  // Installs published version `version` unless it is installed already,
  // and fills `out` (version, newest control values).
  void Install(int64_t version, const InstallFunction& install, StepStart* out);

  const StalePipelineOptions options_;
  const float* master_;  // not owned; see Create
  StepFunction step_function_;
  VersionGate gate_;
  BoundedQueue<Item> queue_;

  // Lock order: mu_ alone (the gate and the queue lock internally; never
  // called with mu_ held).
  std::mutex mu_;
  // Ring of staleness + 1 published parameter copies: version v lives in
  // slot v % (staleness + 1).
  std::vector<std::vector<float>> published_;  // guarded by mu_
  std::vector<int64_t> slot_version_;          // guarded by mu_: version held by each slot (-1 none)
  std::vector<float> newest_control_;          // guarded by mu_: control values of newest_version_
  int64_t newest_version_ = 0;                 // guarded by mu_
  std::vector<std::vector<float>> free_buffers_;  // guarded by mu_: recycled buffers

  // Compute thread only.
  int64_t installed_version_ = -1;
  int64_t next_step_ = 0;   // next step BeginStep expects
  int64_t submitted_ = 0;   // steps submitted
  bool finished_called_ = false;

  std::thread thread_;  // the communication thread; joined by Finish or the destructor
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_STALE_PIPELINE_H_
