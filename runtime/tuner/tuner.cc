#include "runtime/tuner/tuner.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "runtime/tuner/planner.h"
#include "src/base/byte_io.h"

namespace stella {
namespace tuner {
namespace {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

Status FieldError(const std::string& field, const std::string& expected, double got) {
  return InvalidArgumentError("TunerOptions." + field + ": must be " + expected + ", got " + Num(got));
}

bool InRange(double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; }

}  // namespace

Status ValidateTunerOptions(const TunerOptions& o) {
  if (o.tensor_sizes.empty()) {
    return InvalidArgumentError("TunerOptions.tensor_sizes: must list at least one tensor");
  }
  for (size_t i = 0; i < o.tensor_sizes.size(); ++i) {
    if (o.tensor_sizes[i] < 1) {
      return InvalidArgumentError("TunerOptions.tensor_sizes[" + std::to_string(i) + "]: must be >= 1, got 0");
    }
  }
  Status bytes = ValidateBytesModel(o.bytes_model);
  if (!bytes.ok()) return InvalidArgumentError("TunerOptions." + bytes.message());
  if (!InRange(o.min_density, 0.0, 1.0) || o.min_density <= 0.0) {
    return FieldError("min_density", "in (0, 1]", o.min_density);
  }
  if (!InRange(o.max_density, o.min_density, 1.0)) {
    return FieldError("max_density", "in [min_density=" + Num(o.min_density) + ", 1]", o.max_density);
  }
  if (!InRange(o.initial_density, o.min_density, o.max_density)) {
    return FieldError("initial_density", "in [" + Num(o.min_density) + ", " + Num(o.max_density) + "]",
                      o.initial_density);
  }
  if (!InRange(o.target_fraction, 0.0, 1.0) || o.target_fraction <= 0.0) {
    return FieldError("target_fraction", "in (0, 1]", o.target_fraction);
  }
  if (!InRange(o.hysteresis_band, 0.0, 1.0)) {
    return FieldError("hysteresis_band", "in [0, 1]", o.hysteresis_band);
  }
  if (o.upward_cooldown_rounds < 0) {
    return FieldError("upward_cooldown_rounds", ">= 0", o.upward_cooldown_rounds);
  }
  if (!std::isfinite(o.overload_factor) || o.overload_factor <= 0.0) {
    return FieldError("overload_factor", "> 0", o.overload_factor);
  }
  if (!InRange(o.ewma_alpha, 0.0, 1.0) || o.ewma_alpha <= 0.0) {
    return FieldError("ewma_alpha", "in (0, 1]", o.ewma_alpha);
  }
  if (o.grid_steps_per_decade < 1) {
    return FieldError("grid_steps_per_decade", ">= 1", o.grid_steps_per_decade);
  }
  if (o.lead_steps < 1) return FieldError("lead_steps", ">= 1", o.lead_steps);
  if (o.global_batch < 0) {
    return FieldError("global_batch", ">= 0 (0 = from the first telemetry)", static_cast<double>(o.global_batch));
  }
  if (o.batch_granularity < 1) {
    return FieldError("batch_granularity", ">= 1", o.batch_granularity);
  }
  if (o.global_batch > 0 && o.global_batch % o.batch_granularity != 0) {
    return InvalidArgumentError(
        "TunerOptions.global_batch: must be a multiple of "
        "batch_granularity=" +
        std::to_string(o.batch_granularity) + ", got " + std::to_string(o.global_batch));
  }
  if (o.max_worker_batch < 0) {
    return FieldError("max_worker_batch", ">= 0 (0 = no cap)", o.max_worker_batch);
  }
  if (!InRange(o.replan_threshold, 0.0, 1.0) || o.replan_threshold >= 1.0) {
    return FieldError("replan_threshold", "in [0, 1)", o.replan_threshold);
  }
  if (o.fit_window < 1) return FieldError("fit_window", ">= 1", o.fit_window);
  return Status::Ok();
}

StatusOr<std::unique_ptr<Tuner>> Tuner::Create(const TunerOptions& options) {
  STELLA_RETURN_IF_ERROR(ValidateTunerOptions(options));
  return std::unique_ptr<Tuner>(new Tuner(options));
}

namespace {
constexpr uint32_t kTunerStateVersion = 1;
}  // namespace

std::string Tuner::SaveState() const {
  ByteWriter w;
  w.U32(kTunerStateVersion);
  std::vector<uint8_t> decision;
  STELLA_CHECK(EncodeDecision(current_, &decision).ok());  // current_ is always valid
  w.String(std::string_view(reinterpret_cast<const char*>(decision.data()), decision.size()));
  w.U64(round_);
  w.I64(last_step_);
  w.I64(global_batch_);
  w.F64(compute_seconds_);
  w.Bool(last_density_change_round_.has_value());
  w.U64(last_density_change_round_.value_or(0));
  w.U64(density_changes_);
  w.U64(batch_replans_);
  w.U32(static_cast<uint32_t>(fits_.size()));
  for (const auto& [id, f] : fits_) {
    w.I64(id);
    w.I64(f.cluster);
    const auto samples = f.fit.samples();
    w.U32(static_cast<uint32_t>(samples.size()));
    for (const auto& [batch, seconds] : samples) {
      w.F64(batch);
      w.F64(seconds);
    }
  }
  w.U32(static_cast<uint32_t>(links_.size()));
  for (const auto& [cluster, l] : links_) {
    w.I64(cluster);
    w.F64(l.smoothed);
    w.F64(l.cap);
    w.F64(l.comm_seconds);
    w.F64(l.used_density);
    w.Bool(l.overloaded);
    w.F64(l.feasible);
  }
  return w.Release();
}

Status Tuner::LoadState(std::string_view state) {
  ByteReader r(state, "tuner state");
  const uint32_t version = r.U32("version");
  if (r.ok() && version != kTunerStateVersion) {
    r.Fail("version " + std::to_string(version) + ", this build reads " + std::to_string(kTunerStateVersion));
  }
  const std::string frame = r.String("current decision");
  if (!r.ok()) return r.status();
  auto decision = DecodeDecision(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
  if (!decision.ok()) return DataLossError("tuner state: current decision: " + decision.status().message());
  const uint64_t round = r.U64("round");
  const int64_t last_step = r.I64("last step");
  const int64_t global_batch = r.I64("global batch");
  const double compute_seconds = r.F64("compute seconds");
  const bool has_change = r.Bool("has last density change");
  const uint64_t change_round = r.U64("last density change round");
  const uint64_t density_changes = r.U64("density changes");
  const uint64_t batch_replans = r.U64("batch replans");
  std::map<int, WorkerFit> fits;
  const uint32_t num_fits = r.U32("worker count");
  for (uint32_t i = 0; i < num_fits && r.ok(); ++i) {
    const int64_t id = r.I64("worker id");
    const int64_t cluster = r.I64("worker cluster");
    const uint32_t n = r.U32("fit sample count");
    if (r.ok() && (id < 0 || id > INT32_MAX || cluster < 0 || cluster > INT32_MAX ||
                   n > static_cast<uint32_t>(options_.fit_window))) {
      r.Fail("worker " + std::to_string(id) + " (cluster " + std::to_string(cluster) + ", " + std::to_string(n) +
             " fit samples for a window of " + std::to_string(options_.fit_window) + ") is out of range");
    }
    WorkerFit f(static_cast<size_t>(options_.fit_window));
    f.cluster = static_cast<int>(cluster);
    for (uint32_t k = 0; k < n && r.ok(); ++k) {
      const double batch = r.F64("fit batch");
      const double seconds = r.F64("fit seconds");
      if (r.ok() && !(std::isfinite(batch) && batch > 0 && std::isfinite(seconds) && seconds > 0)) {
        r.Fail("fit sample (" + std::to_string(batch) + ", " + std::to_string(seconds) + ") is not positive");
      }
      if (r.ok()) f.fit.Add(batch, seconds);
    }
    if (r.ok()) fits.emplace(static_cast<int>(id), std::move(f));
  }
  std::map<int, LinkFilter> links;
  const uint32_t num_links = r.U32("link count");
  for (uint32_t i = 0; i < num_links && r.ok(); ++i) {
    const int64_t cluster = r.I64("link cluster");
    LinkFilter l;
    l.smoothed = r.F64("link goodput");
    l.cap = r.F64("link cap");
    l.comm_seconds = r.F64("link comm seconds");
    l.used_density = r.F64("link density");
    l.overloaded = r.Bool("link overloaded");
    l.feasible = r.F64("link feasible density");
    if (r.ok() && (cluster < 0 || cluster > INT32_MAX)) r.Fail("link cluster " + std::to_string(cluster));
    if (r.ok()) links[static_cast<int>(cluster)] = l;
  }
  r.ExpectEnd();
  if (!r.ok()) return r.status();
  current_ = std::move(decision).value();
  round_ = round;
  last_step_ = last_step;
  global_batch_ = global_batch;
  compute_seconds_ = compute_seconds;
  last_density_change_round_ = has_change ? std::optional<uint64_t>(change_round) : std::nullopt;
  density_changes_ = density_changes;
  batch_replans_ = batch_replans;
  fits_ = std::move(fits);
  links_ = std::move(links);
  return Status::Ok();
}

Tuner::Tuner(const TunerOptions& options) : options_(options) {
  current_.density = options_.initial_density;
  current_.reason = "initial";
}

Status Tuner::ValidateTelemetry(const Telemetry& t) const {
  if (t.step < 0 || t.step < last_step_) {
    return InvalidArgumentError("telemetry.step: must be >= 0 and >= the previous round's " +
                                std::to_string(last_step_) + ", got " + std::to_string(t.step));
  }
  if (t.num_clusters < 1) {
    return InvalidArgumentError("telemetry.num_clusters: must be >= 1, got " + std::to_string(t.num_clusters));
  }
  if (t.workers.empty() || t.workers.size() > kMaxDecisionWorkers) {
    return InvalidArgumentError("telemetry.workers: must list 1.." + std::to_string(kMaxDecisionWorkers) +
                                " workers, got " + std::to_string(t.workers.size()));
  }
  std::set<int> ids;
  for (size_t i = 0; i < t.workers.size(); ++i) {
    const WorkerTelemetry& w = t.workers[i];
    const std::string field = "telemetry.workers[" + std::to_string(i) + "]";
    if (w.id < 0 || !ids.insert(w.id).second) {
      return InvalidArgumentError(field + ".id: must be >= 0 and unique, got " + std::to_string(w.id));
    }
    if (w.cluster < 0 || w.cluster >= t.num_clusters) {
      return InvalidArgumentError(field + ".cluster: must be in [0, " + std::to_string(t.num_clusters) + "), got " +
                                  std::to_string(w.cluster));
    }
    if (w.batch_size < 1) {
      return InvalidArgumentError(field + ".batch_size: must be >= 1, got " + std::to_string(w.batch_size));
    }
    if (!std::isfinite(w.compute_seconds) || w.compute_seconds < 0.0) {
      return InvalidArgumentError(field + ".compute_seconds: must be finite and >= 0, got " + Num(w.compute_seconds));
    }
  }
  std::set<int> clusters;
  for (size_t i = 0; i < t.links.size(); ++i) {
    const LinkTelemetry& l = t.links[i];
    const std::string field = "telemetry.links[" + std::to_string(i) + "]";
    if (l.cluster < 0 || l.cluster >= t.num_clusters || !clusters.insert(l.cluster).second) {
      return InvalidArgumentError(field + ".cluster: must be unique and in [0, " + std::to_string(t.num_clusters) +
                                  "), got " + std::to_string(l.cluster));
    }
    if (!std::isfinite(l.goodput_bytes_per_s) || l.goodput_bytes_per_s < 0.0) {
      return InvalidArgumentError(field + ".goodput_bytes_per_s: must be finite and >= 0, got " +
                                  Num(l.goodput_bytes_per_s));
    }
    if (!InRange(l.density_last_step, 0.0, 1.0)) {
      return InvalidArgumentError(field + ".density_last_step: must be in [0, 1], got " + Num(l.density_last_step));
    }
    if (!std::isfinite(l.cap_bytes_per_s) || l.cap_bytes_per_s < 0.0) {
      return InvalidArgumentError(field + ".cap_bytes_per_s: must be finite and >= 0, got " + Num(l.cap_bytes_per_s));
    }
  }
  return Status::Ok();
}

StatusOr<Decision> Tuner::Decide(const Telemetry& t) {
  STELLA_RETURN_IF_ERROR(ValidateTelemetry(t));
  std::vector<const WorkerTelemetry*> workers;
  int64_t reported_batch = 0;
  for (const WorkerTelemetry& w : t.workers) {
    workers.push_back(&w);
    reported_batch += w.batch_size;
  }
  std::sort(workers.begin(), workers.end(),
            [](const WorkerTelemetry* x, const WorkerTelemetry* y) { return x->id < y->id; });
  const int64_t global_batch = global_batch_ > 0           ? global_batch_
                               : options_.global_batch > 0 ? options_.global_batch
                                                           : reported_batch;
  const int n = static_cast<int>(workers.size());
  StatusOr<std::vector<int>> even = EvenSplit(n, global_batch, options_.batch_granularity, options_.max_worker_batch);
  if (!even.ok()) {
    return FailedPreconditionError("tuner round " + std::to_string(round_ + 1) +
                                   ": cannot keep the global batch over the live workers: " + even.status().message());
  }

  // Validated: from here on the round mutates state and cannot fail.
  global_batch_ = global_batch;
  last_step_ = t.step;
  ++round_;
  std::vector<std::string> reasons;

  // Fits: forget workers that left, add this round's samples.
  std::vector<int> ids;
  for (const WorkerTelemetry* w : workers) ids.push_back(w->id);
  for (auto it = fits_.begin(); it != fits_.end();) {
    it = std::binary_search(ids.begin(), ids.end(), it->first) ? std::next(it) : fits_.erase(it);
  }
  std::vector<LinearModel> models;
  bool all_fitted = true;
  double measured = 0.0;
  for (const WorkerTelemetry* w : workers) {
    WorkerFit& f = fits_.try_emplace(w->id, static_cast<size_t>(options_.fit_window)).first->second;
    f.cluster = w->cluster;
    if (w->compute_seconds > 0.0) {
      f.fit.Add(w->batch_size, w->compute_seconds);
      measured = std::max(measured, w->compute_seconds);
    }
    std::optional<LinearModel> m = f.fit.Fit();
    if (m)
      models.push_back(*m);
    else
      all_fitted = false;
  }

  // Batches: the plan in force is the last decision when it covers exactly
  // these workers, else what the workers report.
  std::vector<int> in_force;
  if (current_.worker_ids == ids) {
    in_force = current_.batch_sizes;
  } else {
    for (const WorkerTelemetry* w : workers) in_force.push_back(w->batch_size);
  }
  int64_t in_force_sum = 0;
  bool in_force_valid = true;
  for (int b : in_force) {
    in_force_sum += b;
    in_force_valid = in_force_valid && b % options_.batch_granularity == 0 &&
                     (options_.max_worker_batch == 0 || b <= options_.max_worker_batch);
  }
  in_force_valid = in_force_valid && in_force_sum == global_batch;

  std::vector<int> batches;
  double compute = 0.0;
  if (all_fitted) {
    StatusOr<BatchPlan> plan = PlanBatches(models, global_batch, options_.batch_granularity, options_.max_worker_batch);
    STELLA_CHECK(plan.ok());  // EvenSplit accepted the split and fits have c > 0
    if (!in_force_valid) {
      batches = plan->batch_sizes;
      ++batch_replans_;
      reasons.push_back("batches planned for " + std::to_string(n) + " workers, predicted step " +
                        Num(plan->step_seconds) + " s");
    } else {
      const double before = PredictStepSeconds(models, in_force);
      if (plan->step_seconds < before * (1.0 - options_.replan_threshold)) {
        batches = plan->batch_sizes;
        ++batch_replans_;
        reasons.push_back("batches replanned, predicted step " + Num(before) + " s -> " + Num(plan->step_seconds) +
                          " s");
      } else {
        batches = in_force;
      }
    }
    compute = PredictStepSeconds(models, batches);
  } else {
    if (in_force_valid) {
      batches = in_force;
    } else {
      batches = *even;
      ++batch_replans_;
      reasons.push_back("batches split evenly over " + std::to_string(n) + " workers (not all have compute samples)");
    }
    compute = measured > 0.0 ? measured : compute_seconds_;
  }
  if (compute > 0.0) compute_seconds_ = compute;

  const double density = DecideDensity(t, compute, &reasons);

  Decision d;
  d.round = round_;
  d.apply_at_step = t.step + options_.lead_steps;
  d.density = density;
  d.worker_ids = std::move(ids);
  d.batch_sizes = std::move(batches);
  if (reasons.empty()) reasons.push_back("hold");
  for (size_t i = 0; i < reasons.size(); ++i) {
    if (i > 0) d.reason += "; ";
    d.reason += reasons[i];
  }
  if (d.reason.size() > kMaxDecisionReasonBytes) d.reason.resize(kMaxDecisionReasonBytes);
  STELLA_CHECK(ValidateDecision(d).ok());
  current_ = std::move(d);
  return current_;
}

double Tuner::DecideDensity(const Telemetry& t, double compute, std::vector<std::string>* reasons) {
  const double cur = current_.density;
  const int peers = t.num_clusters - 1;
  const double budget = options_.target_fraction * compute;

  // Update the link filters (clusters that left are forgotten).
  for (auto it = links_.begin(); it != links_.end();) {
    it = it->first >= t.num_clusters ? links_.erase(it) : std::next(it);
  }
  for (auto& entry : links_) entry.second.overloaded = false;  // stale until reported
  for (const LinkTelemetry& l : t.links) {
    if (l.goodput_bytes_per_s <= 0.0) continue;
    const double sample = l.goodput_bytes_per_s;
    auto [it, fresh] = links_.try_emplace(l.cluster);
    LinkFilter& f = it->second;
    f.smoothed = fresh ? sample : options_.ewma_alpha * sample + (1.0 - options_.ewma_alpha) * f.smoothed;
    f.cap = l.cap_bytes_per_s;
    f.comm_seconds = static_cast<double>(l.bytes_sent_last_step) / sample;
    f.used_density = l.density_last_step > 0.0 ? l.density_last_step : cur;
    f.overloaded = compute > 0.0 && f.comm_seconds > options_.overload_factor * compute;
    // Trust a drop confirmed by an overloaded transfer at once, instead of
    // waiting for the EWMA to catch up.
    if (f.overloaded) f.smoothed = std::min(f.smoothed, sample);
  }

  // The feasible density r: the minimum over links.
  double r = std::numeric_limits<double>::infinity();
  int limiting = -1;
  if (peers == 0) {
    for (auto& entry : links_) entry.second.feasible = r;
  } else {
    if (!(compute > 0.0)) {
      reasons->push_back("density held: no compute time measured yet");
      return cur;
    }
    if (links_.empty()) {
      reasons->push_back("density held: no link goodput measured yet");
      return cur;
    }
    for (auto& [cluster, f] : links_) {
      const double bandwidth = f.cap > 0.0 ? std::min(f.smoothed, f.cap) : f.smoothed;
      double feasible = FeasibleDensity(options_.bytes_model, options_.tensor_sizes, peers, bandwidth, budget);
      if (f.overloaded) {
        feasible = std::min(feasible, f.used_density * budget / f.comm_seconds);
      }
      f.feasible = feasible;
      if (feasible < r) {
        r = feasible;
        limiting = cluster;
      }
    }
  }

  // The candidate: with the band's margin, on the grid, within the bounds.
  const double margin = r / (1.0 + options_.hysteresis_band);
  double candidate;
  if (margin >= options_.max_density) {
    candidate = options_.max_density;
  } else if (margin < options_.min_density) {
    candidate = options_.min_density;
  } else {
    candidate = std::max(QuantizeDown(margin, options_.grid_steps_per_decade), options_.min_density);
  }

  std::string why;
  if (limiting >= 0) {
    const LinkFilter& f = links_.at(limiting);
    why = "cluster " + std::to_string(limiting) + " link " + Num(f.smoothed * 8e-6) + " Mbit/s fits density " + Num(r) +
          " in " + Num(budget) + " s";
    if (f.overloaded) {
      why += ", overloaded: transfer " + Num(f.comm_seconds) + " s > compute " + Num(compute) + " s";
    }
  } else {
    why = "single cluster, no WAN traffic";
  }

  if (r < cur) {
    if (candidate < cur) {
      reasons->push_back("density down " + Num(cur) + " -> " + Num(candidate) + ": " + why);
      last_density_change_round_ = round_;
      ++density_changes_;
      return candidate;
    }
    reasons->push_back("density held at the minimum " + Num(cur) + " although " + why);
    return cur;
  }
  if (candidate > cur) {
    const uint64_t since =
        last_density_change_round_ ? round_ - *last_density_change_round_ : std::numeric_limits<uint64_t>::max();
    if (since >= static_cast<uint64_t>(options_.upward_cooldown_rounds)) {
      reasons->push_back("density up " + Num(cur) + " -> " + Num(candidate) + ": " + why);
      last_density_change_round_ = round_;
      ++density_changes_;
      return candidate;
    }
    reasons->push_back("density up to " + Num(candidate) + " deferred, cool-down " + std::to_string(since) + " of " +
                       std::to_string(options_.upward_cooldown_rounds) + " rounds");
  }
  return cur;
}

TunerState Tuner::state() const {
  TunerState s;
  s.round = round_;
  s.step = last_step_ < 0 ? 0 : last_step_;
  s.global_batch = global_batch_;
  s.density = current_.density;
  s.compute_seconds = compute_seconds_;
  s.density_changes = density_changes_;
  s.batch_replans = batch_replans_;
  for (const auto& [id, f] : fits_) {
    TunerState::Worker w;
    w.id = id;
    w.cluster = f.cluster;
    w.batch_size = current_.BatchSizeFor(id).value_or(0);
    w.samples = f.fit.size();
    if (std::optional<LinearModel> m = f.fit.Fit()) {
      w.a = m->a;
      w.c = m->c;
    }
    s.workers.push_back(w);
  }
  for (const auto& [cluster, f] : links_) {
    TunerState::Link l;
    l.cluster = cluster;
    l.smoothed_goodput_bytes_per_s = f.smoothed;
    l.cap_bytes_per_s = f.cap;
    l.comm_seconds = f.comm_seconds;
    l.overloaded = f.overloaded;
    l.feasible_density = f.feasible;
    s.links.push_back(l);
  }
  return s;
}

}  // namespace tuner
}  // namespace stella
