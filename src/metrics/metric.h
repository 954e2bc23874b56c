// Metric value types: Counter, Gauge and Histogram.
//
// These are the objects hot paths update. They are normally created through a
// Family (see registry.h), which hands out references that stay valid for the
// life of the Registry; take the reference once and keep it rather than
// looking the series up per event.
//
// Thread safety: every method of Counter, Gauge and Histogram is thread-safe
// and lock-free (atomics only), so any number of threads may update and read
// the same metric concurrently. Readers see each value atomically; a
// Histogram snapshot taken during concurrent Observe() calls may have a _sum
// that lags its counts by the in-flight observations, but its bucket counts
// and count are always mutually consistent.
#ifndef STELLA_SRC_METRICS_METRIC_H_
#define STELLA_SRC_METRICS_METRIC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace stella {
namespace metrics {

// A monotonically increasing value (events, bytes, errors). Exposed with
// TYPE counter. By Prometheus convention the family name must end in
// "_total"; Registry::AddCounter enforces this.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `v`. A counter never goes down, so a negative or NaN `v` is a
  // programmer error and aborts via STELLA_CHECK.
  void Increment(double v = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that can go up and down (queue depth, temperature, a timestamp).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Increment(double v = 1.0);
  void Decrement(double v = 1.0) { Increment(-v); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A point-in-time copy of a Histogram's state.
struct HistogramSnapshot {
  // Upper bounds as given at construction (exclusive of +Inf).
  std::vector<double> bounds;
  // cumulative_counts[i] = observations <= bounds[i]; the last element
  // (index bounds.size()) is the +Inf bucket and equals `count`.
  std::vector<uint64_t> cumulative_counts;
  double sum = 0.0;
  uint64_t count = 0;
};

// Counts observations into fixed buckets (latencies, sizes). Buckets are
// upper-inclusive ("le"), as Prometheus defines them; an implicit +Inf bucket
// catches everything else, NaN included.
class Histogram {
 public:
  // `bounds` must be finite and strictly increasing (may be empty: then only
  // the +Inf bucket exists). Violations abort via STELLA_CHECK, since bucket
  // layouts are fixed in code, not read from input.
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);
  HistogramSnapshot Snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

  // `count` bounds start, start*factor, start*factor^2, ...
  // Requires start > 0, factor > 1, count >= 1 (STELLA_CHECK).
  static std::vector<double> ExponentialBuckets(double start, double factor, size_t count);
  // `count` bounds start, start+width, ... Requires width > 0, count >= 1.
  static std::vector<double> LinearBuckets(double start, double width, size_t count);

 private:
  const std::vector<double> bounds_;
  // Non-cumulative per-bucket counts; index bounds_.size() is +Inf. A
  // unique_ptr array because std::atomic is neither copyable nor movable.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

}  // namespace metrics
}  // namespace stella

#endif  // STELLA_SRC_METRICS_METRIC_H_
