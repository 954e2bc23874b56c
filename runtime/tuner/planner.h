// The tuner's two solvers, as pure functions over fitted models:
//   - PlanBatches: integer per-worker batch sizes summing to a fixed global
//     batch that minimize the slowest worker's predicted step time, so that
//     heterogeneous workers finish a step together;
//   - FeasibleDensity: the largest density whose WAN bytes per step fit a
//     link's bandwidth within a time budget;
// plus the geometric density grid and the learning-rate scaling rule.
//
// Thread safety: pure functions.
#ifndef STELLA_RUNTIME_TUNER_PLANNER_H_
#define STELLA_RUNTIME_TUNER_PLANNER_H_

#include <cstdint>
#include <vector>

#include "runtime/tuner/bytes_model.h"
#include "runtime/tuner/fit.h"
#include "src/base/status.h"

namespace stella {
namespace tuner {

struct BatchPlan {
  std::vector<int> batch_sizes;  // one per model, in the models' order
  double step_seconds = 0.0;     // max_i models[i].Predict(batch_sizes[i])
};

// Chooses b_i, multiples of `granularity`, granularity <= b_i <=
// max_worker_batch (0 = no cap), sum b_i = global_batch, minimizing
// max_i t_i(b_i). Water-filling: bisection on the common finish time T with
// b_i(T) = largest multiple that finishes by T, then the few units left go one
// at a time to the worker whose next unit finishes earliest (ties to the lower
// index, so the plan is deterministic). Optimal for increasing t_i.
// InvalidArgument if models is empty, a model has c <= 0, granularity < 1,
// global_batch is not a multiple of granularity, or the batch cannot be split
// (fewer units than workers, or more than the caps allow).
StatusOr<BatchPlan> PlanBatches(const std::vector<LinearModel>& models, int64_t global_batch, int granularity,
                                int max_worker_batch);

// max_i models[i].Predict(batch_sizes[i]); sizes must match (checked).
double PredictStepSeconds(const std::vector<LinearModel>& models, const std::vector<int>& batch_sizes);

// The most even split of global_batch into `workers` multiples of
// granularity (the first global_batch/granularity % workers workers get one
// unit more). Same InvalidArgument cases as PlanBatches.
StatusOr<std::vector<int>> EvenSplit(int workers, int64_t global_batch, int granularity, int max_worker_batch);

// The linear scaling rule (Goyal et al. 2017): lr * new / old. The tuner
// keeps the global batch fixed, so it never needs this; it is for a user who
// lets the global batch change (for example after losing workers). Both
// batches must be > 0 (checked).
double ScaleLearningRate(double lr, int64_t old_global_batch, int64_t new_global_batch);

// The largest density d whose egress fits the budget on one link:
//   PayloadBytes(d) * peers / bandwidth_bytes_per_s <= budget_seconds.
// A gateway sends its payload to each of `peers` other clusters (full mesh).
// Returns 0 when even the smallest density (one element per tensor) does not
// fit. When density 1 fits, returns budget / bytes(1) (>= 1), the headroom
// as a virtual density, so callers can compare it with bounds uniformly
// (infinity when the model has no bytes at all).
// Requires peers >= 1, bandwidth > 0, budget > 0 (checked). Bisection: bytes
// are non-decreasing in density.
double FeasibleDensity(const BytesModel& model, const std::vector<uint64_t>& tensor_sizes, int peers,
                       double bandwidth_bytes_per_s, double budget_seconds);

// The largest point of the grid 10^(j / steps_per_decade), j integer, that is
// <= density (density > 0, steps_per_decade >= 1, checked). Quantizing
// decisions keeps noise from producing many tiny changes.
double QuantizeDown(double density, int steps_per_decade);

}  // namespace tuner
}  // namespace stella

#endif  // STELLA_RUNTIME_TUNER_PLANNER_H_
