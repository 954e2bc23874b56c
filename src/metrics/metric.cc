#include "src/metrics/metric.h"

#include <algorithm>
#include <cmath>

#include "src/base/status.h"

namespace stella {
namespace metrics {
namespace {

// std::atomic<double>::fetch_add is C++20; a CAS loop is the C++17 spelling
// and is still lock-free on every platform we target.
void AtomicAdd(std::atomic<double>* target, double v) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Counter::Increment(double v) {
  STELLA_CHECK(v >= 0.0);  // also rejects NaN
  AtomicAdd(&value_, v);
}

void Gauge::Increment(double v) { AtomicAdd(&value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    STELLA_CHECK(std::isfinite(bounds_[i]));
    if (i > 0) STELLA_CHECK(bounds_[i - 1] < bounds_[i]);
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // First bound >= v: the smallest "le" bucket holding v. NaN compares false
  // against everything and so lands in +Inf.
  size_t index = bounds_.size();
  if (!std::isnan(v)) {
    index = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  }
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(&sum_, v);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.bounds = bounds_;
  snapshot.cumulative_counts.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts[i] = running;
  }
  // Deriving count from the buckets keeps _count == the +Inf bucket even
  // while other threads observe, which Prometheus relies on.
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> Histogram::ExponentialBuckets(double start, double factor, size_t count) {
  STELLA_CHECK(start > 0.0);
  STELLA_CHECK(factor > 1.0);
  STELLA_CHECK(count >= 1);
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (size_t i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

std::vector<double> Histogram::LinearBuckets(double start, double width, size_t count) {
  STELLA_CHECK(width > 0.0);
  STELLA_CHECK(count >= 1);
  std::vector<double> bounds;
  bounds.reserve(count);
  for (size_t i = 0; i < count; ++i) bounds.push_back(start + width * static_cast<double>(i));
  return bounds;
}

}  // namespace metrics
}  // namespace stella
