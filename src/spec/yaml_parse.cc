// ParseStellaJob and LoadStellaJobFile: YAML -> StellaJob with structural
// checks (unknown fields, types, required fields), then ValidateStellaJob.
//
// yaml-cpp exceptions are caught here; nothing above this file sees them.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "src/spec/internal/enum_names.h"
#include "src/spec/internal/scalar.h"
#include "src/spec/stella_job.h"

namespace stella::spec {
namespace {

using internal::ClassifyPlain;
using internal::PlainKind;
using internal::Quote;

// Present, non-null fields of a YAML map, by key. Null values count as absent,
// as they do for the Kubernetes API server.
using Fields = std::map<std::string, YAML::Node>;

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string Index(const std::string& prefix, size_t i) { return prefix + "[" + std::to_string(i) + "]"; }

// How a scalar reads: quoted and !!str-tagged scalars are strings, plain ones
// resolve by the core schema.
PlainKind KindOf(const YAML::Node& n) {
  if (n.IsNull()) return PlainKind::kNull;
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return PlainKind::kString;
  return ClassifyPlain(n.Scalar());
}

// The value shown after "got" in messages.
std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return KindOf(n) == PlainKind::kString ? Quote(n.Scalar()) : n.Scalar();
    default: return "null";
  }
}

class Parser {
 public:
  std::vector<FieldError> TakeErrors() { return std::move(errors_); }
  // The source line of every field, list element and map entry seen.
  const std::map<std::string, int>& lines() const { return lines_; }

  void Job(const YAML::Node& root, StellaJob* job) {
    Fields f;
    if (!Map(root, "", {"apiVersion", "kind", "metadata", "spec", "status"}, &f)) return;
    // A missing apiVersion or kind leaves the struct's value empty so that
    // ValidateStellaJob reports it.
    job->api_version.clear();
    job->kind.clear();
    String(f, "", "apiVersion", &job->api_version, /*required=*/true);
    String(f, "", "kind", &job->kind, /*required=*/true);
    if (const YAML::Node* n = Require(f, "", "metadata")) Metadata(*n, &job->metadata);
    if (const YAML::Node* n = Require(f, "", "spec")) Spec(*n, &job->spec);
    if (const YAML::Node* n = Find(f, "status")) {
      job->status.emplace();
      StatusField(*n, &*job->status);
    }
  }

 private:
  void Error(std::string path, std::string message) { errors_.push_back({std::move(path), std::move(message)}); }

  // Fills *fields if `node` is a map, reporting unknown and duplicate keys.
  bool Map(const YAML::Node& node, const std::string& path, std::initializer_list<const char*> known, Fields* fields) {
    if (!node.IsMap()) {
      Error(path, "expected a map, got " + Describe(node));
      return false;
    }
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) {
        Error(path, "expected field names, got " + Describe(it->first) + " as a key");
        continue;
      }
      const std::string& key = it->first.Scalar();
      lines_.emplace(Join(path, key), it->first.Mark().line);
      bool is_known = false;
      for (const char* k : known) is_known = is_known || key == k;
      if (!is_known) {
        Error(Join(path, key), "unknown field");
      } else if (!seen.insert(key).second) {
        Error(Join(path, key), "duplicate field");
      } else if (!it->second.IsNull()) {
        fields->emplace(key, it->second);
      }
    }
    return true;
  }

  static const YAML::Node* Find(const Fields& f, const char* key) {
    auto it = f.find(key);
    return it == f.end() ? nullptr : &it->second;
  }

  const YAML::Node* Require(const Fields& f, const std::string& prefix, const char* key) {
    const YAML::Node* n = Find(f, key);
    if (n == nullptr) Error(Join(prefix, key), "required field is missing");
    return n;
  }

  // Scalar readers: absent leaves *out (the default) alone; a bad value is
  // reported and also leaves *out alone.
  bool StringValue(const YAML::Node& n, const std::string& path, std::string* out, bool allow_numbers = false) {
    PlainKind kind = n.IsScalar() ? KindOf(n) : PlainKind::kNull;
    bool numeric = kind == PlainKind::kInt || kind == PlainKind::kFloat;
    if (!n.IsScalar() || !(kind == PlainKind::kString || (allow_numbers && numeric))) {
      Error(path, "expected a string, got " + Describe(n));
      return false;
    }
    if (!Utf8(n.Scalar(), path)) return false;
    *out = n.Scalar();
    return true;
  }

  // Strings must be valid UTF-8 text (see internal::FindInvalidUtf8); the
  // message gives the offset, not the bytes, so it stays printable.
  bool Utf8(const std::string& text, const std::string& path) {
    const size_t bad = internal::FindInvalidUtf8(text);
    if (bad == std::string::npos) return true;
    Error(path, "expected UTF-8 text, got an invalid or noncharacter byte sequence at byte " + std::to_string(bad));
    return false;
  }

  void String(const Fields& f, const std::string& prefix, const char* key, std::string* out, bool required = false) {
    const YAML::Node* n = required ? Require(f, prefix, key) : Find(f, key);
    if (n != nullptr) StringValue(*n, Join(prefix, key), out);
  }

  std::optional<int64_t> IntValue(const YAML::Node& n, const std::string& path, int64_t min, int64_t max,
                                  const char* range_name) {
    if (!n.IsScalar() || KindOf(n) != PlainKind::kInt) {
      Error(path, "expected an integer, got " + Describe(n));
      return std::nullopt;
    }
    std::optional<int64_t> v = internal::ParseInt64(n.Scalar());
    if (!v || *v < min || *v > max) {
      Error(path, std::string("expected ") + range_name + ", got " + n.Scalar());
      return std::nullopt;
    }
    return v;
  }

  void Int(const Fields& f, const std::string& prefix, const char* key, int* out) {
    if (const YAML::Node* n = Find(f, key)) {
      auto v = IntValue(*n, Join(prefix, key), std::numeric_limits<int>::min(), std::numeric_limits<int>::max(),
                        "a 32-bit integer");
      if (v) *out = static_cast<int>(*v);
    }
  }

  void Int64(const Fields& f, const std::string& prefix, const char* key, int64_t* out) {
    if (const YAML::Node* n = Find(f, key)) {
      auto v = IntValue(*n, Join(prefix, key), std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                        "a 64-bit integer");
      if (v) *out = *v;
    }
  }

  void OptionalInt64(const Fields& f, const std::string& prefix, const char* key, std::optional<int64_t>* out) {
    if (Find(f, key) == nullptr) return;
    int64_t v = 0;
    size_t before = errors_.size();
    Int64(f, prefix, key, &v);
    if (errors_.size() == before) *out = v;
  }

  void Uint64(const Fields& f, const std::string& prefix, const char* key, uint64_t* out) {
    const YAML::Node* n = Find(f, key);
    if (n == nullptr) return;
    const std::string path = Join(prefix, key);
    if (!n->IsScalar() || KindOf(*n) != PlainKind::kInt) {
      Error(path, "expected an integer, got " + Describe(*n));
      return;
    }
    std::optional<uint64_t> v = internal::ParseUint64(n->Scalar());
    if (!v) {
      Error(path, "expected an unsigned 64-bit integer, got " + n->Scalar());
      return;
    }
    *out = *v;
  }

  void Double(const Fields& f, const std::string& prefix, const char* key, double* out) {
    const YAML::Node* n = Find(f, key);
    if (n == nullptr) return;
    const std::string path = Join(prefix, key);
    PlainKind kind = n->IsScalar() ? KindOf(*n) : PlainKind::kNull;
    if (kind != PlainKind::kInt && kind != PlainKind::kFloat && kind != PlainKind::kNonFinite) {
      Error(path, "expected a number, got " + Describe(*n));
      return;
    }
    std::optional<double> v = internal::ParseDouble(n->Scalar());
    if (!v) {
      Error(path, "expected a finite number, got " + n->Scalar());
      return;
    }
    *out = *v;
  }

  void Bool(const Fields& f, const std::string& prefix, const char* key, bool* out) {
    const YAML::Node* n = Find(f, key);
    if (n == nullptr) return;
    if (!n->IsScalar() || KindOf(*n) != PlainKind::kBool) {
      Error(Join(prefix, key), "expected a boolean (true or false), got " + Describe(*n));
      return;
    }
    char c = n->Scalar()[0];
    *out = (c == 't' || c == 'T');
  }

  template <typename E>
  void Enum(const Fields& f, const std::string& prefix, const char* key, E* out) {
    const YAML::Node* n = Find(f, key);
    std::string text;
    if (n == nullptr || !StringValue(*n, Join(prefix, key), &text)) return;
    if (!ParseEnum(text, out)) {
      Error(Join(prefix, key), "must be one of " + internal::AllowedNames<E>() + ", got " + Quote(text));
    }
  }

  // A map of user-chosen keys to strings (labels, annotations, quantities).
  void StringMapField(const Fields& f, const std::string& prefix, const char* key, StringMap* out,
                      bool allow_numbers = false) {
    const YAML::Node* n = Find(f, key);
    if (n == nullptr) return;
    const std::string path = Join(prefix, key);
    if (!n->IsMap()) {
      Error(path, "expected a map of strings, got " + Describe(*n));
      return;
    }
    for (auto it = n->begin(); it != n->end(); ++it) {
      if (!it->first.IsScalar()) {
        Error(path, "expected string keys, got " + Describe(it->first) + " as a key");
        continue;
      }
      const std::string& k = it->first.Scalar();
      if (!Utf8(k, path)) continue;
      const std::string entry_path = path + "[" + Quote(k) + "]";
      lines_.emplace(entry_path, it->first.Mark().line);
      std::string value;
      if (!StringValue(it->second, entry_path, &value, allow_numbers)) continue;
      if (!out->emplace(k, value).second) Error(entry_path, "duplicate key");
    }
  }

  // Calls parse(element, path) for each element of a list field.
  template <typename T, typename ParseFn>
  void List(const Fields& f, const std::string& prefix, const char* key, bool required, std::vector<T>* out,
            ParseFn parse) {
    const YAML::Node* n = required ? Require(f, prefix, key) : Find(f, key);
    if (n == nullptr) return;
    const std::string path = Join(prefix, key);
    if (!n->IsSequence()) {
      Error(path, "expected a list, got " + Describe(*n));
      return;
    }
    out->clear();
    for (size_t i = 0; i < n->size(); ++i) {
      out->emplace_back();
      lines_.emplace(Index(path, i), (*n)[i].Mark().line);
      (this->*parse)((*n)[i], Index(path, i), &out->back());
    }
  }

  void Metadata(const YAML::Node& node, ObjectMeta* m) {
    const std::string p = "metadata";
    Fields f;
    if (!Map(node, p, {"name", "namespace", "labels", "annotations", "generation", "uid", "resourceVersion"}, &f)) {
      return;
    }
    String(f, p, "name", &m->name, /*required=*/true);
    String(f, p, "namespace", &m->namespace_name);
    StringMapField(f, p, "labels", &m->labels);
    StringMapField(f, p, "annotations", &m->annotations);
    OptionalInt64(f, p, "generation", &m->generation);
    String(f, p, "uid", &m->uid);
    String(f, p, "resourceVersion", &m->resource_version);
  }

  void Spec(const YAML::Node& node, JobSpec* s) {
    const std::string p = "spec";
    Fields f;
    if (!Map(node, p,
             {"model", "dataset", "optimizer", "batchSize", "training", "sync", "clusters", "metrics", "checkpoint",
              "runPolicy"},
             &f)) {
      return;
    }
    if (const YAML::Node* n = Require(f, p, "model")) {
      Fields g;
      if (Map(*n, "spec.model", {"name", "hidden", "torchscript", "task"}, &g)) {
        // name or torchscript: ValidateStellaJob reports a missing one.
        String(g, "spec.model", "name", &s->model.name);
        Int(g, "spec.model", "hidden", &s->model.hidden);
        String(g, "spec.model", "torchscript", &s->model.torchscript);
        Enum(g, "spec.model", "task", &s->model.task);
      }
    }
    if (const YAML::Node* n = Require(f, p, "dataset")) Dataset(*n, &s->dataset);
    if (const YAML::Node* n = Find(f, "optimizer")) Optimizer(*n, &s->optimizer);
    Int(f, p, "batchSize", &s->batch_size);
    if (const YAML::Node* n = Find(f, "training")) Training(*n, &s->training);
    if (const YAML::Node* n = Find(f, "sync")) Sync(*n, &s->sync);
    List(f, p, "clusters", /*required=*/true, &s->clusters, &Parser::Cluster);
    if (const YAML::Node* n = Find(f, "metrics")) {
      Fields g;
      if (Map(*n, "spec.metrics", {"port"}, &g)) Int(g, "spec.metrics", "port", &s->metrics.port);
    }
    if (const YAML::Node* n = Find(f, "checkpoint")) {
      Fields g;
      if (Map(*n, "spec.checkpoint", {"path", "intervalSteps", "claimName"}, &g)) {
        String(g, "spec.checkpoint", "path", &s->checkpoint.path);
        Int(g, "spec.checkpoint", "intervalSteps", &s->checkpoint.interval_steps);
        String(g, "spec.checkpoint", "claimName", &s->checkpoint.claim_name);
      }
    }
    if (const YAML::Node* n = Find(f, "runPolicy")) RunPolicyField(*n, &s->run_policy);
  }

  void Dataset(const YAML::Node& node, DatasetSpec* d) {
    const std::string p = "spec.dataset";
    Fields f;
    if (!Map(node, p,
             {"format", "name", "path", "labelsPath", "validationPath", "validationLabelsPath", "sequenceLength"},
             &f)) {
      return;
    }
    Enum(f, p, "format", &d->format);
    String(f, p, "name", &d->name);  // required for format idx: ValidateStellaJob checks
    String(f, p, "path", &d->path);
    String(f, p, "labelsPath", &d->labels_path);
    String(f, p, "validationPath", &d->validation_path);
    String(f, p, "validationLabelsPath", &d->validation_labels_path);
    Int(f, p, "sequenceLength", &d->sequence_length);
  }

  void Optimizer(const YAML::Node& node, OptimizerSpec* o) {
    const std::string p = "spec.optimizer";
    Fields f;
    if (!Map(node, p, {"name", "learningRate", "momentum", "nesterov", "weightDecay", "beta1", "beta2", "epsilon"},
             &f)) {
      return;
    }
    Enum(f, p, "name", &o->name);
    Double(f, p, "learningRate", &o->learning_rate);
    Double(f, p, "momentum", &o->momentum);
    Bool(f, p, "nesterov", &o->nesterov);
    Double(f, p, "weightDecay", &o->weight_decay);
    Double(f, p, "beta1", &o->beta1);
    Double(f, p, "beta2", &o->beta2);
    Double(f, p, "epsilon", &o->epsilon);
  }

  void Training(const YAML::Node& node, TrainingSpec* t) {
    const std::string p = "spec.training";
    Fields f;
    if (!Map(node, p, {"steps", "epochs", "targetAccuracy", "evalEvery", "seed"}, &f)) return;
    Int64(f, p, "steps", &t->steps);
    Double(f, p, "epochs", &t->epochs);
    Double(f, p, "targetAccuracy", &t->target_accuracy);
    Int(f, p, "evalEvery", &t->eval_every);
    Uint64(f, p, "seed", &t->seed);
  }

  void Sync(const YAML::Node& node, SyncSpec* s) {
    const std::string p = "spec.sync";
    Fields f;
    if (!Map(node, p,
             {"mode", "density", "minDensity", "maxDensity", "compressor", "valuePrecision", "staleness",
              "errorFeedback", "momentumCorrection", "tuner"},
             &f)) {
      return;
    }
    Enum(f, p, "mode", &s->mode);
    Double(f, p, "density", &s->density);
    Double(f, p, "minDensity", &s->min_density);
    Double(f, p, "maxDensity", &s->max_density);
    Enum(f, p, "compressor", &s->compressor);
    Enum(f, p, "valuePrecision", &s->value_precision);
    Int(f, p, "staleness", &s->staleness);
    Bool(f, p, "errorFeedback", &s->error_feedback);
    Bool(f, p, "momentumCorrection", &s->momentum_correction);
    Bool(f, p, "tuner", &s->tuner);
  }

  void Cluster(const YAML::Node& node, const std::string& p, ClusterSpec* c) {
    Fields f;
    if (!Map(node, p,
             {"name", "workers", "devicesPerWorker", "wan", "kubeconfigSecret", "image", "resources", "nodeSelector",
              "tolerations", "gateway"},
             &f)) {
      return;
    }
    String(f, p, "name", &c->name, /*required=*/true);
    Int(f, p, "workers", &c->workers);
    Int(f, p, "devicesPerWorker", &c->devices_per_worker);
    if (const YAML::Node* n = Find(f, "wan")) {
      Fields g;
      const std::string q = Join(p, "wan");
      if (Map(*n, q, {"bandwidthMbps", "latencyMs"}, &g)) {
        Double(g, q, "bandwidthMbps", &c->wan.bandwidth_mbps);
        Double(g, q, "latencyMs", &c->wan.latency_ms);
      }
    }
    if (const YAML::Node* n = Find(f, "kubeconfigSecret")) {
      Fields g;
      const std::string q = Join(p, "kubeconfigSecret");
      if (Map(*n, q, {"name", "key"}, &g)) {
        c->kubeconfig_secret.emplace();
        String(g, q, "name", &c->kubeconfig_secret->name, /*required=*/true);
        String(g, q, "key", &c->kubeconfig_secret->key);
      }
    }
    String(f, p, "image", &c->image);
    if (const YAML::Node* n = Find(f, "resources")) {
      Fields g;
      const std::string q = Join(p, "resources");
      if (Map(*n, q, {"limits", "requests"}, &g)) {
        // Kubernetes accepts bare numbers as quantities ("cpu: 2").
        StringMapField(g, q, "limits", &c->resources.limits, /*allow_numbers=*/true);
        StringMapField(g, q, "requests", &c->resources.requests, /*allow_numbers=*/true);
      }
    }
    StringMapField(f, p, "nodeSelector", &c->node_selector);
    List(f, p, "tolerations", /*required=*/false, &c->tolerations, &Parser::TolerationField);
    if (const YAML::Node* n = Find(f, "gateway")) {
      Fields g;
      const std::string q = Join(p, "gateway");
      if (Map(*n, q, {"type", "port"}, &g)) {
        Enum(g, q, "type", &c->gateway.type);
        Int(g, q, "port", &c->gateway.port);
      }
    }
  }

  void TolerationField(const YAML::Node& node, const std::string& p, Toleration* t) {
    Fields f;
    if (!Map(node, p, {"key", "operator", "value", "effect", "tolerationSeconds"}, &f)) return;
    String(f, p, "key", &t->key);
    Enum(f, p, "operator", &t->op);
    String(f, p, "value", &t->value);
    Enum(f, p, "effect", &t->effect);
    OptionalInt64(f, p, "tolerationSeconds", &t->toleration_seconds);
  }

  void RunPolicyField(const YAML::Node& node, RunPolicy* r) {
    const std::string p = "spec.runPolicy";
    Fields f;
    if (!Map(node, p, {"suspend", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "restartPolicy"},
             &f)) {
      return;
    }
    Bool(f, p, "suspend", &r->suspend);
    Int(f, p, "backoffLimit", &r->backoff_limit);
    OptionalInt64(f, p, "activeDeadlineSeconds", &r->active_deadline_seconds);
    OptionalInt64(f, p, "ttlSecondsAfterFinished", &r->ttl_seconds_after_finished);
    Enum(f, p, "restartPolicy", &r->restart_policy);
  }

  void StatusField(const YAML::Node& node, JobStatus* s) {
    const std::string p = "status";
    Fields f;
    if (!Map(node, p,
             {"phase", "observedGeneration", "step", "samplesPerSecond", "density", "message", "batchSize",
              "conditions", "clusters", "clustersReady", "startTime", "firstStartTime", "completionTime", "restarts",
              "certificatesRotation"},
             &f)) {
      return;
    }
    String(f, p, "phase", &s->phase);
    Int64(f, p, "observedGeneration", &s->observed_generation);
    Int64(f, p, "step", &s->step);
    Double(f, p, "samplesPerSecond", &s->samples_per_second);
    Double(f, p, "density", &s->density);
    String(f, p, "message", &s->message);
    OptionalInt64(f, p, "batchSize", &s->batch_size);
    List(f, p, "conditions", /*required=*/false, &s->conditions, &Parser::ConditionField);
    List(f, p, "clusters", /*required=*/false, &s->clusters, &Parser::ClusterStatusField);
    String(f, p, "clustersReady", &s->clusters_ready);
    String(f, p, "startTime", &s->start_time);
    String(f, p, "firstStartTime", &s->first_start_time);
    String(f, p, "completionTime", &s->completion_time);
    Int(f, p, "restarts", &s->restarts);
    String(f, p, "certificatesRotation", &s->certificates_rotation);
  }

  void ConditionField(const YAML::Node& node, const std::string& p, JobCondition* c) {
    Fields f;
    if (!Map(node, p, {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}, &f)) {
      return;
    }
    String(f, p, "type", &c->type, /*required=*/true);
    String(f, p, "status", &c->status, /*required=*/true);
    String(f, p, "reason", &c->reason);
    String(f, p, "message", &c->message);
    Int64(f, p, "observedGeneration", &c->observed_generation);
    String(f, p, "lastTransitionTime", &c->last_transition_time);
  }

  void ClusterStatusField(const YAML::Node& node, const std::string& p, ClusterStatus* c) {
    Fields f;
    if (!Map(node, p,
             {"name", "workers", "reachable", "message", "gatewayAddress", "gatewayNode", "pending", "running", "ready",
              "succeeded", "failed"},
             &f)) {
      return;
    }
    String(f, p, "name", &c->name, /*required=*/true);
    Int(f, p, "workers", &c->workers);
    Bool(f, p, "reachable", &c->reachable);
    String(f, p, "message", &c->message);
    String(f, p, "gatewayAddress", &c->gateway_address);
    String(f, p, "gatewayNode", &c->gateway_node);
    // The counts are written together; any of them present means counted.
    for (const char* k : {"pending", "running", "ready", "succeeded", "failed"}) {
      if (Find(f, k)) c->counts.emplace();
    }
    if (c->counts) {
      Int(f, p, "pending", &c->counts->pending);
      Int(f, p, "running", &c->counts->running);
      Int(f, p, "ready", &c->counts->ready);
      Int(f, p, "succeeded", &c->counts->succeeded);
      Int(f, p, "failed", &c->counts->failed);
    }
  }

  std::vector<FieldError> errors_;
  std::map<std::string, int> lines_;
};

// yaml-cpp 0.7 (Debian 12's) loops forever, allocating a null document per
// turn, on a stream where a token that cannot start a node (a stray ',' as in
// "{a: 1},") stands where a document should begin: the parser reports a
// document without consuming the token (jbeder/yaml-cpp#1040, fixed upstream
// by PR #1319). LoadAll would exhaust memory, so the event stream is walked
// first, and a document that starts where the previous one started is a
// syntax error at that token.
class StuckDocumentFinder final : public YAML::EventHandler {
 public:
  // The mark of the token the parser is stuck on, if it is.
  std::optional<YAML::Mark> Find(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    while (!stuck_ && parser.HandleNextDocument(*this)) {
    }
    return stuck_;
  }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (previous_start_ && previous_start_->pos == mark.pos) stuck_ = mark;
    previous_start_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  std::optional<YAML::Mark> previous_start_;
  std::optional<YAML::Mark> stuck_;
};

bool IsWithin(const std::string& path, const std::string& ancestor) {
  if (ancestor.empty()) return true;
  if (path.compare(0, ancestor.size(), ancestor) != 0) return false;
  return path.size() == ancestor.size() || path[ancestor.size()] == '.' || path[ancestor.size()] == '[';
}

// A semantic error is noise when its field already failed to parse (the struct
// holds the default there), or when it is about a block in which a field
// failed to parse (e.g. "set steps or epochs" after steps had a bad type).
bool Redundant(const FieldError& semantic, const std::vector<FieldError>& structural) {
  for (const FieldError& e : structural) {
    if (IsWithin(semantic.path, e.path) || IsWithin(e.path, semantic.path)) return true;
  }
  return false;
}

// The source line of `path` or, for a field that is absent from the source,
// of its nearest ancestor that is present.
int LineOf(std::string path, const std::map<std::string, int>& lines) {
  while (!path.empty()) {
    auto it = lines.find(path);
    if (it != lines.end()) return it->second;
    size_t cut = path.back() == ']' ? path.rfind('[') : path.find_last_of(".[");
    if (cut == std::string::npos) break;
    path.resize(cut);
  }
  return -1;  // top-level problems first
}

std::string PrefixLines(const std::string& prefix, const std::string& text) {
  std::string out = prefix;
  for (char c : text) {
    out += c;
    if (c == '\n') out += prefix;
  }
  return out;
}

}  // namespace

StatusOr<StellaJob> ParseStellaJob(const std::string& yaml_text) {
  std::vector<YAML::Node> docs;
  try {
    if (std::optional<YAML::Mark> stuck = StuckDocumentFinder().Find(yaml_text)) {
      return InvalidArgumentError("invalid YAML at line " + std::to_string(stuck->line + 1) + ", column " +
                                  std::to_string(stuck->column + 1) +
                                  ": unexpected token where a document or value should start");
    }
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::ParserException& e) {
    return InvalidArgumentError("invalid YAML at line " + std::to_string(e.mark.line + 1) + ", column " +
                                std::to_string(e.mark.column + 1) + ": " + e.msg);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("invalid YAML: ") + e.what());
  }
  std::vector<YAML::Node> non_empty;
  for (const YAML::Node& d : docs) {
    if (!d.IsNull()) non_empty.push_back(d);
  }
  if (non_empty.empty()) {
    return InvalidArgumentError(
        "empty document: expected a StellaJob manifest with apiVersion, kind, metadata and spec");
  }
  if (non_empty.size() > 1) {
    return InvalidArgumentError("expected one YAML document, got " + std::to_string(non_empty.size()) +
                                "; put each StellaJob in its own file");
  }
  const YAML::Node& root = non_empty[0];
  if (!root.IsMap()) {
    return InvalidArgumentError("expected a StellaJob manifest (a map with apiVersion, kind, metadata and spec), got " +
                                Describe(root));
  }

  StellaJob job;
  std::vector<FieldError> errors;
  std::map<std::string, int> lines;
  try {
    Parser parser;
    parser.Job(root, &job);
    errors = parser.TakeErrors();
    lines = parser.lines();
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("cannot read StellaJob manifest: ") + e.what());
  }
  // Another kind of object: its fields mean nothing here, so report only that.
  if (!job.kind.empty() && job.kind != kKind) {
    return InvalidArgumentError("kind: must be " + Quote(kKind) + ", got " + Quote(job.kind));
  }
  for (FieldError& e : ValidateStellaJob(job)) {
    if (!Redundant(e, errors)) errors.push_back(std::move(e));
  }
  // Report in document order, as a compiler would.
  std::stable_sort(errors.begin(), errors.end(), [&lines](const FieldError& a, const FieldError& b) {
    return LineOf(a.path, lines) < LineOf(b.path, lines);
  });
  if (!errors.empty()) return FieldErrorsToStatus(errors);
  return job;
}

StatusOr<StellaJob> LoadStellaJobFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    int err = errno;
    if (err == ENOENT) return NotFoundError("StellaJob file not found: " + path);
    return ErrnoError("cannot open StellaJob file " + path, err);
  }
  std::string text;
  char buf[8192];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), file)) > 0) text.append(buf, n);
  int read_error = std::ferror(file) ? errno : 0;  // EISDIR for a directory
  std::fclose(file);
  if (read_error != 0) return ErrnoError("cannot read StellaJob file " + path, read_error);
  StatusOr<StellaJob> job = ParseStellaJob(text);
  if (!job.ok()) {
    return Status(job.status().code(), PrefixLines(path + ": ", job.status().message()));
  }
  return job;
}

}  // namespace stella::spec
