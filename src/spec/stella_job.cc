// StellaJob value semantics and semantic validation. Parsing lives in
// yaml_parse.cc, emitting in yaml_emit.cc.
#include "src/spec/stella_job.h"

#include <cmath>
#include <tuple>
#include <unordered_map>

#include "src/base/dns_name.h"
#include "src/spec/internal/enum_names.h"
#include "src/spec/internal/scalar.h"

namespace stella::spec {

using internal::EnumNames;
using internal::FormatDouble;
using internal::IsValidEnum;
using internal::Quote;

namespace {

template <typename E>
const char* EnumToString(E v) {
  STELLA_CHECK(IsValidEnum(v));
  return EnumNames<E>::kNames[static_cast<size_t>(v)];
}

template <typename E>
bool EnumFromString(std::string_view text, E* out) {
  for (size_t i = 0; i < EnumNames<E>::kCount; ++i) {
    if (text == EnumNames<E>::kNames[i]) {
      *out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

std::string Join(const std::string& prefix, const std::string& field) { return prefix + "." + field; }

std::string Index(const std::string& prefix, size_t i) { return prefix + "[" + std::to_string(i) + "]"; }

std::string MapKey(const std::string& prefix, const std::string& key) { return prefix + "[" + Quote(key) + "]"; }

// A bound of a numeric range; `inclusive` picks >= / <= over > / <.
struct Bound {
  double value;
  bool inclusive;
};

// Collects FieldErrors; each check returns whether the value passed.
class Checker {
 public:
  void Add(std::string path, std::string message) { errors_.push_back({std::move(path), std::move(message)}); }

  bool Int(const std::string& path, int64_t v, std::optional<int64_t> min, std::optional<int64_t> max) {
    if (min && v < *min) {
      Add(path, "must be >= " + std::to_string(*min) + ", got " + std::to_string(v));
      return false;
    }
    if (max && v > *max) {
      Add(path, "must be <= " + std::to_string(*max) + ", got " + std::to_string(v));
      return false;
    }
    return true;
  }

  bool Double(const std::string& path, double v, std::optional<Bound> lo, std::optional<Bound> hi) {
    if (!std::isfinite(v)) {
      Add(path, "must be a finite number, got " + FormatDouble(v));
      return false;
    }
    if (lo && !(lo->inclusive ? v >= lo->value : v > lo->value)) {
      Add(path, std::string("must be ") + (lo->inclusive ? ">= " : "> ") + FormatDouble(lo->value) + ", got " +
                    FormatDouble(v));
      return false;
    }
    if (hi && !(hi->inclusive ? v <= hi->value : v < hi->value)) {
      Add(path, std::string("must be ") + (hi->inclusive ? "<= " : "< ") + FormatDouble(hi->value) + ", got " +
                    FormatDouble(v));
      return false;
    }
    return true;
  }

  template <size_t N>
  void OneOf(const std::string& path, const std::string& v, const char* const (&allowed)[N]) {
    if (v.empty()) {
      Add(path, "required field is missing");
      return;
    }
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return;
      if (!list.empty()) list += ", ";
      list += a;
    }
    Add(path, "must be one of " + list + ", got " + Quote(v));
  }

  template <typename E>
  void Enum(const std::string& path, E v) {
    if (!IsValidEnum(v)) {
      Add(path, "must be one of " + internal::AllowedNames<E>() + ", got enum value " +
                    std::to_string(static_cast<long long>(v)));
    }
  }

  void Dns1123Label(const std::string& path, const std::string& v) {
    if (v.empty()) {
      Add(path, "required field is missing");
    } else if (!IsDns1123Label(v)) {
      Add(path,
          "must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a "
          "letter or digit, at most 63 characters), got " +
              Quote(v));
    }
  }

  void NonEmpty(const std::string& path, const std::string& v) {
    if (v.empty()) Add(path, "must not be empty, got \"\"");
  }

  std::vector<FieldError> Take() { return std::move(errors_); }

 private:
  std::vector<FieldError> errors_;
};

// Kubernetes resource.Quantity syntax: a signed decimal number followed by a
// binary (Ki..Ei) or decimal (n u m "" k M G T P E) suffix or an exponent.
bool IsQuantity(std::string_view q) {
  size_t i = 0;
  if (i < q.size() && (q[i] == '+' || q[i] == '-')) ++i;
  size_t digits = 0, dots = 0;
  for (; i < q.size() && ((q[i] >= '0' && q[i] <= '9') || q[i] == '.'); ++i) {
    (q[i] == '.' ? dots : digits)++;
  }
  if (digits == 0 || dots > 1) return false;
  std::string_view suffix = q.substr(i);
  static constexpr std::string_view kSuffixes[] = {"",  "n", "u",  "m",  "k",  "M",  "G",  "T",
                                                   "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  for (std::string_view s : kSuffixes) {
    if (suffix == s) return true;
  }
  if (suffix[0] != 'e' && suffix[0] != 'E') return false;
  size_t j = 1;
  if (j < suffix.size() && (suffix[j] == '+' || suffix[j] == '-')) ++j;
  if (j == suffix.size()) return false;
  for (; j < suffix.size(); ++j) {
    if (suffix[j] < '0' || suffix[j] > '9') return false;
  }
  return true;
}

void CheckQuantities(Checker& c, const std::string& path, const StringMap& m) {
  for (const auto& [name, quantity] : m) {
    if (name.empty()) c.Add(path, "resource names must not be empty");
    if (!IsQuantity(quantity)) {
      c.Add(MapKey(path, name),
            "must be a Kubernetes quantity such as \"2\", \"500m\" or \"1Gi\", got " + Quote(quantity));
    }
  }
}

// Exactly one of name and torchscript; the zoo classifies Fashion-MNIST.
void CheckModel(Checker& c, const ModelSpec& m, DatasetFormat format) {
  c.Enum("spec.model.task", m.task);
  c.Int("spec.model.hidden", m.hidden, 0, std::nullopt);
  if (!m.name.empty() && !m.torchscript.empty()) {
    c.Add("spec.model.torchscript", "must not be set together with spec.model.name (" + Quote(m.name) +
                                        "): pick the built-in model or your own, got " + Quote(m.torchscript));
    return;
  }
  if (!m.torchscript.empty()) {
    if (m.hidden != 0) {
      c.Add("spec.model.hidden",
            "sets a built-in model's width; not used with spec.model.torchscript, got " + std::to_string(m.hidden));
    }
    return;
  }
  if (m.name.empty()) {
    c.Add("spec.model.name", "required field is missing (or set spec.model.torchscript to your own model)");
    return;
  }
  c.OneOf("spec.model.name", m.name, kModelNames);
  if (IsValidEnum(m.task) && m.task != ModelTask::kClassification) {
    c.Add("spec.model.task",
          "built-in models are classifiers; task " + std::string(ToString(m.task)) + " needs spec.model.torchscript");
  }
  if (format != DatasetFormat::kIdx) {
    c.Add("spec.model.name", "built-in models train on spec.dataset.format idx (Fashion-MNIST), got format " +
                                 std::string(ToString(format)) + "; use spec.model.torchscript for your own data");
  }
}

// Each format's files; a field another format uses must stay empty.
void CheckDataset(Checker& c, const DatasetSpec& d, ModelTask task) {
  c.Enum("spec.dataset.format", d.format);
  if (!IsValidEnum(d.format)) return;
  const std::string format = ToString(d.format);
  c.NonEmpty("spec.dataset.path", d.path);
  c.Int("spec.dataset.sequenceLength", d.sequence_length, 1, 65536);
  auto need = [&](const char* field, const std::string& v) {
    if (v.empty()) c.Add(std::string("spec.dataset.") + field, "required with format " + format + ", got \"\"");
  };
  auto forbid = [&](const char* field, const std::string& v) {
    if (!v.empty()) c.Add(std::string("spec.dataset.") + field, "not used with format " + format + ", got " + Quote(v));
  };
  if (d.format == DatasetFormat::kIdx) {
    c.OneOf("spec.dataset.name", d.name, kDatasetNames);
    forbid("validationPath", d.validation_path);
  } else {
    forbid("name", d.name);
    need("validationPath", d.validation_path);
  }
  if (d.format == DatasetFormat::kNpy) {
    need("labelsPath", d.labels_path);
    need("validationLabelsPath", d.validation_labels_path);
  } else {
    forbid("labelsPath", d.labels_path);
    forbid("validationLabelsPath", d.validation_labels_path);
  }
  const bool tokens = d.format == DatasetFormat::kTokens;
  if (IsValidEnum(task) && tokens != (task == ModelTask::kLanguageModel)) {
    c.Add("spec.model.task", std::string(tokens ? "must be language-model with spec.dataset.format tokens"
                                                : "language-model needs spec.dataset.format tokens") +
                                 ", got task " + ToString(task) + " with format " + format);
  }
}

void CheckTraining(Checker& c, const TrainingSpec& t) {
  const std::string p = "spec.training";
  bool steps_ok = c.Int(Join(p, "steps"), t.steps, 0, std::nullopt);
  bool epochs_ok = c.Double(Join(p, "epochs"), t.epochs, Bound{0, true}, std::nullopt);
  c.Double(Join(p, "targetAccuracy"), t.target_accuracy, Bound{0, true}, Bound{1, true});
  c.Int(Join(p, "evalEvery"), t.eval_every, 1, std::nullopt);
  if (steps_ok && epochs_ok) {
    if (t.steps > 0 && t.epochs > 0) {
      c.Add(p, "set only one of steps and epochs, got steps=" + std::to_string(t.steps) +
                   " and epochs=" + FormatDouble(t.epochs));
    } else if (t.steps == 0 && t.epochs == 0) {
      c.Add(p, "set spec.training.steps or spec.training.epochs, got neither");
    }
  }
}

void CheckSync(Checker& c, const SyncSpec& s) {
  const std::string p = "spec.sync";
  c.Enum(Join(p, "mode"), s.mode);
  c.Enum(Join(p, "compressor"), s.compressor);
  c.Enum(Join(p, "valuePrecision"), s.value_precision);
  const Bound above_zero{0, false}, at_most_one{1, true};
  bool min_ok = c.Double(Join(p, "minDensity"), s.min_density, above_zero, at_most_one);
  bool density_ok = c.Double(Join(p, "density"), s.density, above_zero, at_most_one);
  bool max_ok = c.Double(Join(p, "maxDensity"), s.max_density, above_zero, at_most_one);
  // The ordering errors land on density, the field the tuner starts from.
  if (density_ok && min_ok && s.density < s.min_density) {
    c.Add(Join(p, "density"),
          "must be >= spec.sync.minDensity (" + FormatDouble(s.min_density) + "), got " + FormatDouble(s.density));
  } else if (density_ok && max_ok && s.density > s.max_density) {
    c.Add(Join(p, "density"),
          "must be <= spec.sync.maxDensity (" + FormatDouble(s.max_density) + "), got " + FormatDouble(s.density));
  } else if (!density_ok && min_ok && max_ok && s.min_density > s.max_density) {
    c.Add(Join(p, "minDensity"),
          "must be <= spec.sync.maxDensity (" + FormatDouble(s.max_density) + "), got " + FormatDouble(s.min_density));
  }
  c.Int(Join(p, "staleness"), s.staleness, 0, 8);
}

void CheckToleration(Checker& c, const std::string& p, const Toleration& t) {
  c.Enum(Join(p, "operator"), t.op);
  c.Enum(Join(p, "effect"), t.effect);
  // The rules the Kubernetes API server applies to core/v1 Toleration.
  if (t.key.empty() && t.op != TolerationOperator::kExists) {
    c.Add(Join(p, "operator"), "must be Exists when key is empty, got Equal");
  }
  if (t.op == TolerationOperator::kExists && !t.value.empty()) {
    c.Add(Join(p, "value"), "must be empty when operator is Exists, got " + Quote(t.value));
  }
  if (t.toleration_seconds && t.effect != TolerationEffect::kNoExecute) {
    c.Add(Join(p, "tolerationSeconds"),
          std::string("requires effect NoExecute, got effect ") +
              (IsValidEnum(t.effect) ? Quote(EnumToString(t.effect)) : std::string("invalid")));
  }
}

void CheckCluster(Checker& c, const std::string& p, const ClusterSpec& k) {
  c.Dns1123Label(Join(p, "name"), k.name);
  c.Int(Join(p, "workers"), k.workers, 1, 1024);
  c.Int(Join(p, "devicesPerWorker"), k.devices_per_worker, 0, std::nullopt);
  c.Double(Join(p, "wan.bandwidthMbps"), k.wan.bandwidth_mbps, Bound{0, true}, std::nullopt);
  c.Double(Join(p, "wan.latencyMs"), k.wan.latency_ms, Bound{0, true}, Bound{10000, true});
  if (k.kubeconfig_secret) {
    if (k.kubeconfig_secret->name.empty()) {
      c.Add(Join(p, "kubeconfigSecret.name"), "required field is missing");
    }
    c.NonEmpty(Join(p, "kubeconfigSecret.key"), k.kubeconfig_secret->key);
  }
  CheckQuantities(c, Join(p, "resources.limits"), k.resources.limits);
  CheckQuantities(c, Join(p, "resources.requests"), k.resources.requests);
  for (size_t i = 0; i < k.tolerations.size(); ++i) {
    CheckToleration(c, Index(Join(p, "tolerations"), i), k.tolerations[i]);
  }
  c.Enum(Join(p, "gateway.type"), k.gateway.type);
  c.Int(Join(p, "gateway.port"), k.gateway.port, 1, 65535);
}

}  // namespace

const char* ToString(OptimizerKind v) { return EnumToString(v); }
const char* ToString(SyncMode v) { return EnumToString(v); }
const char* ToString(CompressorKind v) { return EnumToString(v); }
const char* ToString(ValuePrecision v) { return EnumToString(v); }
const char* ToString(ModelTask v) { return EnumToString(v); }
const char* ToString(DatasetFormat v) { return EnumToString(v); }
const char* ToString(TolerationOperator v) { return EnumToString(v); }
const char* ToString(TolerationEffect v) { return EnumToString(v); }
const char* ToString(GatewayType v) { return EnumToString(v); }
const char* ToString(RestartPolicy v) { return EnumToString(v); }

bool ParseEnum(std::string_view t, OptimizerKind* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, SyncMode* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, CompressorKind* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, ValuePrecision* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, ModelTask* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, DatasetFormat* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, TolerationOperator* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, TolerationEffect* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, GatewayType* out) { return EnumFromString(t, out); }
bool ParseEnum(std::string_view t, RestartPolicy* out) { return EnumFromString(t, out); }

int StellaJob::TotalWorkers() const {
  int total = 0;
  for (const ClusterSpec& c : spec.clusters) total += c.workers;
  return total;
}

bool operator==(const ObjectMeta& a, const ObjectMeta& b) {
  return std::tie(a.name, a.namespace_name, a.labels, a.annotations, a.generation, a.uid, a.resource_version) ==
         std::tie(b.name, b.namespace_name, b.labels, b.annotations, b.generation, b.uid, b.resource_version);
}
bool operator==(const ModelSpec& a, const ModelSpec& b) {
  return std::tie(a.name, a.hidden, a.torchscript, a.task) == std::tie(b.name, b.hidden, b.torchscript, b.task);
}
bool operator==(const DatasetSpec& a, const DatasetSpec& b) {
  return std::tie(a.format, a.name, a.path, a.labels_path, a.validation_path, a.validation_labels_path,
                  a.sequence_length) == std::tie(b.format, b.name, b.path, b.labels_path, b.validation_path,
                                                 b.validation_labels_path, b.sequence_length);
}
bool operator==(const OptimizerSpec& a, const OptimizerSpec& b) {
  return std::tie(a.name, a.learning_rate, a.momentum, a.nesterov, a.weight_decay, a.beta1, a.beta2, a.epsilon) ==
         std::tie(b.name, b.learning_rate, b.momentum, b.nesterov, b.weight_decay, b.beta1, b.beta2, b.epsilon);
}
bool operator==(const TrainingSpec& a, const TrainingSpec& b) {
  return std::tie(a.steps, a.epochs, a.target_accuracy, a.eval_every, a.seed) ==
         std::tie(b.steps, b.epochs, b.target_accuracy, b.eval_every, b.seed);
}
bool operator==(const SyncSpec& a, const SyncSpec& b) {
  return std::tie(a.mode, a.density, a.min_density, a.max_density, a.compressor, a.value_precision, a.staleness,
                  a.error_feedback, a.momentum_correction,
                  a.tuner) == std::tie(b.mode, b.density, b.min_density, b.max_density, b.compressor, b.value_precision,
                                       b.staleness, b.error_feedback, b.momentum_correction, b.tuner);
}
bool operator==(const WanSpec& a, const WanSpec& b) {
  return std::tie(a.bandwidth_mbps, a.latency_ms) == std::tie(b.bandwidth_mbps, b.latency_ms);
}
bool operator==(const SecretKeyRef& a, const SecretKeyRef& b) {
  return std::tie(a.name, a.key) == std::tie(b.name, b.key);
}
bool operator==(const ResourceRequirements& a, const ResourceRequirements& b) {
  return std::tie(a.limits, a.requests) == std::tie(b.limits, b.requests);
}
bool operator==(const Toleration& a, const Toleration& b) {
  return std::tie(a.key, a.op, a.value, a.effect, a.toleration_seconds) ==
         std::tie(b.key, b.op, b.value, b.effect, b.toleration_seconds);
}
bool operator==(const GatewaySpec& a, const GatewaySpec& b) {
  return std::tie(a.type, a.port) == std::tie(b.type, b.port);
}
bool operator==(const ClusterSpec& a, const ClusterSpec& b) {
  return std::tie(a.name, a.workers, a.devices_per_worker, a.wan, a.kubeconfig_secret, a.image, a.resources,
                  a.node_selector, a.tolerations, a.gateway) == std::tie(b.name, b.workers, b.devices_per_worker, b.wan,
                                                                         b.kubeconfig_secret, b.image, b.resources,
                                                                         b.node_selector, b.tolerations, b.gateway);
}
bool operator==(const MetricsSpec& a, const MetricsSpec& b) { return a.port == b.port; }
bool operator==(const CheckpointSpec& a, const CheckpointSpec& b) {
  return std::tie(a.path, a.interval_steps, a.claim_name) == std::tie(b.path, b.interval_steps, b.claim_name);
}
bool operator==(const RunPolicy& a, const RunPolicy& b) {
  return std::tie(a.suspend, a.backoff_limit, a.active_deadline_seconds, a.ttl_seconds_after_finished,
                  a.restart_policy) == std::tie(b.suspend, b.backoff_limit, b.active_deadline_seconds,
                                                b.ttl_seconds_after_finished, b.restart_policy);
}
bool operator==(const JobSpec& a, const JobSpec& b) {
  return std::tie(a.model, a.dataset, a.optimizer, a.batch_size, a.training, a.sync, a.clusters, a.metrics,
                  a.checkpoint, a.run_policy) == std::tie(b.model, b.dataset, b.optimizer, b.batch_size, b.training,
                                                          b.sync, b.clusters, b.metrics, b.checkpoint, b.run_policy);
}
bool operator==(const JobCondition& a, const JobCondition& b) {
  return std::tie(a.type, a.status, a.reason, a.message, a.observed_generation, a.last_transition_time) ==
         std::tie(b.type, b.status, b.reason, b.message, b.observed_generation, b.last_transition_time);
}
bool operator==(const WorkerCounts& a, const WorkerCounts& b) {
  return std::tie(a.pending, a.running, a.ready, a.succeeded, a.failed) ==
         std::tie(b.pending, b.running, b.ready, b.succeeded, b.failed);
}
bool operator==(const ClusterStatus& a, const ClusterStatus& b) {
  return std::tie(a.name, a.workers, a.reachable, a.message, a.gateway_address, a.gateway_node, a.counts) ==
         std::tie(b.name, b.workers, b.reachable, b.message, b.gateway_address, b.gateway_node, b.counts);
}
bool operator==(const JobStatus& a, const JobStatus& b) {
  return std::tie(a.phase, a.observed_generation, a.step, a.samples_per_second, a.density, a.message, a.batch_size,
                  a.conditions, a.clusters, a.clusters_ready, a.start_time, a.first_start_time, a.completion_time,
                  a.restarts, a.certificates_rotation) ==
         std::tie(b.phase, b.observed_generation, b.step, b.samples_per_second, b.density, b.message, b.batch_size,
                  b.conditions, b.clusters, b.clusters_ready, b.start_time, b.first_start_time, b.completion_time,
                  b.restarts, b.certificates_rotation);
}
bool operator==(const StellaJob& a, const StellaJob& b) {
  return std::tie(a.api_version, a.kind, a.metadata, a.spec, a.status) ==
         std::tie(b.api_version, b.kind, b.metadata, b.spec, b.status);
}
bool operator==(const FieldError& a, const FieldError& b) {
  return std::tie(a.path, a.message) == std::tie(b.path, b.message);
}

std::vector<FieldError> ValidateStellaJob(const StellaJob& job) {
  Checker c;
  if (job.api_version.empty()) {
    c.Add("apiVersion", "required field is missing");
  } else if (job.api_version != kApiVersion) {
    c.Add("apiVersion", "must be " + Quote(kApiVersion) + ", got " + Quote(job.api_version));
  }
  if (job.kind.empty()) {
    c.Add("kind", "required field is missing");
  } else if (job.kind != kKind) {
    c.Add("kind", "must be " + Quote(kKind) + ", got " + Quote(job.kind));
  }

  const ObjectMeta& m = job.metadata;
  c.Dns1123Label("metadata.name", m.name);
  if (!IsDns1123Label(m.namespace_name)) {
    c.Add("metadata.namespace", "must be a DNS-1123 label, got " + Quote(m.namespace_name));
  }
  if (m.generation) c.Int("metadata.generation", *m.generation, 0, std::nullopt);

  const JobSpec& s = job.spec;
  CheckModel(c, s.model, s.dataset.format);
  CheckDataset(c, s.dataset, s.model.task);

  const OptimizerSpec& o = s.optimizer;
  c.Enum("spec.optimizer.name", o.name);
  c.Double("spec.optimizer.learningRate", o.learning_rate, Bound{0, false}, std::nullopt);
  c.Double("spec.optimizer.momentum", o.momentum, Bound{0, true}, Bound{1, false});
  c.Double("spec.optimizer.weightDecay", o.weight_decay, Bound{0, true}, std::nullopt);
  c.Double("spec.optimizer.beta1", o.beta1, Bound{0, false}, Bound{1, false});
  c.Double("spec.optimizer.beta2", o.beta2, Bound{0, false}, Bound{1, false});
  c.Double("spec.optimizer.epsilon", o.epsilon, Bound{0, false}, std::nullopt);

  c.Int("spec.batchSize", s.batch_size, 1, 65536);
  CheckTraining(c, s.training);
  CheckSync(c, s.sync);

  constexpr size_t kMaxClusters = 64;
  if (s.clusters.empty() || s.clusters.size() > kMaxClusters) {
    c.Add("spec.clusters",
          "must have 1 to " + std::to_string(kMaxClusters) + " entries, got " + std::to_string(s.clusters.size()));
  }
  std::unordered_map<std::string, size_t> first_index;
  for (size_t i = 0; i < s.clusters.size(); ++i) {
    const std::string p = Index("spec.clusters", i);
    CheckCluster(c, p, s.clusters[i]);
    const std::string& name = s.clusters[i].name;
    if (name.empty()) continue;
    auto [it, inserted] = first_index.emplace(name, i);
    if (!inserted) {
      c.Add(Join(p, "name"), "duplicate cluster name " + Quote(name) + " (also " +
                                 Join(Index("spec.clusters", it->second), "name") + ")");
    }
  }

  c.Int("spec.metrics.port", s.metrics.port, 0, 65535);
  if (c.Int("spec.checkpoint.intervalSteps", s.checkpoint.interval_steps, 0, std::nullopt) &&
      s.checkpoint.interval_steps > 0 && s.checkpoint.path.empty()) {
    c.Add("spec.checkpoint.path", "must be set because spec.checkpoint.intervalSteps is " +
                                      std::to_string(s.checkpoint.interval_steps) + ", got \"\"");
  }
  if (!s.checkpoint.claim_name.empty()) {
    if (s.checkpoint.path.empty()) {
      c.Add("spec.checkpoint.path", "must be set because spec.checkpoint.claimName is " +
                                        Quote(s.checkpoint.claim_name) + " (the claim is mounted there), got \"\"");
    }
    if (!IsDns1123Subdomain(s.checkpoint.claim_name)) {
      c.Add("spec.checkpoint.claimName",
            "must be a DNS-1123 subdomain (a PersistentVolumeClaim name: lowercase letters, digits, '-' and '.', "
            "at most 253 characters), got " +
                Quote(s.checkpoint.claim_name));
    }
  }

  const RunPolicy& r = s.run_policy;
  c.Int("spec.runPolicy.backoffLimit", r.backoff_limit, 0, std::nullopt);
  if (r.active_deadline_seconds) {
    c.Int("spec.runPolicy.activeDeadlineSeconds", *r.active_deadline_seconds, 1, std::nullopt);
  }
  if (r.ttl_seconds_after_finished) {
    c.Int("spec.runPolicy.ttlSecondsAfterFinished", *r.ttl_seconds_after_finished, 0, std::nullopt);
  }
  c.Enum("spec.runPolicy.restartPolicy", r.restart_policy);
  return c.Take();
}

std::string FormatFieldErrors(const std::vector<FieldError>& errors) {
  std::string out;
  for (const FieldError& e : errors) {
    if (!out.empty()) out += '\n';
    out += e.path.empty() ? e.message : e.path + ": " + e.message;
  }
  return out;
}

Status FieldErrorsToStatus(const std::vector<FieldError>& errors) {
  if (errors.empty()) return Status::Ok();
  return InvalidArgumentError(FormatFieldErrors(errors));
}

}  // namespace stella::spec
