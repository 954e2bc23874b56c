#include "runtime/tuner/tuner_driver.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>

namespace stella::tuner {

StatusOr<std::unique_ptr<TunerDriver>> TunerDriver::Create(TunerDriverOptions options) {
  const TelemetryLayout& l = options.layout;
  const int workers = std::accumulate(options.cluster_workers.begin(), options.cluster_workers.end(), 0);
  if (l.world < 1 || l.clusters < 1 || workers != l.world ||
      static_cast<int>(options.cluster_workers.size()) != l.clusters) {
    return InvalidArgumentError("tuner driver: cluster_workers (" + std::to_string(options.cluster_workers.size()) +
                                " clusters, " + std::to_string(workers) + " workers) must match the layout (" +
                                std::to_string(l.clusters) + " clusters, " + std::to_string(l.world) + " workers)");
  }
  if (l.clusters > 1 && static_cast<int>(options.cluster_caps_bytes_per_s.size()) != l.clusters) {
    return InvalidArgumentError("tuner driver: need one egress cap per cluster");
  }
  if (!(options.initial_density > 0 && options.initial_density <= 1)) {
    return InvalidArgumentError("tuner driver: initial density must be in (0, 1], got " +
                                std::to_string(options.initial_density));
  }
  if (options.initial_batch < 1 || options.every_steps < 1) {
    return InvalidArgumentError("tuner driver: initial batch and every_steps must be >= 1");
  }
  return std::unique_ptr<TunerDriver>(new TunerDriver(std::move(options)));
}

TunerDriver::TunerDriver(TunerDriverOptions options)
    : options_(std::move(options)), tuner_(std::move(options_.tuner)), density_(options_.initial_density) {}

void TunerDriver::FillTelemetry(double compute_seconds, double gateway_goodput, double gateway_bytes_last_step,
                                float* control) const {
  const TelemetryLayout& t = options_.layout;
  std::fill(control + t.fixed, control + t.size(), 0.0f);
  control[t.compute(options_.global_rank)] = static_cast<float>(compute_seconds);
  control[t.goodput(options_.cluster_index)] = static_cast<float>(gateway_goodput);
  control[t.bytes(options_.cluster_index)] = static_cast<float>(gateway_bytes_last_step);
}

Telemetry TunerDriver::ReadTelemetry(int64_t step, const float* control) const {
  const TelemetryLayout& t = options_.layout;
  const double world = t.world;  // undo the mean: each slot had one writer
  Telemetry tel;
  tel.step = step;
  tel.num_clusters = t.clusters;
  int rank = 0;
  for (int c = 0; c < t.clusters; ++c) {
    for (int r = 0; r < options_.cluster_workers[static_cast<size_t>(c)]; ++r, ++rank) {
      WorkerTelemetry w;
      w.id = rank;
      w.cluster = c;
      w.batch_size = BatchAt(step, rank);
      w.compute_seconds = std::max(1e-6, control[t.compute(rank)] * world);
      tel.workers.push_back(w);
    }
    const double goodput = control[t.goodput(c)] * world;
    if (t.clusters > 1 && goodput > 0) {
      LinkTelemetry l;
      l.cluster = c;
      l.goodput_bytes_per_s = goodput;
      l.bytes_sent_last_step = static_cast<uint64_t>(std::max(0.0, std::round(control[t.bytes(c)] * world)));
      l.density_last_step = density();
      l.cap_bytes_per_s = options_.cluster_caps_bytes_per_s[static_cast<size_t>(c)];
      tel.links.push_back(l);
    }
  }
  return tel;
}

StatusOr<TunerDriver::Change> TunerDriver::Decide(int64_t step, const float* control) {
  Change change;
  if (!tuner_ || (step + 1) % options_.every_steps != 0) return change;
  auto decision = tuner_->Decide(ReadTelemetry(step, control));
  if (!decision.ok()) return decision.status().WithContext("tuner at step " + std::to_string(step));
  change.batches = decision->batch_sizes != last_batches_;
  change.density = decision->density != density();
  last_log_line_ = decision->ToLogLine();
  if (change.batches) {
    last_batches_ = decision->batch_sizes;
    history_.push_back(*decision);
    MutexLock lock(&mu_);
    pending_.push_back(*decision);
  }
  if (change.density) density_.store(decision->density);
  return change;
}

int TunerDriver::BatchForStep(int64_t step, int current) {
  MutexLock lock(&mu_);
  while (!pending_.empty() && pending_.front().apply_at_step <= step) {
    current = pending_.front().BatchSizeFor(options_.global_rank).value_or(current);
    pending_.pop_front();
  }
  return current;
}

int TunerDriver::BatchAt(int64_t step, int rank) const {
  int batch = options_.initial_batch;
  for (const auto& d : history_) {
    if (d.apply_at_step > step) break;
    batch = d.BatchSizeFor(rank).value_or(batch);
  }
  return batch;
}

TunerDriverState TunerDriver::SaveState(int64_t step) const {
  TunerDriverState s;
  s.density = density();
  if (!tuner_) return s;
  s.has_tuner = true;
  s.tuner = tuner_->SaveState();
  s.last_batches = last_batches_;
  s.history = history_;
  for (const auto& d : history_) {
    if (d.apply_at_step >= step) s.pending.push_back(d);
  }
  return s;
}

Status TunerDriver::LoadState(const TunerDriverState& state) {
  if (!tuner_ || !state.has_tuner) {
    // The tuner was switched on or off since the checkpoint: start from the
    // spec's density (and batch, which the caller restores).
    density_.store(options_.initial_density);
    return Status::Ok();
  }
  if (!(state.density > 0 && state.density <= 1)) {
    return DataLossError("tuner driver: saved density must be in (0, 1], got " + std::to_string(state.density));
  }
  STELLA_RETURN_IF_ERROR(tuner_->LoadState(state.tuner));
  density_.store(state.density);
  last_batches_ = state.last_batches;
  history_ = state.history;
  MutexLock lock(&mu_);
  pending_.assign(state.pending.begin(), state.pending.end());
  return Status::Ok();
}

}  // namespace stella::tuner
