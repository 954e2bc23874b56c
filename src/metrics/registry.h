// Registry and Family: Stella's Prometheus object model (after prometheus-cpp).
//
// A Registry owns Families; a Family (name, help, type) owns one metric per
// label set. Callers register a family once, Add() the label sets they need
// and keep the returned Counter&/Gauge&/Histogram& for the hot path: those
// references stay valid until the Registry is destroyed (metrics are never
// removed). Registry::Serialize() renders everything in the Prometheus text
// exposition format 0.0.4; Exposer (exposer.h) serves it over HTTP.
//
//   Registry registry;
//   Counter& sent = registry.AddCounter("stella_bytes_sent_total", "Bytes sent.")
//                       .Add({{"peer", "cluster-b"}});
//   sent.Increment(4096);
//
// Names are validated when a family or series is created: an invalid metric
// or label name, a counter not ending in "_total", or two families whose
// exposed sample names would clash are programmer errors and abort via
// STELLA_CHECK. Label values and help text may be arbitrary UTF-8; they are
// escaped on output.
//
// Thread safety: Registry and Family are thread-safe. Registration and
// Serialize() take mutexes (lock order: Registry::mutex_, then a Family's
// mutex_); metric updates through the returned references take no lock.
#ifndef STELLA_SRC_METRICS_REGISTRY_H_
#define STELLA_SRC_METRICS_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/base/mutex.h"
#include "src/metrics/metric.h"

namespace stella {
namespace metrics {

// Label name -> value. A std::map so that series order, and with it the
// exposition output, is deterministic.
using Labels = std::map<std::string, std::string>;

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge", "histogram": the spelling used on # TYPE lines.
const char* MetricTypeName(MetricType type);

// The type-independent part of a Family, so that the Registry can keep all
// families in one map sorted by name. Not meant to be used directly.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }

 protected:
  FamilyBase(std::string name, std::string help, MetricType type)
      : name_(std::move(name)), help_(std::move(help)), type_(type) {}

 private:
  friend class Registry;
  // Appends "# HELP", "# TYPE" and all samples; appends nothing when the
  // family has no series yet. Takes this family's mutex.
  virtual void AppendTo(std::string* out) const = 0;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
};

// All series of one metric name. T is Counter, Gauge or Histogram.
template <typename T>
class Family final : public FamilyBase {
 public:
  // Returns the metric for `labels`, creating it (at zero) on first use; the
  // same label set always yields the same object. Label names must be valid
  // (and not "le" for histograms) or this aborts. Takes a mutex: call it at
  // setup, not per event.
  T& Add(const Labels& labels);

  // Number of series created so far.
  size_t size() const;

 private:
  friend class Registry;
  Family(std::string name, std::string help, MetricType type, std::vector<double> bounds);
  void AppendTo(std::string* out) const override;

  // Bucket bounds shared by every series; empty unless T is Histogram.
  const std::vector<double> bounds_;
  mutable Mutex mutex_;
  // unique_ptr keeps metric addresses stable across insertions.
  std::map<Labels, std::unique_ptr<T>> metrics_ GUARDED_BY(mutex_);
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each returns the family called `name`, creating it on first use. Asking
  // again for an existing name with the same type (and, for histograms, the
  // same bounds) returns the existing family; a different type or bounds
  // aborts. Counter names must end in "_total" (Prometheus convention;
  // promtool flags counters without it).
  Family<Counter>& AddCounter(const std::string& name, const std::string& help);
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help);
  // `bounds`: finite, strictly increasing upper bounds; +Inf is implicit.
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  // The whole registry in text exposition format 0.0.4: families sorted by
  // name, series sorted by label set, histogram buckets in bound order.
  // Families without series are omitted.
  std::string Serialize() const;

 private:
  // Shared by the Add* methods; takes mutex_.
  FamilyBase* AddFamily(const std::string& name, const std::string& help, MetricType type, std::vector<double> bounds);

  mutable Mutex mutex_;
  // Families are never removed, so references handed out stay valid for
  // the Registry's lifetime.
  std::map<std::string, std::unique_ptr<FamilyBase>> families_ GUARDED_BY(mutex_);
};

}  // namespace metrics
}  // namespace stella

#endif  // STELLA_SRC_METRICS_REGISTRY_H_
