// ToYaml: StellaJob -> manifest text that ParseStellaJob reads back equal.
//
// Numbers are formatted here (shortest round-trip text) rather than by
// yaml-cpp, and strings that would read back as another type are quoted.
#include <string>

#include <yaml-cpp/yaml.h>

#include "src/spec/internal/scalar.h"
#include "src/spec/stella_job.h"

namespace stella::spec {
namespace {

using internal::FormatDouble;

class Writer {
 public:
  std::string Take() { return std::string(out_.c_str()); }

  void Begin(const char* key) {
    if (key != nullptr) out_ << YAML::Key << key << YAML::Value;
    out_ << YAML::BeginMap;
  }
  void End() { out_ << YAML::EndMap; }

  void Str(const char* key, const std::string& v) {
    out_ << YAML::Key << key << YAML::Value;
    Scalar(v);
  }
  void Int(const char* key, int64_t v) { Raw(key, std::to_string(v)); }
  void Uint(const char* key, uint64_t v) { Raw(key, std::to_string(v)); }
  void Double(const char* key, double v) { Raw(key, FormatDouble(v)); }
  void Bool(const char* key, bool v) { Raw(key, v ? "true" : "false"); }
  template <typename E>
  void Enum(const char* key, E v) {
    Str(key, ToString(v));
  }

  void Map(const char* key, const StringMap& m) {
    if (m.empty()) return;
    Begin(key);
    for (const auto& [k, v] : m) {
      out_ << YAML::Key;
      Scalar(k);
      out_ << YAML::Value;
      Scalar(v);
    }
    End();
  }

  void BeginList(const char* key) { out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq; }
  void EndList() { out_ << YAML::EndSeq; }

 private:
  // A string, quoted when it would otherwise read back as a number, bool or null.
  void Scalar(const std::string& v) {
    if (internal::NeedsQuotes(v)) out_ << YAML::DoubleQuoted;
    out_ << v;
  }
  void Raw(const char* key, const std::string& text) { out_ << YAML::Key << key << YAML::Value << text; }

  YAML::Emitter out_;
};

void WriteCluster(Writer& w, const ClusterSpec& c) {
  w.Begin(nullptr);
  w.Str("name", c.name);
  w.Int("workers", c.workers);
  w.Int("devicesPerWorker", c.devices_per_worker);
  w.Begin("wan");
  w.Double("bandwidthMbps", c.wan.bandwidth_mbps);
  w.Double("latencyMs", c.wan.latency_ms);
  w.End();
  if (c.kubeconfig_secret) {
    w.Begin("kubeconfigSecret");
    w.Str("name", c.kubeconfig_secret->name);
    w.Str("key", c.kubeconfig_secret->key);
    w.End();
  }
  if (!c.image.empty()) w.Str("image", c.image);
  if (!c.resources.limits.empty() || !c.resources.requests.empty()) {
    w.Begin("resources");
    w.Map("limits", c.resources.limits);
    w.Map("requests", c.resources.requests);
    w.End();
  }
  w.Map("nodeSelector", c.node_selector);
  if (!c.tolerations.empty()) {
    w.BeginList("tolerations");
    for (const Toleration& t : c.tolerations) {
      w.Begin(nullptr);
      if (!t.key.empty()) w.Str("key", t.key);
      w.Enum("operator", t.op);
      if (!t.value.empty()) w.Str("value", t.value);
      if (t.effect != TolerationEffect::kAll) w.Enum("effect", t.effect);
      if (t.toleration_seconds) w.Int("tolerationSeconds", *t.toleration_seconds);
      w.End();
    }
    w.EndList();
  }
  w.Begin("gateway");
  w.Enum("type", c.gateway.type);
  w.Int("port", c.gateway.port);
  w.End();
  w.End();
}

void WriteClusterStatus(Writer& w, const ClusterStatus& c) {
  w.Begin(nullptr);
  w.Str("name", c.name);
  w.Int("workers", c.workers);
  w.Bool("reachable", c.reachable);
  if (!c.message.empty()) w.Str("message", c.message);
  if (!c.gateway_address.empty()) w.Str("gatewayAddress", c.gateway_address);
  if (!c.gateway_node.empty()) w.Str("gatewayNode", c.gateway_node);
  if (c.counts) {
    w.Int("pending", c.counts->pending);
    w.Int("running", c.counts->running);
    w.Int("ready", c.counts->ready);
    w.Int("succeeded", c.counts->succeeded);
    w.Int("failed", c.counts->failed);
  }
  w.End();
}

void WriteSpec(Writer& w, const JobSpec& s) {
  w.Begin("spec");
  w.Begin("model");
  if (!s.model.name.empty()) w.Str("name", s.model.name);
  w.Int("hidden", s.model.hidden);
  if (!s.model.torchscript.empty()) w.Str("torchscript", s.model.torchscript);
  w.Enum("task", s.model.task);
  w.End();
  const DatasetSpec& d = s.dataset;
  w.Begin("dataset");
  w.Enum("format", d.format);
  if (!d.name.empty()) w.Str("name", d.name);
  w.Str("path", d.path);
  if (!d.labels_path.empty()) w.Str("labelsPath", d.labels_path);
  if (!d.validation_path.empty()) w.Str("validationPath", d.validation_path);
  if (!d.validation_labels_path.empty()) w.Str("validationLabelsPath", d.validation_labels_path);
  w.Int("sequenceLength", d.sequence_length);
  w.End();

  const OptimizerSpec& o = s.optimizer;
  w.Begin("optimizer");
  w.Enum("name", o.name);
  w.Double("learningRate", o.learning_rate);
  w.Double("momentum", o.momentum);
  w.Bool("nesterov", o.nesterov);
  w.Double("weightDecay", o.weight_decay);
  w.Double("beta1", o.beta1);
  w.Double("beta2", o.beta2);
  w.Double("epsilon", o.epsilon);
  w.End();

  w.Int("batchSize", s.batch_size);

  const TrainingSpec& t = s.training;
  w.Begin("training");
  w.Int("steps", t.steps);
  w.Double("epochs", t.epochs);
  w.Double("targetAccuracy", t.target_accuracy);
  w.Int("evalEvery", t.eval_every);
  w.Uint("seed", t.seed);
  w.End();

  const SyncSpec& y = s.sync;
  w.Begin("sync");
  w.Enum("mode", y.mode);
  w.Double("density", y.density);
  w.Double("minDensity", y.min_density);
  w.Double("maxDensity", y.max_density);
  w.Enum("compressor", y.compressor);
  w.Enum("valuePrecision", y.value_precision);
  w.Int("staleness", y.staleness);
  w.Bool("errorFeedback", y.error_feedback);
  w.Bool("momentumCorrection", y.momentum_correction);
  w.Bool("tuner", y.tuner);
  w.End();

  w.BeginList("clusters");
  for (const ClusterSpec& c : s.clusters) WriteCluster(w, c);
  w.EndList();

  w.Begin("metrics");
  w.Int("port", s.metrics.port);
  w.End();
  w.Begin("checkpoint");
  w.Str("path", s.checkpoint.path);
  w.Int("intervalSteps", s.checkpoint.interval_steps);
  if (!s.checkpoint.claim_name.empty()) w.Str("claimName", s.checkpoint.claim_name);
  w.End();

  const RunPolicy& r = s.run_policy;
  w.Begin("runPolicy");
  w.Bool("suspend", r.suspend);
  w.Int("backoffLimit", r.backoff_limit);
  if (r.active_deadline_seconds) w.Int("activeDeadlineSeconds", *r.active_deadline_seconds);
  if (r.ttl_seconds_after_finished) {
    w.Int("ttlSecondsAfterFinished", *r.ttl_seconds_after_finished);
  }
  w.Enum("restartPolicy", r.restart_policy);
  w.End();
  w.End();
}

}  // namespace

std::string ToYaml(const StellaJob& job) {
  Writer w;
  w.Begin(nullptr);
  w.Str("apiVersion", job.api_version);
  w.Str("kind", job.kind);

  const ObjectMeta& m = job.metadata;
  w.Begin("metadata");
  w.Str("name", m.name);
  w.Str("namespace", m.namespace_name);
  w.Map("labels", m.labels);
  w.Map("annotations", m.annotations);
  if (m.generation) w.Int("generation", *m.generation);
  if (!m.uid.empty()) w.Str("uid", m.uid);
  if (!m.resource_version.empty()) w.Str("resourceVersion", m.resource_version);
  w.End();

  WriteSpec(w, job.spec);

  if (job.status) {
    const JobStatus& s = *job.status;
    w.Begin("status");
    w.Str("phase", s.phase);
    w.Int("observedGeneration", s.observed_generation);
    w.Int("step", s.step);
    w.Double("samplesPerSecond", s.samples_per_second);
    w.Double("density", s.density);
    w.Str("message", s.message);
    if (s.batch_size) w.Int("batchSize", *s.batch_size);
    if (!s.conditions.empty()) {
      w.BeginList("conditions");
      for (const JobCondition& c : s.conditions) {
        w.Begin(nullptr);
        w.Str("type", c.type);
        w.Str("status", c.status);
        w.Str("reason", c.reason);
        w.Str("message", c.message);
        w.Int("observedGeneration", c.observed_generation);
        w.Str("lastTransitionTime", c.last_transition_time);
        w.End();
      }
      w.EndList();
    }
    if (!s.clusters.empty()) {
      w.BeginList("clusters");
      for (const ClusterStatus& c : s.clusters) WriteClusterStatus(w, c);
      w.EndList();
    }
    for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"clustersReady", &s.clusters_ready},
                                     {"startTime", &s.start_time},
                                     {"firstStartTime", &s.first_start_time},
                                     {"completionTime", &s.completion_time},
                                     {"certificatesRotation", &s.certificates_rotation}}) {
      if (!value->empty()) w.Str(key, *value);
    }
    if (s.restarts != 0) w.Int("restarts", s.restarts);
    w.End();
  }
  w.End();
  return w.Take() + "\n";
}

}  // namespace stella::spec
