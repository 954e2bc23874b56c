// TunerDriver: the runtime side of the tuner in `stella` sync mode, and the
// one owner of the job's live density and batch sizes.
//
// There is no coordinator: every worker runs its own driver and Tuner. Each
// step's control section (the floats that ride with the gradient) carries
// every worker's telemetry in its own slots (TelemetryLayout); after the
// all-reduce every worker holds the same job-wide mean, undoes the mean
// (each slot had one writer), and the same deterministic Tuner reaches the
// same decision everywhere, at the same step.
//
// Density: the communication thread reads density() before each bucket's
// exchange and the driver changes it only in Decide, which runs on that
// same thread after a step's last bucket, so every bucket of a step uses one
// value. Without the tuner (spec.sync.tuner false) the density stays at the
// starting value.
//
// Batch sizes: a decision applies at its apply_at_step; the compute thread,
// which runs up to `staleness` steps ahead, takes it from a queue
// (BatchForStep) before computing that step.
//
// Thread safety: FillTelemetry and BatchForStep on the compute thread;
// Decide, SaveState and LoadState on the communication thread (SaveState
// and LoadState also at a drained pipeline boundary); density() anywhere.
#ifndef STELLA_RUNTIME_TUNER_TUNER_DRIVER_H_
#define STELLA_RUNTIME_TUNER_TUNER_DRIVER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tuner/decision.h"
#include "runtime/tuner/tuner.h"
#include "src/base/mutex.h"
#include "src/base/status.h"

namespace stella::tuner {

// Slots of the control section, after the fixed ones (stop, loss):
//   [fixed..., compute_seconds[world], {goodput, bytes_last_step}[clusters]]
struct TelemetryLayout {
  size_t fixed = 0;  // slots before the telemetry (the worker's own)
  int world = 1;
  int clusters = 1;
  size_t size() const { return fixed + static_cast<size_t>(world) + 2 * static_cast<size_t>(clusters); }
  size_t compute(int rank) const { return fixed + static_cast<size_t>(rank); }
  size_t goodput(int cluster) const { return fixed + static_cast<size_t>(world) + 2 * static_cast<size_t>(cluster); }
  size_t bytes(int cluster) const { return goodput(cluster) + 1; }
};

struct TunerDriverOptions {
  TelemetryLayout layout;
  // Workers per cluster, in cluster order (sums to layout.world). Required.
  std::vector<int> cluster_workers;
  // Per cluster: the configured egress cap in bytes/s (0 = none). Required
  // when there is more than one cluster.
  std::vector<double> cluster_caps_bytes_per_s;
  int global_rank = 0;
  int cluster_index = 0;
  // Every worker's batch size before any decision (spec.batchSize).
  int initial_batch = 0;
  // Density before any decision (spec.sync.density), in (0, 1].
  double initial_density = 0;
  // Steps between decisions, >= 1.
  int every_steps = 5;
  // The Tuner, or null when the tuner is off (the density stays fixed).
  std::unique_ptr<Tuner> tuner;
};

// What a checkpoint keeps of a driver: the tuner's state and the record of
// batch decisions (all made, and those the compute thread has not applied).
struct TunerDriverState {
  double density = 0;
  bool has_tuner = false;
  std::string tuner;              // Tuner::SaveState
  std::vector<int> last_batches;  // the last batch plan made
  std::vector<Decision> history;  // every batch decision made, in order
  std::vector<Decision> pending;  // decisions applying at or after the saved step
};

class TunerDriver {
 public:
  static StatusOr<std::unique_ptr<TunerDriver>> Create(TunerDriverOptions options);

  // Compute thread: zeroes the telemetry slots of `control` and fills this
  // worker's: its compute time, and on a gateway the slowest link's goodput
  // and the bytes sent last step.
  void FillTelemetry(double compute_seconds, double gateway_goodput, double gateway_bytes_last_step,
                     float* control) const;

  // Communication thread, after step `step`'s exchange, with the job-wide
  // mean of the control section. Decides every `every_steps` steps (no-op
  // otherwise, and without a tuner). Says what changed.
  struct Change {
    bool density = false;
    bool batches = false;
    bool any() const { return density || batches; }
  };
  StatusOr<Change> Decide(int64_t step, const float* control);

  // Compute thread: this worker's batch for `step`, applying every queued
  // decision due by then; `current` when none is.
  int BatchForStep(int64_t step, int current);

  // Communication thread: the batch worker `rank` used at `step`.
  int BatchAt(int64_t step, int rank) const;

  double density() const { return density_.load(); }
  bool has_tuner() const { return tuner_ != nullptr; }
  // The latest decision's log line ("" before the first).
  const std::string& last_log_line() const { return last_log_line_; }

  // State as of applied step `step` (a drained boundary).
  TunerDriverState SaveState(int64_t step) const;
  // Restores a SaveState. A state without tuner data for a driver with a
  // tuner (or the reverse) restarts the tuner from the spec's values.
  Status LoadState(const TunerDriverState& state);

 private:
  explicit TunerDriver(TunerDriverOptions options);
  Telemetry ReadTelemetry(int64_t step, const float* control) const;

  TunerDriverOptions options_;
  std::unique_ptr<Tuner> tuner_;
  std::atomic<double> density_;
  std::string last_log_line_;
  // Communication thread only.
  std::vector<int> last_batches_;
  std::vector<Decision> history_;
  // Handed from the communication thread to the compute thread.
  mutable Mutex mu_;
  std::deque<Decision> pending_ GUARDED_BY(mu_);
};

}  // namespace stella::tuner

#endif  // STELLA_RUNTIME_TUNER_TUNER_DRIVER_H_
