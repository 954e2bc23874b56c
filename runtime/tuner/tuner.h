// Tuner: the bandwidth-aware controller's decision core. Every worker runs
// its own instance (through TunerDriver, tuner_driver.h) on the same
// job-wide telemetry, so all reach the same Decision without a broadcast,
// and apply it at the same step boundary:
//
//  * Batch sizes. A per-worker fit t_i(b) = a_i + c_i*b of forward+backward
//    seconds (fit.h) feeds PlanBatches (planner.h), which splits the FIXED
//    global batch so that heterogeneous workers finish a step together. The
//    global batch never changes, so the learning rate stays as configured; see
//    ScaleLearningRate for users who change the global batch themselves. A new
//    plan is adopted only when it predicts a step time shorter by more than
//    replan_threshold (or when the current plan is invalid: workers joined or
//    left), so fit noise does not reshuffle batches.
//
//  * Density. Each gateway sends its payload to every other cluster (full
//    mesh), so its egress per step is PayloadBytes(d) * (num_clusters - 1).
//    Per link the tuner smooths the measured goodput (EWMA) and finds the
//    largest density r whose egress takes at most target_fraction of the
//    predicted compute time of a step (with staleness >= 1 the WAN transfer of
//    step t overlaps the compute of step t+1, so compute time is the budget).
//    The job uses ONE density, the minimum over links, so every gateway sends
//    the same density and the slowest link sets the pace anyway.
//
//  * Stability. Decisions sit on a geometric grid (grid_steps_per_decade) or
//    on a bound, and every move lands at the largest grid point <=
//    r / (1 + hysteresis_band), clamped to [min_density, max_density], i.e.
//    with a margin. Down when the current density no longer fits (r <
//    current), at once; up when the margin allows a higher grid point and at
//    least upward_cooldown_rounds rounds passed since the last change. After a
//    move, r must therefore shift by more than the band before the next one:
//    noise inside the band changes nothing.
//
//  * Reaction bound. A link is overloaded when its measured transfer time last
//    step (bytes sent / measured goodput) exceeds overload_factor * compute
//    time. Then its smoothed goodput drops to the new sample at once and its
//    feasible density is also capped by scaling the density used last step by
//    budget / measured time (model-free). So a bandwidth drop that overloads
//    the link is answered in the decision round that first sees it, applied
//    lead_steps later. Without transfer measurements the EWMA takes
//    ceil(log(1 - f) / log(1 - ewma_alpha)) rounds to cover a fraction f of a
//    step change. An increase is followed after the EWMA lag and at most
//    upward_cooldown_rounds rounds per grid move.
//
// Pure and deterministic: no clock reads, no I/O, no threads; time comes from
// the telemetry, so the same telemetry sequence gives the same decisions.
// Logging the decisions (Decision::ToLogLine), exporting TunerState as
// metrics and broadcasting the frame (EncodeDecision) are the runtime's job.
//
// Thread safety: not thread-safe; one owner calls Decide/current/state.
#ifndef STELLA_RUNTIME_TUNER_TUNER_H_
#define STELLA_RUNTIME_TUNER_TUNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tuner/bytes_model.h"
#include "runtime/tuner/decision.h"
#include "runtime/tuner/fit.h"
#include "src/base/status.h"

namespace stella {
namespace tuner {

struct TunerOptions {
  // Element count of every gradient tensor of the model (required, each
  // >= 1): what a gateway sends per step at a density. No default.
  std::vector<uint64_t> tensor_sizes;
  // Bytes on the wire per tensor at a density. Default: fp32 values, u16
  // indices, blocks of 16, 24-byte header (see bytes_model.h).
  BytesModel bytes_model;
  // Density bounds, from spec.sync.minDensity / maxDensity:
  // 0 < min_density <= max_density <= 1. Required: their defaults live in
  // the spec library only (src/spec/stella_job.h).
  double min_density = 0;
  double max_density = 0;
  // The density before the first decision (spec.sync.density), within the
  // bounds. Required.
  double initial_density = 0;
  // Fraction of the compute time a link's transfer may take, in (0, 1]; the
  // rest is margin for jitter. Default 0.9.
  double target_fraction = 0.9;
  // Relative margin of every density move, in [0, 1]: a move lands at
  // <= feasible / (1 + band). Default 0.2.
  double hysteresis_band = 0.2;
  // Rounds after a density change before the density may go up, >= 0.
  // Downward moves never wait. Default 3.
  int upward_cooldown_rounds = 3;
  // A link is overloaded when its measured transfer time last step exceeds
  // overload_factor * compute time; > 0. Default 1.0.
  double overload_factor = 1.0;
  // Weight of a new goodput sample in the per-link EWMA, in (0, 1]; 1 = no
  // smoothing. Default 0.3.
  double ewma_alpha = 0.3;
  // Density grid points per factor of 10, >= 1 (10: steps of ~26%).
  // Default 10.
  int grid_steps_per_decade = 10;
  // A decision applies at telemetry.step + lead_steps, >= 1; must exceed the
  // broadcast latency in steps. Default 2.
  int lead_steps = 2;
  // Samples per global step, kept constant; >= 0. Default 0: the sum of the
  // batch sizes in the first telemetry round.
  int64_t global_batch = 0;
  // Per-worker batch sizes are multiples of this, >= 1. Default 1.
  int batch_granularity = 1;
  // Largest per-worker batch (GPU memory), >= 0; 0 = no cap. Default 0.
  int max_worker_batch = 0;
  // A new batch plan is adopted only if it predicts a step time shorter by
  // more than this fraction, in [0, 1). Default 0.05.
  double replan_threshold = 0.05;
  // (batch, seconds) samples per worker in the compute-time fit, >= 1.
  // Default 32.
  int fit_window = 32;
};

// InvalidArgument naming the offending field ("TunerOptions.min_density:
// must be in (0, 1], got 0").
Status ValidateTunerOptions(const TunerOptions& options);

// One worker's report for a round.
struct WorkerTelemetry {
  int id = -1;                   // stable worker id, >= 0, unique in a round
  int cluster = 0;               // cluster index in [0, num_clusters)
  int batch_size = 0;            // batch of the measured steps, >= 1
  double compute_seconds = 0.0;  // mean forward+backward seconds per step at
                                 // batch_size; 0 = no sample this round
};

// One gateway's egress report for a round.
struct LinkTelemetry {
  int cluster = 0;  // the gateway's cluster index, unique in a round
  // Goodput while sending: bytes / seconds spent transferring (NOT over wall
  // time, or an idle link would look slow); 0 = no sample this round.
  double goodput_bytes_per_s = 0.0;
  uint64_t bytes_sent_last_step = 0;  // egress of the last step to all peers
  double density_last_step = 0.0;     // density that step used; 0 = the
                                      // tuner's current density
  double cap_bytes_per_s = 0.0;       // configured shaping cap; 0 = none
};

struct Telemetry {
  int64_t step = 0;                      // last completed step; never decreases between rounds
  int num_clusters = 1;                  // clusters taking part now, >= 1
  std::vector<WorkerTelemetry> workers;  // every live worker, non-empty
  std::vector<LinkTelemetry> links;      // gateways that reported
};

// A snapshot for metrics export.
struct TunerState {
  struct Worker {
    int id = 0;
    int cluster = 0;
    int batch_size = 0;  // decided
    size_t samples = 0;  // in the fit window
    double a = 0.0;      // fitted seconds per step (0 without samples)
    double c = 0.0;      // fitted seconds per sample (0 without samples)
  };
  struct Link {
    int cluster = 0;
    double smoothed_goodput_bytes_per_s = 0.0;
    double cap_bytes_per_s = 0.0;
    double comm_seconds = 0.0;  // measured transfer time last step
    bool overloaded = false;
    double feasible_density = 0.0;  // before the band and grid; may exceed 1
  };
  uint64_t round = 0;
  int64_t step = 0;
  int64_t global_batch = 0;
  double density = 0.0;
  double compute_seconds = 0.0;  // predicted (or measured) step compute time
  uint64_t density_changes = 0;
  uint64_t batch_replans = 0;
  std::vector<Worker> workers;  // ascending id
  std::vector<Link> links;      // ascending cluster
};

class Tuner {
 public:
  static StatusOr<std::unique_ptr<Tuner>> Create(const TunerOptions& options);

  // One decision round. InvalidArgument for malformed telemetry (naming the
  // field) and FailedPrecondition when the global batch cannot be split over
  // the live workers; the tuner's state is unchanged on error.
  StatusOr<Decision> Decide(const Telemetry& telemetry);

  // The latest decision (round 0 before the first Decide: initial density,
  // no batch sizes).
  const Decision& current() const { return current_; }

  TunerState state() const;

  // Checkpoints: everything later decisions depend on (the current
  // decision, round and step counters, every worker's fit window, every
  // link's filter), as opaque bytes. A tuner with the same options that
  // loads them decides exactly as this one would have.
  std::string SaveState() const;
  // DataLoss naming the field for malformed bytes (the tuner is unchanged).
  Status LoadState(std::string_view state);

 private:
  struct WorkerFit {
    explicit WorkerFit(size_t window) : fit(window) {}
    WindowedLinearFit fit;
    int cluster = 0;
  };
  struct LinkFilter {
    double smoothed = 0.0;
    double cap = 0.0;
    double comm_seconds = 0.0;
    double used_density = 0.0;
    bool overloaded = false;
    double feasible = 0.0;
  };

  explicit Tuner(const TunerOptions& options);
  Status ValidateTelemetry(const Telemetry& telemetry) const;
  double DecideDensity(const Telemetry& telemetry, double compute_seconds, std::vector<std::string>* reasons);

  const TunerOptions options_;
  Decision current_;
  uint64_t round_ = 0;
  int64_t last_step_ = -1;
  int64_t global_batch_ = 0;      // 0 until the first round fixes it
  double compute_seconds_ = 0.0;  // last known step compute time
  std::optional<uint64_t> last_density_change_round_;
  uint64_t density_changes_ = 0;
  uint64_t batch_replans_ = 0;
  std::map<int, WorkerFit> fits_;    // by worker id
  std::map<int, LinkFilter> links_;  // by cluster
};

}  // namespace tuner
}  // namespace stella

#endif  // STELLA_RUNTIME_TUNER_TUNER_H_
