#include "runtime/tuner/planner.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <string>
#include <utility>

namespace stella {
namespace tuner {
namespace {

// Units of `granularity` samples each: validates the split and returns
// (total units, per-worker cap in units).
StatusOr<std::pair<int64_t, int64_t>> SplitUnits(size_t workers, int64_t global_batch, int granularity,
                                                 int max_worker_batch) {
  if (workers == 0) return InvalidArgumentError("batch plan needs at least one worker");
  if (granularity < 1) {
    return InvalidArgumentError("batch granularity must be >= 1, got " + std::to_string(granularity));
  }
  if (max_worker_batch < 0) {
    return InvalidArgumentError("max worker batch must be >= 0 (0 = no cap), got " + std::to_string(max_worker_batch));
  }
  if (global_batch < 1 || global_batch % granularity != 0) {
    return InvalidArgumentError("global batch " + std::to_string(global_batch) +
                                " must be a positive multiple of the granularity " + std::to_string(granularity));
  }
  const int64_t units = global_batch / granularity;
  const int64_t n = static_cast<int64_t>(workers);
  if (units < n) {
    return InvalidArgumentError("global batch " + std::to_string(global_batch) + " cannot give " +
                                std::to_string(workers) + " workers at least " + std::to_string(granularity) +
                                " samples each");
  }
  int64_t cap = units;
  if (max_worker_batch > 0) {
    cap = max_worker_batch / granularity;
    if (cap < 1 || cap * n < units) {
      return InvalidArgumentError("global batch " + std::to_string(global_batch) + " does not fit " +
                                  std::to_string(workers) + " workers capped at " + std::to_string(max_worker_batch) +
                                  " samples (granularity " + std::to_string(granularity) + ")");
    }
  }
  return std::make_pair(units, cap);
}

}  // namespace

StatusOr<BatchPlan> PlanBatches(const std::vector<LinearModel>& models, int64_t global_batch, int granularity,
                                int max_worker_batch) {
  std::pair<int64_t, int64_t> split;
  STELLA_ASSIGN_OR_RETURN(split, SplitUnits(models.size(), global_batch, granularity, max_worker_batch));
  const int64_t units = split.first;
  const int64_t cap = split.second;
  for (size_t i = 0; i < models.size(); ++i) {
    if (!(models[i].c > 0.0) || !std::isfinite(models[i].c) || !std::isfinite(models[i].a)) {
      return InvalidArgumentError("worker model " + std::to_string(i) +
                                  " must have a finite slope c > 0, got c=" + std::to_string(models[i].c));
    }
  }
  const double g = granularity;
  auto time_at = [&](size_t i, int64_t u) { return models[i].Predict(g * static_cast<double>(u)); };
  // Units worker i can take while finishing by T, within [1, cap].
  auto units_by = [&](size_t i, double t) {
    const double u = std::floor((t - models[i].a) / (models[i].c * g));
    return static_cast<int64_t>(std::clamp(u, 1.0, static_cast<double>(cap)));
  };
  auto total_by = [&](double t) {
    int64_t sum = 0;
    for (size_t i = 0; i < models.size(); ++i) sum += units_by(i, t);
    return sum;
  };

  // Invariant: total_by(lo) <= units < total_by(hi), unless hi already fits.
  double lo = time_at(0, 1), hi = time_at(0, cap);
  for (size_t i = 0; i < models.size(); ++i) {
    lo = std::min(lo, time_at(i, 1));
    hi = std::max(hi, time_at(i, cap));
  }
  lo = std::nextafter(lo, -1.0);
  double level = lo;
  if (total_by(hi) <= units) {
    level = hi;
  } else {
    for (int iter = 0; iter < 200 && lo < hi; ++iter) {
      const double mid = lo + (hi - lo) / 2;
      if (mid <= lo || mid >= hi) break;
      if (total_by(mid) <= units)
        lo = mid;
      else
        hi = mid;
    }
    level = lo;
  }
  std::vector<int64_t> u(models.size());
  int64_t assigned = 0;
  for (size_t i = 0; i < models.size(); ++i) {
    u[i] = units_by(i, level);
    assigned += u[i];
  }
  STELLA_CHECK(assigned <= units);
  // Remainder: next unit to the worker that would finish it earliest.
  using Entry = std::pair<double, size_t>;  // (finish time with one more unit, worker)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> next;
  for (size_t i = 0; i < models.size(); ++i) {
    if (u[i] < cap) next.push({time_at(i, u[i] + 1), i});
  }
  while (assigned < units) {
    STELLA_CHECK(!next.empty());
    const size_t i = next.top().second;
    next.pop();
    ++u[i];
    ++assigned;
    if (u[i] < cap) next.push({time_at(i, u[i] + 1), i});
  }

  BatchPlan plan;
  plan.batch_sizes.resize(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    plan.batch_sizes[i] = static_cast<int>(u[i] * granularity);
  }
  plan.step_seconds = PredictStepSeconds(models, plan.batch_sizes);
  return plan;
}

double PredictStepSeconds(const std::vector<LinearModel>& models, const std::vector<int>& batch_sizes) {
  STELLA_CHECK(models.size() == batch_sizes.size());
  double worst = 0.0;
  for (size_t i = 0; i < models.size(); ++i) {
    worst = std::max(worst, models[i].Predict(batch_sizes[i]));
  }
  return worst;
}

StatusOr<std::vector<int>> EvenSplit(int workers, int64_t global_batch, int granularity, int max_worker_batch) {
  if (workers < 1) return InvalidArgumentError("batch split needs at least one worker");
  std::pair<int64_t, int64_t> split;
  STELLA_ASSIGN_OR_RETURN(split, SplitUnits(static_cast<size_t>(workers), global_batch, granularity, max_worker_batch));
  const int64_t base = split.first / workers;
  const int64_t extra = split.first % workers;
  std::vector<int> sizes(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i) {
    sizes[static_cast<size_t>(i)] = static_cast<int>((base + (i < extra ? 1 : 0)) * granularity);
  }
  // The caps were checked against the total; an even split never exceeds
  // them because ceil(units / workers) <= cap when units <= cap * workers.
  return sizes;
}

double ScaleLearningRate(double lr, int64_t old_global_batch, int64_t new_global_batch) {
  STELLA_CHECK(old_global_batch > 0 && new_global_batch > 0);
  return lr * static_cast<double>(new_global_batch) / static_cast<double>(old_global_batch);
}

double FeasibleDensity(const BytesModel& model, const std::vector<uint64_t>& tensor_sizes, int peers,
                       double bandwidth_bytes_per_s, double budget_seconds) {
  STELLA_CHECK(peers >= 1 && bandwidth_bytes_per_s > 0.0 && budget_seconds > 0.0);
  const double budget_bytes = budget_seconds * bandwidth_bytes_per_s;
  auto egress = [&](double d) { return static_cast<double>(PayloadBytes(model, tensor_sizes, d)) * peers; };
  const double full = egress(1.0);
  if (full <= budget_bytes) {
    return full > 0.0 ? budget_bytes / full : std::numeric_limits<double>::infinity();
  }
  // egress(0) is the floor: one element per tensor (TensorBytes clamps).
  if (egress(0.0) > budget_bytes) return 0.0;
  double lo = 0.0, hi = 1.0;  // lo fits, hi does not
  for (int iter = 0; iter < 64; ++iter) {
    const double mid = lo + (hi - lo) / 2;
    if (egress(mid) <= budget_bytes)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

double QuantizeDown(double density, int steps_per_decade) {
  STELLA_CHECK(density > 0.0 && steps_per_decade >= 1);
  const double s = steps_per_decade;
  // The epsilon keeps grid points themselves (0.01 is 10^(-20/10) up to
  // rounding) from falling one step below.
  const double j = std::floor(std::log10(density) * s + 1e-9);
  return std::min(std::pow(10.0, j / s), density);  // never above the input
}

}  // namespace tuner
}  // namespace stella
