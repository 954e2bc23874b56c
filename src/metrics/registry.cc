#include "src/metrics/registry.h"

#include <cstdio>
#include <string_view>

#include "src/base/status.h"
#include "src/metrics/text_format.h"

namespace stella {
namespace metrics {
namespace {

// The sample names a family puts on the wire; two families must not share
// any, or their series would be indistinguishable to Prometheus.
std::vector<std::string> ExposedNames(const std::string& name, MetricType type) {
  if (type == MetricType::kHistogram) return {name + "_bucket", name + "_sum", name + "_count"};
  return {name};
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Appends `name{k="v",...,extra_name="extra_value"} value\n`; the extra label
// is how histogram buckets add "le" after the series' own labels.
void AppendSample(std::string* out, const std::string& name, const Labels& labels, const char* extra_name,
                  const std::string& extra_value, double value) {
  *out += name;
  if (!labels.empty() || extra_name != nullptr) {
    *out += '{';
    bool first = true;
    for (const auto& [label, label_value] : labels) {
      if (!first) *out += ',';
      first = false;
      *out += label;
      *out += "=\"";
      *out += EscapeLabelValue(label_value);
      *out += '"';
    }
    if (extra_name != nullptr) {
      if (!first) *out += ',';
      *out += extra_name;
      *out += "=\"";
      *out += EscapeLabelValue(extra_value);
      *out += '"';
    }
    *out += '}';
  }
  *out += ' ';
  *out += FormatValue(value);
  *out += '\n';
}

void AppendSeries(std::string* out, const std::string& name, const Labels& labels, const Counter& counter) {
  AppendSample(out, name, labels, nullptr, "", counter.Value());
}

void AppendSeries(std::string* out, const std::string& name, const Labels& labels, const Gauge& gauge) {
  AppendSample(out, name, labels, nullptr, "", gauge.Value());
}

void AppendSeries(std::string* out, const std::string& name, const Labels& labels, const Histogram& histogram) {
  const HistogramSnapshot snapshot = histogram.Snapshot();
  const std::string bucket_name = name + "_bucket";
  for (size_t i = 0; i < snapshot.bounds.size(); ++i) {
    AppendSample(out, bucket_name, labels, "le", FormatValue(snapshot.bounds[i]),
                 static_cast<double>(snapshot.cumulative_counts[i]));
  }
  AppendSample(out, bucket_name, labels, "le", "+Inf", static_cast<double>(snapshot.count));
  AppendSample(out, name + "_sum", labels, nullptr, "", snapshot.sum);
  AppendSample(out, name + "_count", labels, nullptr, "", static_cast<double>(snapshot.count));
}

template <typename T>
std::unique_ptr<T> MakeMetric(const std::vector<double>& bounds) {
  return std::make_unique<T>();
}

template <>
std::unique_ptr<Histogram> MakeMetric<Histogram>(const std::vector<double>& bounds) {
  return std::make_unique<Histogram>(bounds);
}

}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

template <typename T>
Family<T>::Family(std::string name, std::string help, MetricType type, std::vector<double> bounds)
    : FamilyBase(std::move(name), std::move(help), type), bounds_(std::move(bounds)) {}

template <typename T>
T& Family<T>::Add(const Labels& labels) {
  for (const auto& [label, value] : labels) {
    if (!IsValidLabelName(label) || (type() == MetricType::kHistogram && label == "le")) {
      std::fprintf(stderr, "stella metrics: invalid label name \"%s\" for metric %s\n", label.c_str(), name().c_str());
      STELLA_CHECK(false && "invalid label name");
    }
  }
  MutexLock lock(&mutex_);
  std::unique_ptr<T>& slot = metrics_[labels];
  if (slot == nullptr) slot = MakeMetric<T>(bounds_);
  return *slot;
}

template <typename T>
size_t Family<T>::size() const {
  MutexLock lock(&mutex_);
  return metrics_.size();
}

template <typename T>
void Family<T>::AppendTo(std::string* out) const {
  MutexLock lock(&mutex_);
  if (metrics_.empty()) return;
  *out += "# HELP ";
  *out += name();
  *out += ' ';
  *out += EscapeHelp(help());
  *out += "\n# TYPE ";
  *out += name();
  *out += ' ';
  *out += MetricTypeName(type());
  *out += '\n';
  for (const auto& [labels, metric] : metrics_) AppendSeries(out, name(), labels, *metric);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

FamilyBase* Registry::AddFamily(const std::string& name, const std::string& help, MetricType type,
                                std::vector<double> bounds) {
  if (!IsValidMetricName(name) || (type == MetricType::kCounter && !EndsWith(name, "_total"))) {
    std::fprintf(stderr, "stella metrics: invalid %s name \"%s\" (want [a-zA-Z_:][a-zA-Z0-9_:]*%s)\n",
                 MetricTypeName(type), name.c_str(), type == MetricType::kCounter ? " ending in _total" : "");
    STELLA_CHECK(false && "invalid metric name");
  }
  MutexLock lock(&mutex_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    FamilyBase* existing = it->second.get();
    const bool same_bounds =
        type != MetricType::kHistogram || static_cast<Family<Histogram>*>(existing)->bounds_ == bounds;
    if (existing->type() != type || !same_bounds) {
      std::fprintf(stderr, "stella metrics: %s re-registered as %s with a different layout\n", name.c_str(),
                   MetricTypeName(type));
      STELLA_CHECK(false && "conflicting metric family registration");
    }
    return existing;
  }
  for (const std::string& exposed : ExposedNames(name, type)) {
    for (const auto& [other_name, other] : families_) {
      for (const std::string& other_exposed : ExposedNames(other_name, other->type())) {
        if (exposed == other_exposed) {
          std::fprintf(stderr, "stella metrics: family %s exposes %s, which family %s already does\n", name.c_str(),
                       exposed.c_str(), other_name.c_str());
          STELLA_CHECK(false && "metric sample name clash");
        }
      }
    }
  }
  std::unique_ptr<FamilyBase> family;
  switch (type) {
    case MetricType::kCounter: family.reset(new Family<Counter>(name, help, type, {})); break;
    case MetricType::kGauge: family.reset(new Family<Gauge>(name, help, type, {})); break;
    case MetricType::kHistogram: {
      // Validates the bounds once here (the Histogram constructor checks),
      // so that a bad layout aborts at registration, not at first Add().
      Histogram validate(bounds);
      family.reset(new Family<Histogram>(name, help, type, std::move(bounds)));
      break;
    }
  }
  FamilyBase* raw = family.get();
  families_.emplace(name, std::move(family));
  return raw;
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help) {
  return *static_cast<Family<Counter>*>(AddFamily(name, help, MetricType::kCounter, {}));
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help) {
  return *static_cast<Family<Gauge>*>(AddFamily(name, help, MetricType::kGauge, {}));
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds) {
  return *static_cast<Family<Histogram>*>(AddFamily(name, help, MetricType::kHistogram, std::move(bounds)));
}

std::string Registry::Serialize() const {
  std::string out;
  MutexLock lock(&mutex_);
  for (const auto& [name, family] : families_) family->AppendTo(&out);
  return out;
}

}  // namespace metrics
}  // namespace stella
