// StellaJob: the job manifest shared by `stella run job.yaml` (local runs) and
// the Kubernetes operator (the same YAML is `kubectl apply`-ed as a custom
// resource of kind StellaJob, apiVersion stella.dev/v1alpha1).
//
// The manifest is modelled as plain structs whose members hold the defaults
// the parser applies when a field is absent. ParseStellaJob checks structure
// (unknown fields, wrong types, missing required fields) and then runs
// ValidateStellaJob for the semantic rules, and reports every problem at once,
// one per line, as "<field path>: <what is wrong>, got <value>". Callers that
// build a StellaJob in code run ValidateStellaJob themselves.
//
// Thread safety: all functions are pure (no shared state) and may be called
// concurrently; the structs are plain values.
#ifndef STELLA_SRC_SPEC_STELLA_JOB_H_
#define STELLA_SRC_SPEC_STELLA_JOB_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/status.h"

namespace stella::spec {

inline constexpr char kApiVersion[] = "stella.dev/v1alpha1";
inline constexpr char kKind[] = "StellaJob";

// Values accepted for spec.model.name and spec.dataset.name. Kept as strings in
// the structs because these sets grow with the compute stage.
inline constexpr const char* kModelNames[] = {"mlp", "cnn"};
inline constexpr const char* kDatasetNames[] = {"fashion-mnist"};

// Closed option sets. ToString gives the YAML spelling; ParseEnum accepts
// exactly that spelling (case-sensitive, as Kubernetes enums are).
// YAML spellings in order: sgd adam adamw | ddp stella | topk randomk threshold
// cacheline | fp32 fp16 bf16 | classification language-model | idx tokens npy | Equal Exists | "" (all) NoSchedule
// PreferNoSchedule NoExecute | LoadBalancer NodePort HostNetwork | OnFailure Never.
enum class OptimizerKind { kSgd, kAdam, kAdamW };
enum class SyncMode { kDdp, kStella };
enum class CompressorKind { kTopK, kRandomK, kThreshold, kCacheline };
enum class ValuePrecision { kFp32, kFp16, kBf16 };
enum class ModelTask { kClassification, kLanguageModel };
enum class DatasetFormat { kIdx, kTokens, kNpy };
enum class TolerationOperator { kEqual, kExists };
enum class TolerationEffect { kAll, kNoSchedule, kPreferNoSchedule, kNoExecute };
enum class GatewayType { kLoadBalancer, kNodePort, kHostNetwork };
enum class RestartPolicy { kOnFailure, kNever };

const char* ToString(OptimizerKind v);
const char* ToString(SyncMode v);
const char* ToString(CompressorKind v);
const char* ToString(ValuePrecision v);
const char* ToString(ModelTask v);
const char* ToString(DatasetFormat v);
const char* ToString(TolerationOperator v);
const char* ToString(TolerationEffect v);
const char* ToString(GatewayType v);
const char* ToString(RestartPolicy v);

// Returns false (and leaves *out alone) when `text` is not a valid spelling.
bool ParseEnum(std::string_view text, OptimizerKind* out);
bool ParseEnum(std::string_view text, SyncMode* out);
bool ParseEnum(std::string_view text, CompressorKind* out);
bool ParseEnum(std::string_view text, ValuePrecision* out);
bool ParseEnum(std::string_view text, ModelTask* out);
bool ParseEnum(std::string_view text, DatasetFormat* out);
bool ParseEnum(std::string_view text, TolerationOperator* out);
bool ParseEnum(std::string_view text, TolerationEffect* out);
bool ParseEnum(std::string_view text, GatewayType* out);
bool ParseEnum(std::string_view text, RestartPolicy* out);

using StringMap = std::map<std::string, std::string>;

// metadata. Kubernetes fills generation, uid and resourceVersion.
struct ObjectMeta {
  std::string name;                        // required; DNS-1123 label
  std::string namespace_name = "default";  // YAML "namespace"
  StringMap labels;                        // default empty
  StringMap annotations;                   // default empty
  std::optional<int64_t> generation;       // default absent
  std::string uid;                         // default "" (absent)
  std::string resource_version;            // default "" (absent)
};

// Exactly one of name (the built-in zoo) and torchscript (the user's own
// module, saved with torch.jit.save) is set.
struct ModelSpec {
  std::string name;         // one of kModelNames, or "" with torchscript
  int hidden = 0;           // >= 0; 0 = the model's own default width (zoo only)
  std::string torchscript;  // path of a TorchScript file; "" = use name
  // classification: logits [batch, classes] against integer labels;
  // language-model: logits [batch, seq, vocab] against the next tokens
  // (needs torchscript and dataset format tokens).
  ModelTask task = ModelTask::kClassification;
};

struct DatasetSpec {
  DatasetFormat format = DatasetFormat::kIdx;  // default idx
  std::string name;                            // idx: required, one of kDatasetNames; other formats: ""
  // idx: the directory of the IDX files; tokens: the training token file
  // (flat little-endian uint16); npy: the training features (.npy float32).
  std::string path = "/usr/share/datasets/fashion-mnist";
  std::string labels_path;             // npy: training labels (.npy int64 [N])
  std::string validation_path;         // tokens, npy: held-out tokens / features
  std::string validation_labels_path;  // npy: held-out labels
  int sequence_length = 64;            // tokens: context length, 1..65536
};

struct OptimizerSpec {
  OptimizerKind name = OptimizerKind::kAdam;  // default adam
  double learning_rate = 0.001;               // > 0
  double momentum = 0.9;                      // [0, 1); sgd only
  bool nesterov = false;                      // sgd only
  double weight_decay = 0.0;                  // >= 0
  double beta1 = 0.9;                         // (0, 1); adam/adamw
  double beta2 = 0.999;                       // (0, 1); adam/adamw
  double epsilon = 1e-8;                      // > 0; adam/adamw
};

// Exactly one of steps and epochs must be > 0.
struct TrainingSpec {
  int64_t steps = 0;             // >= 0; 0 = use epochs
  double epochs = 0.0;           // >= 0; 0 = use steps
  double target_accuracy = 0.0;  // [0, 1]; 0 = off, else stop at this test accuracy
  int eval_every = 100;          // >= 1 steps between evaluations
  uint64_t seed = 1;             // default 1
};

// 0 < min_density <= density <= max_density <= 1.
struct SyncSpec {
  SyncMode mode = SyncMode::kDdp;                          // default ddp
  double density = 0.01;                                   // (0, 1]; the starting density
  double min_density = 0.001;                              // tuner's lower bound
  double max_density = 0.1;                                // tuner's upper bound
  CompressorKind compressor = CompressorKind::kCacheline;  // default cacheline
  ValuePrecision value_precision = ValuePrecision::kFp32;  // default fp32
  int staleness = 1;                                       // 0..8 steps
  bool error_feedback = true;                              // default true
  bool momentum_correction = false;                        // default false
  bool tuner = true;                                       // default true
};

// The emulated egress of a cluster's gateway in local runs.
struct WanSpec {
  double bandwidth_mbps = 0.0;  // >= 0; 0 = unshaped
  double latency_ms = 0.0;      // 0..10000
};

// Kubernetes only: a Secret holding the kubeconfig of a member cluster.
struct SecretKeyRef {
  std::string name;                // required when present
  std::string key = "kubeconfig";  // default "kubeconfig"
};

// Kubernetes only: quantities stay strings ("500m", "1Gi", "1").
struct ResourceRequirements {
  StringMap limits;    // default empty
  StringMap requests;  // default empty
};

// Kubernetes only: mirrors core/v1 Toleration.
struct Toleration {
  std::string key;                                     // default ""; "" needs Exists
  TolerationOperator op = TolerationOperator::kEqual;  // YAML "operator"; default Equal
  std::string value;                                   // default ""; must be "" with Exists
  TolerationEffect effect = TolerationEffect::kAll;    // default "" (all effects)
  std::optional<int64_t> toleration_seconds;           // default absent; NoExecute only
};

// Kubernetes only: how the cluster's WAN gateway is exposed.
struct GatewaySpec {
  GatewayType type = GatewayType::kLoadBalancer;  // default LoadBalancer
  int port = 29500;                               // 1..65535
};

struct ClusterSpec {
  std::string name;            // required; DNS-1123 label, unique within the job
  int workers = 1;             // 1..1024
  int devices_per_worker = 1;  // >= 0; 0 = CPU
  WanSpec wan;                 // default unshaped
  // Kubernetes-only fields; all optional.
  std::optional<SecretKeyRef> kubeconfig_secret;  // absent = the hub cluster itself
  std::string image;                              // default "" (operator's default)
  ResourceRequirements resources;                 // default empty
  StringMap node_selector;                        // default empty
  std::vector<Toleration> tolerations;            // default empty
  GatewaySpec gateway;                            // default LoadBalancer:29500
};

struct MetricsSpec {
  int port = 9400;  // 0..65535; 0 = off
};

struct CheckpointSpec {
  std::string path;        // default "" = off
  int interval_steps = 0;  // >= 0; 0 = off; > 0 requires path
  // Kubernetes only: a PersistentVolumeClaim (in each member's namespace)
  // that the operator mounts at `path` in every worker, so checkpoints outlive
  // the pods of a restarted job. "" = an emptyDir (lost when pods are
  // recreated). Requires path; a DNS-1123 subdomain.
  std::string claim_name;
};

struct RunPolicy {
  bool suspend = false;                                      // default false
  int backoff_limit = 3;                                     // >= 0
  std::optional<int64_t> active_deadline_seconds;            // default absent; > 0
  std::optional<int64_t> ttl_seconds_after_finished;         // default absent; >= 0
  RestartPolicy restart_policy = RestartPolicy::kOnFailure;  // default OnFailure
};

struct JobSpec {
  ModelSpec model;                    // required
  DatasetSpec dataset;                // required
  OptimizerSpec optimizer;            // default adam, lr 0.001
  int batch_size = 64;                // per worker, 1..65536
  TrainingSpec training;              // steps or epochs must be set
  SyncSpec sync;                      // default ddp
  std::vector<ClusterSpec> clusters;  // required, 1..64 entries
  MetricsSpec metrics;                // default port 9400
  CheckpointSpec checkpoint;          // default off
  RunPolicy run_policy;               // YAML "runPolicy"
};

// status.conditions[]: a metav1.Condition of the job.
struct JobCondition {
  std::string type;                  // e.g. "Running", "Failed"
  std::string status;                // "True", "False" or "Unknown"
  std::string reason;                // CamelCase, e.g. "WorkersRunning"
  std::string message;               // default ""
  int64_t observed_generation = 0;   // metadata.generation it was set for
  std::string last_transition_time;  // RFC 3339; changes only when status flips
};

// Workers of one cluster by pod phase; ready = Running with Ready=True.
struct WorkerCounts {
  int pending = 0;
  int running = 0;
  int ready = 0;
  int succeeded = 0;
  int failed = 0;
};

// status.clusters[]: the operator's view of one member cluster.
struct ClusterStatus {
  std::string name;                    // spec.clusters[].name
  int workers = 0;                     // spec.clusters[].workers
  bool reachable = true;               // the member's API server answers
  std::string message;                 // default ""; why it is unreachable
  std::string gateway_address;         // default "" (not decided yet); "host:port"
  std::string gateway_node;            // default ""; HostNetwork gateways' node
  std::optional<WorkerCounts> counts;  // default absent (workers not counted yet); YAML: flat keys
};

// Output only: written by the runtime/operator; accepted on input.
// Strings default to "" and are left out when empty; `restarts` when 0.
struct JobStatus {
  std::string phase;                // default ""
  int64_t observed_generation = 0;  // metadata.generation last acted on
  int64_t step = 0;                 // training steps done
  double samples_per_second = 0.0;  // whole-job throughput
  double density = 0.0;             // current gradient density
  std::string message;              // default ""
  // Written by the operator (see docs/operator.md).
  std::optional<int64_t> batch_size;     // default absent; the tuner's per-worker batch
  std::vector<JobCondition> conditions;  // default empty
  std::vector<ClusterStatus> clusters;   // default empty
  std::string clusters_ready;            // "ready/total" clusters
  std::string start_time;                // RFC 3339; first worker created (this run)
  std::string first_start_time;          // RFC 3339; kept across suspends
  std::string completion_time;           // RFC 3339; Succeeded or Failed
  int restarts = 0;                      // >= 0; whole-job restarts so far
  std::string certificates_rotation;     // last rotate-certificates value acted on
};

struct StellaJob {
  std::string api_version = kApiVersion;  // required in YAML; must be kApiVersion
  std::string kind = kKind;               // required in YAML; must be kKind
  ObjectMeta metadata;                    // required
  JobSpec spec;                           // required
  std::optional<JobStatus> status;        // default absent

  // Sum of workers over all clusters.
  int TotalWorkers() const;
};

// Field-by-field equality (doubles compared exactly), e.g. for round trips.
#define STELLA_SPEC_DECLARE_EQUALITY_(T)   \
  bool operator==(const T& a, const T& b); \
  inline bool operator!=(const T& a, const T& b) { return !(a == b); }
STELLA_SPEC_DECLARE_EQUALITY_(ObjectMeta)
STELLA_SPEC_DECLARE_EQUALITY_(ModelSpec)
STELLA_SPEC_DECLARE_EQUALITY_(DatasetSpec)
STELLA_SPEC_DECLARE_EQUALITY_(OptimizerSpec)
STELLA_SPEC_DECLARE_EQUALITY_(TrainingSpec)
STELLA_SPEC_DECLARE_EQUALITY_(SyncSpec)
STELLA_SPEC_DECLARE_EQUALITY_(WanSpec)
STELLA_SPEC_DECLARE_EQUALITY_(SecretKeyRef)
STELLA_SPEC_DECLARE_EQUALITY_(ResourceRequirements)
STELLA_SPEC_DECLARE_EQUALITY_(Toleration)
STELLA_SPEC_DECLARE_EQUALITY_(GatewaySpec)
STELLA_SPEC_DECLARE_EQUALITY_(ClusterSpec)
STELLA_SPEC_DECLARE_EQUALITY_(MetricsSpec)
STELLA_SPEC_DECLARE_EQUALITY_(CheckpointSpec)
STELLA_SPEC_DECLARE_EQUALITY_(RunPolicy)
STELLA_SPEC_DECLARE_EQUALITY_(JobSpec)
STELLA_SPEC_DECLARE_EQUALITY_(JobCondition)
STELLA_SPEC_DECLARE_EQUALITY_(WorkerCounts)
STELLA_SPEC_DECLARE_EQUALITY_(ClusterStatus)
STELLA_SPEC_DECLARE_EQUALITY_(JobStatus)
STELLA_SPEC_DECLARE_EQUALITY_(StellaJob)

// One problem with one field. `path` is the YAML path, e.g.
// "spec.clusters[1].workers"; `message` says what is wrong and what was given,
// e.g. "must be >= 1, got 0".
struct FieldError {
  std::string path;
  std::string message;
};
STELLA_SPEC_DECLARE_EQUALITY_(FieldError)
#undef STELLA_SPEC_DECLARE_EQUALITY_

// The semantic checks (ranges, allowed values, cross-field rules, DNS names,
// unique cluster names). Empty when the job is valid.
std::vector<FieldError> ValidateStellaJob(const StellaJob& job);

// "<path>: <message>" lines joined by '\n'.
std::string FormatFieldErrors(const std::vector<FieldError>& errors);

// Ok when `errors` is empty, else kInvalidArgument with FormatFieldErrors.
Status FieldErrorsToStatus(const std::vector<FieldError>& errors);

// Parses one YAML (or JSON) document, fills defaults and validates. Fails with
// kInvalidArgument listing every problem, one per line in document order:
// structural ones (bad YAML syntax with line and column, unknown or duplicate
// fields, wrong types, missing required fields) and ValidateStellaJob's. A
// null value counts as absent. A manifest of another kind is reported with
// that one error only.
StatusOr<StellaJob> ParseStellaJob(const std::string& yaml_text);

// Reads and parses a manifest file. A missing file is kNotFound; every line of
// an error message is prefixed with "<path>: ".
StatusOr<StellaJob> LoadStellaJobFile(const std::string& path);

// A manifest that ParseStellaJob turns back into an equal StellaJob (for a job
// that validates). Every spec field is written, defaults included; absent
// optionals, empty strings/maps/lists of Kubernetes-only fields and an absent
// status are left out. Enum members must hold declared values (aborts
// otherwise; ValidateStellaJob reports such values).
std::string ToYaml(const StellaJob& job);

}  // namespace stella::spec

#endif  // STELLA_SRC_SPEC_STELLA_JOB_H_
