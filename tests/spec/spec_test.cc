#include "src/spec/stella_job.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <ostream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/base/dns_name.h"

namespace stella::spec {

// Readable failures for EXPECT_EQ on whole jobs.
void PrintTo(const StellaJob& job, std::ostream* os) { *os << "\n" << ToYaml(job); }

namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A small valid manifest; tests derive broken ones from it with Replace.
constexpr char kBase[] = R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata:
  name: job
spec:
  model:
    name: mlp
  dataset:
    name: fashion-mnist
  batchSize: 64
  training:
    steps: 1000
  sync:
    mode: stella
  clusters:
    - name: a
      workers: 2
    - name: b
      workers: 1
    - name: c
)";

// kBase with the single occurrence of `from` replaced by `to`.
std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  EXPECT_EQ(text.find(from, pos + 1), std::string::npos) << from << " occurs twice";
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// The error message of a manifest that must fail with kInvalidArgument.
std::string ErrorOf(const std::string& yaml) {
  StatusOr<StellaJob> job = ParseStellaJob(yaml);
  EXPECT_FALSE(job.ok()) << yaml;
  if (job.ok()) return "";
  EXPECT_EQ(job.status().code(), StatusCode::kInvalidArgument) << job.status().ToString();
  return job.status().message();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string WriteTempFile(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// A fully populated job, every field away from its default.
StellaJob FullJob() {
  StellaJob j;
  j.metadata.name = "full-job";
  j.metadata.namespace_name = "team-a";
  j.metadata.labels = {{"app", "stella"}, {"version", "123"}, {"flag", "true"}, {"empty", ""}};
  j.metadata.annotations = {{"note", "line one\nline two: \"quoted\""}, {"yes", "no"}, {"unicode", "caf\xc3\xa9"}};
  j.metadata.generation = 7;
  j.metadata.uid = "0b5e-44";
  j.metadata.resource_version = "12345";
  j.spec.model.name = "cnn";
  j.spec.model.hidden = 256;
  j.spec.dataset.name = "fashion-mnist";
  j.spec.dataset.path = "/data/fm";
  j.spec.optimizer.name = OptimizerKind::kSgd;
  j.spec.optimizer.learning_rate = 0.1;
  j.spec.optimizer.momentum = 1.0 / 3.0;
  j.spec.optimizer.nesterov = true;
  j.spec.optimizer.weight_decay = 5e-4;
  j.spec.optimizer.beta1 = 0.8;
  j.spec.optimizer.beta2 = 0.99;
  j.spec.optimizer.epsilon = 1e-7;
  j.spec.batch_size = 128;
  j.spec.training.steps = 5000000000LL;
  j.spec.training.target_accuracy = 0.9;
  j.spec.training.eval_every = 50;
  j.spec.training.seed = 18446744073709551615ULL;
  j.spec.sync.mode = SyncMode::kStella;
  j.spec.sync.density = 0.05;
  j.spec.sync.min_density = 0.01;
  j.spec.sync.max_density = 0.5;
  j.spec.sync.compressor = CompressorKind::kRandomK;
  j.spec.sync.value_precision = ValuePrecision::kBf16;
  j.spec.sync.staleness = 8;
  j.spec.sync.error_feedback = false;
  j.spec.sync.momentum_correction = true;
  j.spec.sync.tuner = false;
  ClusterSpec hub;
  hub.name = "hub";
  hub.workers = 4;
  hub.devices_per_worker = 0;
  hub.wan = {1000.5, 12.25};
  ClusterSpec edge;
  edge.name = "edge";
  edge.workers = 2;
  edge.devices_per_worker = 8;
  edge.kubeconfig_secret = SecretKeyRef{"edge-kubeconfig", "config"};
  edge.image = "registry.example/stella:1.0";
  edge.resources.limits = {{"nvidia.com/gpu", "1"}, {"memory", "8Gi"}};
  edge.resources.requests = {{"cpu", "500m"}};
  edge.node_selector = {{"pool", "gpu"}};
  Toleration any_gpu;
  any_gpu.key = "nvidia.com/gpu";
  any_gpu.op = TolerationOperator::kExists;
  any_gpu.effect = TolerationEffect::kNoSchedule;
  Toleration evict;
  evict.key = "node.kubernetes.io/unreachable";
  evict.value = "on";
  evict.effect = TolerationEffect::kNoExecute;
  evict.toleration_seconds = 300;
  edge.tolerations = {any_gpu, evict};
  edge.gateway = {GatewayType::kNodePort, 30500};
  j.spec.clusters = {hub, edge};
  j.spec.metrics.port = 0;
  j.spec.checkpoint = {"/ckpt", 1000, "ckpt-claim"};
  j.spec.run_policy.suspend = true;
  j.spec.run_policy.backoff_limit = 0;
  j.spec.run_policy.active_deadline_seconds = 3600;
  j.spec.run_policy.ttl_seconds_after_finished = 0;
  j.spec.run_policy.restart_policy = RestartPolicy::kNever;
  JobStatus status;
  status.phase = "Running";
  status.observed_generation = 7;
  status.step = 4200;
  status.samples_per_second = 1234.5;
  status.density = 0.0375;
  status.message = "training";
  j.status = status;
  return j;
}

TEST(SpecTest, DemoManifestParsesWithDefaults) {
  const std::string path = std::string(STELLA_SOURCE_DIR) + "/examples/demo.yaml";
  StatusOr<StellaJob> loaded = LoadStellaJobFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const StellaJob& j = *loaded;
  EXPECT_EQ(j.api_version, "stella.dev/v1alpha1");
  EXPECT_EQ(j.kind, "StellaJob");
  EXPECT_EQ(j.metadata.name, "fashion-cnn-demo");
  EXPECT_EQ(j.metadata.namespace_name, "default");
  EXPECT_TRUE(j.metadata.labels.empty());
  EXPECT_FALSE(j.metadata.generation.has_value());
  EXPECT_EQ(j.spec.model.name, "cnn");
  EXPECT_EQ(j.spec.model.hidden, 0);
  EXPECT_EQ(j.spec.dataset.name, "fashion-mnist");
  EXPECT_EQ(j.spec.dataset.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(j.spec.optimizer.name, OptimizerKind::kAdam);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.learning_rate, 0.002);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.momentum, 0.9);
  EXPECT_FALSE(j.spec.optimizer.nesterov);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.beta1, 0.9);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(j.spec.optimizer.epsilon, 1e-8);
  EXPECT_EQ(j.spec.batch_size, 64);
  EXPECT_EQ(j.spec.training.steps, 0);
  EXPECT_DOUBLE_EQ(j.spec.training.epochs, 2.0);
  EXPECT_DOUBLE_EQ(j.spec.training.target_accuracy, 0.86);
  EXPECT_EQ(j.spec.training.eval_every, 100);
  EXPECT_EQ(j.spec.training.seed, 1u);
  EXPECT_EQ(j.spec.sync.mode, SyncMode::kStella);
  EXPECT_DOUBLE_EQ(j.spec.sync.density, 0.01);
  EXPECT_DOUBLE_EQ(j.spec.sync.min_density, 0.001);
  EXPECT_DOUBLE_EQ(j.spec.sync.max_density, 0.1);
  EXPECT_EQ(j.spec.sync.compressor, CompressorKind::kCacheline);
  EXPECT_EQ(j.spec.sync.value_precision, ValuePrecision::kFp32);
  EXPECT_EQ(j.spec.sync.staleness, 1);
  EXPECT_TRUE(j.spec.sync.error_feedback);
  EXPECT_FALSE(j.spec.sync.momentum_correction);
  EXPECT_TRUE(j.spec.sync.tuner);
  ASSERT_EQ(j.spec.clusters.size(), 2u);
  EXPECT_EQ(j.spec.clusters[0].name, "onprem");
  EXPECT_EQ(j.spec.clusters[1].name, "cloud");
  for (const ClusterSpec& c : j.spec.clusters) {
    EXPECT_EQ(c.workers, 1);
    EXPECT_EQ(c.devices_per_worker, 1);
    EXPECT_DOUBLE_EQ(c.wan.bandwidth_mbps, 10.0);
    EXPECT_DOUBLE_EQ(c.wan.latency_ms, 5.0);
    EXPECT_FALSE(c.kubeconfig_secret.has_value());
    EXPECT_TRUE(c.image.empty());
    EXPECT_TRUE(c.tolerations.empty());
    EXPECT_EQ(c.gateway.type, GatewayType::kLoadBalancer);
    EXPECT_EQ(c.gateway.port, 29500);
  }
  EXPECT_EQ(j.spec.metrics.port, 9400);
  EXPECT_EQ(j.spec.checkpoint.path, "");
  EXPECT_EQ(j.spec.checkpoint.interval_steps, 0);
  EXPECT_FALSE(j.spec.run_policy.suspend);
  EXPECT_EQ(j.spec.run_policy.backoff_limit, 3);
  EXPECT_FALSE(j.spec.run_policy.active_deadline_seconds.has_value());
  EXPECT_FALSE(j.spec.run_policy.ttl_seconds_after_finished.has_value());
  EXPECT_EQ(j.spec.run_policy.restart_policy, RestartPolicy::kOnFailure);
  EXPECT_FALSE(j.status.has_value());
  EXPECT_EQ(j.TotalWorkers(), 2);
  EXPECT_TRUE(ValidateStellaJob(j).empty());
}

TEST(SpecTest, KubernetesFieldsAndStatusParse) {
  StatusOr<StellaJob> job = ParseStellaJob(Replace(kBase, "    - name: c\n", R"(    - name: c
      devicesPerWorker: 0
      kubeconfigSecret: {name: edge-kc}
      image: stella:dev
      resources:
        limits: {nvidia.com/gpu: 1, cpu: 2.5, memory: 4Gi}
        requests: {cpu: "500m"}
      nodeSelector: {pool: gpu}
      tolerations:
        - {operator: Exists}
        - {key: k, value: v, effect: NoExecute, tolerationSeconds: 30}
      gateway: {type: HostNetwork, port: 31000}
status:
  phase: Running
  observedGeneration: 3
  step: 120
  samplesPerSecond: 950.5
  density: 0.02
  message: ok
)"));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const ClusterSpec& c = job->spec.clusters[2];
  EXPECT_EQ(c.devices_per_worker, 0);
  ASSERT_TRUE(c.kubeconfig_secret.has_value());
  EXPECT_EQ(c.kubeconfig_secret->name, "edge-kc");
  EXPECT_EQ(c.kubeconfig_secret->key, "kubeconfig");
  EXPECT_EQ(c.image, "stella:dev");
  EXPECT_EQ(c.resources.limits, (StringMap{{"nvidia.com/gpu", "1"}, {"cpu", "2.5"}, {"memory", "4Gi"}}));
  EXPECT_EQ(c.resources.requests, (StringMap{{"cpu", "500m"}}));
  EXPECT_EQ(c.node_selector, (StringMap{{"pool", "gpu"}}));
  ASSERT_EQ(c.tolerations.size(), 2u);
  EXPECT_EQ(c.tolerations[0].op, TolerationOperator::kExists);
  EXPECT_EQ(c.tolerations[0].effect, TolerationEffect::kAll);
  EXPECT_EQ(c.tolerations[1].op, TolerationOperator::kEqual);
  EXPECT_EQ(c.tolerations[1].effect, TolerationEffect::kNoExecute);
  EXPECT_EQ(c.tolerations[1].toleration_seconds, std::optional<int64_t>(30));
  EXPECT_EQ(c.gateway.type, GatewayType::kHostNetwork);
  EXPECT_EQ(c.gateway.port, 31000);
  ASSERT_TRUE(job->status.has_value());
  EXPECT_EQ(job->status->phase, "Running");
  EXPECT_EQ(job->status->observed_generation, 3);
  EXPECT_EQ(job->status->step, 120);
  EXPECT_DOUBLE_EQ(job->status->samples_per_second, 950.5);
  EXPECT_EQ(job->TotalWorkers(), 4);
}

TEST(SpecTest, NullValuesMeanDefaultsAndJsonIsAccepted) {
  StatusOr<StellaJob> job =
      ParseStellaJob(Replace(kBase, "  batchSize: 64\n", "  batchSize: null\n  optimizer:\n  metrics: ~\n"));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->spec.batch_size, 64);
  EXPECT_EQ(job->spec.optimizer.name, OptimizerKind::kAdam);
  EXPECT_EQ(job->spec.metrics.port, 9400);

  // What the Kubernetes API server hands the operator is JSON.
  StatusOr<StellaJob> from_json = ParseStellaJob(R"({"apiVersion": "stella.dev/v1alpha1",
    "kind": "StellaJob", "metadata": {"name": "j", "generation": 2},
    "spec": {"model": {"name": "mlp"}, "dataset": {"name": "fashion-mnist"},
             "training": {"steps": 10}, "clusters": [{"name": "a", "workers": 3}]}})");
  ASSERT_TRUE(from_json.ok()) << from_json.status().ToString();
  EXPECT_EQ(from_json->metadata.generation, std::optional<int64_t>(2));
  EXPECT_EQ(from_json->TotalWorkers(), 3);
}

TEST(SpecTest, RoundTripsThroughYaml) {
  StellaJob full = FullJob();
  ASSERT_THAT(ValidateStellaJob(full), ElementsAre());
  std::string yaml = ToYaml(full);
  StatusOr<StellaJob> back = ParseStellaJob(yaml);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
  EXPECT_EQ(*back, full) << yaml;
  EXPECT_EQ(ToYaml(*back), yaml);
  // Strings that look like other types are quoted so they stay strings.
  EXPECT_THAT(yaml, HasSubstr("version: \"123\""));
  EXPECT_THAT(yaml, HasSubstr("flag: \"true\""));
  EXPECT_THAT(yaml, HasSubstr("\"yes\": \"no\""));

  StatusOr<StellaJob> demo = LoadStellaJobFile(std::string(STELLA_SOURCE_DIR) + "/examples/demo.yaml");
  ASSERT_TRUE(demo.ok()) << demo.status().ToString();
  StatusOr<StellaJob> demo_back = ParseStellaJob(ToYaml(*demo));
  ASSERT_TRUE(demo_back.ok()) << demo_back.status().ToString();
  EXPECT_EQ(*demo_back, *demo);

  // Equality really compares fields.
  StellaJob changed = full;
  changed.spec.clusters[1].tolerations[1].toleration_seconds.reset();
  EXPECT_NE(changed, full);
  changed = full;
  changed.spec.optimizer.epsilon = std::nextafter(1e-7, 1.0);
  EXPECT_NE(changed, full);
  EXPECT_NE(ParseStellaJob(ToYaml(changed)).value(), full);
}

TEST(SpecTest, BadYamlSyntaxReportsLineAndColumn) {
  std::string error = ErrorOf(Replace(kBase, "    name: mlp\n", "    name: [mlp\n"));
  EXPECT_THAT(error, HasSubstr("invalid YAML at line "));
  EXPECT_THAT(error, HasSubstr(", column "));
  std::string unclosed = ErrorOf("apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata: {name: x\n");
  EXPECT_THAT(unclosed, HasSubstr("invalid YAML at line 4"));
  std::string bad_indent = ErrorOf("a: 1\n b: 2\n");
  EXPECT_THAT(bad_indent, HasSubstr("invalid YAML at line 2, column"));
}

// Found by tests/fuzz/manifest_fuzzer: yaml-cpp 0.7's LoadAll looped forever,
// allocating until the process died, on a token that cannot start a document
// (jbeder/yaml-cpp#1040), e.g. a stray comma after a JSON object.
TEST(SpecTest, StrayFlowTokenIsASyntaxErrorNotAnEndlessLoop) {
  EXPECT_EQ(ErrorOf(","),
            "invalid YAML at line 1, column 1: unexpected token where a document "
            "or value should start");
  EXPECT_THAT(ErrorOf("{\"apiVersion\": \"stella.dev/v1alpha1\"},\n"), HasSubstr("invalid YAML at line 1, column 38"));
  EXPECT_THAT(ErrorOf(std::string(kBase) + "---\n[1],\n"), HasSubstr("invalid YAML at line 22, column 4"));
  // Several documents, empty ones included, still parse as before.
  EXPECT_TRUE(ParseStellaJob(std::string("---\n---\n") + kBase).ok());
}

// Found by tests/fuzz/manifest_fuzzer: yaml-cpp's parser passes any bytes
// through, but its emitter writes U+FFFD for invalid UTF-8 and noncharacters,
// so such a manifest did not survive ToYaml. YAML text is Unicode: reject them.
TEST(SpecTest, StringsMustBeValidUtf8) {
  const std::string bad[] = {
      "\xff",              // never valid
      "\xc3",              // truncated two-byte sequence
      "\xc0\x80",          // overlong NUL
      "\xe0\x80\xaf",      // overlong '/'
      "\xed\xa0\x80",      // surrogate U+D800
      "\xf4\x90\x80\x80",  // U+110000
      "\xef\xbf\xbe",      // noncharacter U+FFFE
      "\xef\xb7\x90",      // noncharacter U+FDD0
  };
  for (const std::string& value : bad) {
    std::string error =
        ErrorOf(Replace(kBase, "  name: job\n", "  name: job\n  annotations: {note: \"a" + value + "\"}\n"));
    EXPECT_THAT(error, HasSubstr("metadata.annotations[\"note\"]: expected UTF-8 text, got an "
                                 "invalid or noncharacter byte sequence at byte 1"));
    EXPECT_THAT(ErrorOf(Replace(kBase, "  name: job\n", "  name: job\n  labels: {\"" + value + "\": x}\n")),
                HasSubstr("metadata.labels: expected UTF-8 text"));
    EXPECT_THAT(ErrorOf(std::string(kBase) + "status: {phase: \"" + value + "\"}\n"),
                HasSubstr("status.phase: expected UTF-8 text"));
  }
  // Valid multi-byte text is kept as is and survives ToYaml.
  StatusOr<StellaJob> job = ParseStellaJob(Replace(
      kBase, "  name: job\n",
      "  name: job\n  annotations: {note: \"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80 \xef\xbf\xbd\"}\n"));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->metadata.annotations.at("note"), "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80 \xef\xbf\xbd");
  StatusOr<StellaJob> back = ParseStellaJob(ToYaml(*job));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *job);
}

// Found by tests/fuzz/manifest_fuzzer: yaml-cpp wrote "stella:0.1\r" plain,
// and the reader dropped the "\r". Such strings are now double-quoted.
TEST(SpecTest, ControlAndLineBreakCharactersSurviveToYaml) {
  StellaJob job = ParseStellaJob(kBase).value();
  using namespace std::string_literals;  // "\0" inside a string
  const std::string values[] = {
      "stella:0.1\r"s, "a\rb"s,      "\tx\t"s,    "bell\x07"s,   "nul\0nul"s, "del\x7f"s,
      "nel\u0085x"s,   "ls\u2028x"s, "ps\u2029"s, "nbsp\u00a0"s, " lead"s,    "trail "s,
  };
  for (const std::string& v : values) {
    job.spec.clusters[0].image = v;
    job.metadata.annotations = {{v, v}};
    job.status.emplace();
    job.status->message = v;
    ASSERT_THAT(ValidateStellaJob(job), ElementsAre());
    const std::string yaml = ToYaml(job);
    StatusOr<StellaJob> back = ParseStellaJob(yaml);
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
    EXPECT_EQ(back->spec.clusters[0].image, v) << yaml;
    EXPECT_EQ(back->metadata.annotations, job.metadata.annotations) << yaml;
    EXPECT_EQ(back->status->message, v) << yaml;
    EXPECT_EQ(*back, job) << yaml;
  }
}

TEST(SpecTest, EmptyAndNonManifestDocumentsAreRejected) {
  for (const char* text : {"", "   \n", "# just a comment\n", "---\n"}) {
    EXPECT_THAT(ErrorOf(text), HasSubstr("empty document")) << "input: " << text;
  }
  EXPECT_THAT(ErrorOf("- a\n- b\n"), HasSubstr("expected a StellaJob manifest"));
  EXPECT_THAT(ErrorOf("just text"), HasSubstr("got \"just text\""));
  EXPECT_THAT(ErrorOf(std::string(kBase) + "---\n" + kBase), HasSubstr("expected one YAML document, got 2"));
  // Another kind of object is reported as such, without a flood of field errors.
  EXPECT_EQ(ErrorOf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\n"),
            "kind: must be \"StellaJob\", got \"Deployment\"");
}

TEST(SpecTest, UnknownFieldsAtEveryDepth) {
  std::string yaml = Replace(kBase, "metadata:\n", "specs: {}\nmetadata:\n");
  yaml = Replace(yaml, "  model:\n", "  modle: {}\n  model:\n");
  yaml = Replace(yaml, "      workers: 2\n", "      workers: 2\n      wan:\n        bandwdthMbps: 10\n");
  yaml = Replace(yaml, "    - name: c\n", "    - name: c\n      tolerations: [{key: k, opertor: Exists}]\n");
  EXPECT_THAT(Lines(ErrorOf(yaml)), ElementsAre("specs: unknown field", "spec.modle: unknown field",
                                                "spec.clusters[0].wan.bandwdthMbps: unknown field",
                                                "spec.clusters[2].tolerations[0].opertor: unknown field"));
  EXPECT_EQ(ErrorOf(Replace(kBase, "    name: mlp\n", "    name: mlp\n    name: cnn\n")),
            "spec.model.name: duplicate field");
}

TEST(SpecTest, WrongTypesAreReported) {
  auto error_for = [](const std::string& from, const std::string& to) { return ErrorOf(Replace(kBase, from, to)); };
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: sixty"), "spec.batchSize: expected an integer, got \"sixty\"");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: 1.5"), "spec.batchSize: expected an integer, got 1.5");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: \"64\""), "spec.batchSize: expected an integer, got \"64\"");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: 99999999999"),
            "spec.batchSize: expected a 32-bit integer, got 99999999999");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: [64]"), "spec.batchSize: expected an integer, got a list");
  EXPECT_EQ(error_for("steps: 1000", "steps: 99999999999999999999"),
            "spec.training.steps: expected a 64-bit integer, got 99999999999999999999");
  EXPECT_EQ(error_for("steps: 1000", "steps: 1000\n    seed: -1"),
            "spec.training.seed: expected an unsigned 64-bit integer, got -1");
  EXPECT_EQ(error_for("  clusters:\n", "  clusters:\n    x: {}\n  clusterz:\n"),
            "spec.clusters: expected a list, got a map\nspec.clusterz: unknown field");
  EXPECT_EQ(error_for("    name: mlp", "    name: 123"), "spec.model.name: expected a string, got 123");
  EXPECT_EQ(error_for("  name: job", "  name: job\n  labels: {version: 2}"),
            "metadata.labels[\"version\"]: expected a string, got 2");
  EXPECT_EQ(error_for("    mode: stella", "    mode: stella\n    tuner: yes"),
            "spec.sync.tuner: expected a boolean (true or false), got \"yes\"");
  EXPECT_EQ(error_for("    mode: stella", "    density: fast"), "spec.sync.density: expected a number, got \"fast\"");
  EXPECT_EQ(error_for("    mode: stella", "    density: .inf"),
            "spec.sync.density: expected a finite number, got .inf");
  EXPECT_EQ(error_for("  model:\n    name: mlp\n", "  model: mlp\n"), "spec.model: expected a map, got \"mlp\"");
  EXPECT_EQ(error_for("    - name: c\n", "    - c\n"), "spec.clusters[2]: expected a map, got \"c\"");
}

TEST(SpecTest, CheckpointClaimParsesAndRoundTrips) {
  StatusOr<StellaJob> job = ParseStellaJob(
      Replace(kBase, "  batchSize: 64\n", "  batchSize: 64\n  checkpoint: {path: /c, claimName: ckpt.team-a}\n"));
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->spec.checkpoint.claim_name, "ckpt.team-a");
  StatusOr<StellaJob> again = ParseStellaJob(ToYaml(*job));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->spec.checkpoint, job->spec.checkpoint);
}

TEST(SpecTest, OutOfRangeValuesAreReported) {
  auto error_for = [](const std::string& from, const std::string& to) { return ErrorOf(Replace(kBase, from, to)); };
  EXPECT_EQ(error_for("      workers: 1\n", "      workers: 0\n"), "spec.clusters[1].workers: must be >= 1, got 0");
  EXPECT_EQ(error_for("      workers: 2\n", "      workers: 1025\n"),
            "spec.clusters[0].workers: must be <= 1024, got 1025");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: 0"), "spec.batchSize: must be >= 1, got 0");
  EXPECT_EQ(error_for("batchSize: 64", "batchSize: 65537"), "spec.batchSize: must be <= 65536, got 65537");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  optimizer: {learningRate: 0}\n"),
            "spec.optimizer.learningRate: must be > 0, got 0");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  optimizer: {momentum: 1, beta2: 1.5, epsilon: -1e-9}\n"),
            "spec.optimizer.momentum: must be < 1, got 1\n"
            "spec.optimizer.beta2: must be < 1, got 1.5\n"
            "spec.optimizer.epsilon: must be > 0, got -1e-09");
  EXPECT_EQ(error_for("    mode: stella", "    mode: stella\n    staleness: 9"),
            "spec.sync.staleness: must be <= 8, got 9");
  EXPECT_EQ(error_for("    mode: stella", "    mode: allreduce"),
            "spec.sync.mode: must be one of ddp, stella, got \"allreduce\"");
  EXPECT_EQ(error_for("    - name: c\n", "    - name: c\n      wan: {latencyMs: 20000}\n"),
            "spec.clusters[2].wan.latencyMs: must be <= 10000, got 20000");
  EXPECT_EQ(error_for("    - name: c\n", "    - name: c\n      gateway: {port: 0}\n"),
            "spec.clusters[2].gateway.port: must be >= 1, got 0");
  EXPECT_EQ(error_for("steps: 1000", "steps: 1000\n    targetAccuracy: 1.5\n    evalEvery: 0"),
            "spec.training.targetAccuracy: must be <= 1, got 1.5\n"
            "spec.training.evalEvery: must be >= 1, got 0");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  metrics: {port: 70000}\n"),
            "spec.metrics.port: must be <= 65535, got 70000");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  runPolicy: {backoffLimit: -1, activeDeadlineSeconds: 0}\n"),
            "spec.runPolicy.backoffLimit: must be >= 0, got -1\n"
            "spec.runPolicy.activeDeadlineSeconds: must be >= 1, got 0");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  checkpoint: {intervalSteps: 100}\n"),
            "spec.checkpoint.path: must be set because spec.checkpoint.intervalSteps is 100, got \"\"");
  EXPECT_EQ(error_for("  batchSize: 64\n", "  checkpoint: {claimName: Ckpt_Claim}\n"),
            "spec.checkpoint.path: must be set because spec.checkpoint.claimName is \"Ckpt_Claim\" (the claim is "
            "mounted there), got \"\"\n"
            "spec.checkpoint.claimName: must be a DNS-1123 subdomain (a PersistentVolumeClaim name: lowercase "
            "letters, digits, '-' and '.', at most 253 characters), got \"Ckpt_Claim\"");
  EXPECT_EQ(error_for("    - name: c\n", "    - name: c\n      resources: {limits: {cpu: two}}\n"),
            "spec.clusters[2].resources.limits[\"cpu\"]: must be a Kubernetes quantity such as "
            "\"2\", \"500m\" or \"1Gi\", got \"two\"");
}

TEST(SpecTest, MissingRequiredFieldsAreReported) {
  EXPECT_EQ(ErrorOf(Replace(kBase,
                            "  clusters:\n    - name: a\n      workers: 2\n    - name: b\n"
                            "      workers: 1\n    - name: c\n",
                            "")),
            "spec.clusters: required field is missing");
  EXPECT_EQ(ErrorOf(Replace(kBase, "    - name: c\n", "    - workers: 3\n")),
            "spec.clusters[2].name: required field is missing");
  EXPECT_EQ(ErrorOf(Replace(kBase, "  model:\n    name: mlp\n", "  model: {hidden: 8}\n")),
            "spec.model.name: required field is missing (or set spec.model.torchscript to your own model)");
  EXPECT_EQ(ErrorOf(Replace(kBase, "apiVersion: stella.dev/v1alpha1\n", "")), "apiVersion: required field is missing");
  EXPECT_EQ(ErrorOf(Replace(kBase, "apiVersion: stella.dev/v1alpha1\n", "apiVersion: stella.dev/v1\n")),
            "apiVersion: must be \"stella.dev/v1alpha1\", got \"stella.dev/v1\"");
  EXPECT_EQ(ErrorOf("apiVersion: stella.dev/v1alpha1\nkind: StellaJob\n"),
            "metadata: required field is missing\nspec: required field is missing");
  EXPECT_EQ(ErrorOf(Replace(kBase, "  clusters:\n", "  clusters: []\n  x:\n")),
            "spec.clusters: must have 1 to 64 entries, got 0\nspec.x: unknown field");
}

TEST(SpecTest, TorchScriptModelAndOwnDataParseAndRoundTrip) {
  const std::string lm =
      Replace(Replace(kBase, "    name: mlp\n", "    torchscript: /m/gpt.pt\n    task: language-model\n"),
              "    name: fashion-mnist\n",
              "    format: tokens\n    path: /d/train.bin\n    validationPath: /d/val.bin\n"
              "    sequenceLength: 128\n");
  StatusOr<StellaJob> job = ParseStellaJob(lm);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->spec.model.torchscript, "/m/gpt.pt");
  EXPECT_EQ(job->spec.model.task, ModelTask::kLanguageModel);
  EXPECT_EQ(job->spec.dataset.format, DatasetFormat::kTokens);
  EXPECT_EQ(job->spec.dataset.sequence_length, 128);
  EXPECT_EQ(*ParseStellaJob(ToYaml(*job)), *job);

  const std::string npy =
      Replace(Replace(kBase, "    name: mlp\n", "    torchscript: m.pt\n"), "    name: fashion-mnist\n",
              "    format: npy\n    path: x.npy\n    labelsPath: y.npy\n"
              "    validationPath: vx.npy\n    validationLabelsPath: vy.npy\n");
  job = ParseStellaJob(npy);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->spec.dataset.labels_path, "y.npy");
  EXPECT_EQ(job->spec.dataset.validation_labels_path, "vy.npy");
  EXPECT_EQ(*ParseStellaJob(ToYaml(*job)), *job);
  StellaJob changed = *job;
  changed.spec.dataset.sequence_length = 7;
  EXPECT_NE(changed, *job);  // equality sees every new field
  changed = *job;
  changed.spec.model.task = ModelTask::kLanguageModel;
  EXPECT_NE(changed, *job);
}

TEST(SpecTest, OwnModelAndDataRulesNameTheField) {
  EXPECT_EQ(ErrorOf(Replace(kBase, "    name: mlp\n", "    name: mlp\n    torchscript: m.pt\n")),
            "spec.model.torchscript: must not be set together with spec.model.name (\"mlp\"): pick the built-in "
            "model or your own, got \"m.pt\"");
  EXPECT_THAT(ErrorOf(Replace(kBase, "    name: fashion-mnist\n", "    format: tokens\n")),
              AllOf(HasSubstr("spec.model.name: built-in models train on spec.dataset.format idx"),
                    HasSubstr("spec.dataset.validationPath: required with format tokens"),
                    HasSubstr("spec.model.task: must be language-model with spec.dataset.format tokens")));
  EXPECT_THAT(ErrorOf(Replace(Replace(kBase, "    name: mlp\n", "    torchscript: m.pt\n"), "    name: fashion-mnist\n",
                              "    format: npy\n    validationPath: v.npy\n")),
              AllOf(HasSubstr("spec.dataset.labelsPath: required with format npy"),
                    HasSubstr("spec.dataset.validationLabelsPath: required with format npy")));
  EXPECT_THAT(ErrorOf(Replace(kBase, "    name: mlp\n", "    torchscript: m.pt\n    hidden: 8\n")),
              HasSubstr("spec.model.hidden: sets a built-in model's width; not used with spec.model.torchscript"));
  EXPECT_THAT(ErrorOf(Replace(kBase, "    name: mlp\n", "    name: mlp\n    task: language-model\n")),
              HasSubstr("spec.model.task: built-in models are classifiers"));
  EXPECT_THAT(ErrorOf(Replace(kBase, "    name: fashion-mnist\n", "    name: fashion-mnist\n    sequenceLength: 0\n")),
              HasSubstr("spec.dataset.sequenceLength: must be >= 1, got 0"));
  EXPECT_THAT(ErrorOf(Replace(kBase, "    name: fashion-mnist\n", "    name: fashion-mnist\n    format: csv\n")),
              HasSubstr("spec.dataset.format: must be one of idx, tokens, npy"));
}

TEST(SpecTest, DuplicateClusterNames) {
  std::string yaml = Replace(kBase, "    - name: c\n", "    - name: a\n");
  EXPECT_EQ(ErrorOf(yaml), "spec.clusters[2].name: duplicate cluster name \"a\" (also spec.clusters[0].name)");
}

TEST(SpecTest, StepsAndEpochsAreExclusive) {
  EXPECT_EQ(ErrorOf(Replace(kBase, "steps: 1000", "steps: 1000\n    epochs: 2.5")),
            "spec.training: set only one of steps and epochs, got steps=1000 and epochs=2.5");
  EXPECT_THAT(ErrorOf(Replace(kBase, "steps: 1000", "steps: 0")),
              HasSubstr("spec.training: set spec.training.steps or spec.training.epochs"));
  EXPECT_THAT(ErrorOf(Replace(kBase, "  training:\n    steps: 1000\n", "")),
              HasSubstr("spec.training: set spec.training.steps or spec.training.epochs"));
  // A bad steps value is reported once, not also as "neither is set".
  EXPECT_EQ(ErrorOf(Replace(kBase, "steps: 1000", "steps: many")),
            "spec.training.steps: expected an integer, got \"many\"");
}

TEST(SpecTest, DensityBoundsAreOrdered) {
  auto sync = [](const std::string& fields) {
    return ErrorOf(Replace(kBase, "    mode: stella\n", "    mode: stella\n" + fields));
  };
  EXPECT_EQ(sync("    density: 0.0005\n"), "spec.sync.density: must be >= spec.sync.minDensity (0.001), got 0.0005");
  EXPECT_EQ(sync("    density: 0.5\n"), "spec.sync.density: must be <= spec.sync.maxDensity (0.1), got 0.5");
  EXPECT_EQ(sync("    minDensity: 0\n"), "spec.sync.minDensity: must be > 0, got 0");
  EXPECT_EQ(sync("    maxDensity: 1.5\n"), "spec.sync.maxDensity: must be <= 1, got 1.5");
  EXPECT_EQ(sync("    density: 0\n    minDensity: 0.2\n"),
            "spec.sync.density: must be > 0, got 0\n"
            "spec.sync.minDensity: must be <= spec.sync.maxDensity (0.1), got 0.2");
  EXPECT_TRUE(ParseStellaJob(Replace(kBase, "    mode: stella\n",
                                     "    mode: stella\n    density: 1\n    minDensity: 1\n"
                                     "    maxDensity: 1\n"))
                  .ok());
}

TEST(SpecTest, DnsNamesAreChecked) {
  EXPECT_TRUE(IsDns1123Label("a"));
  EXPECT_TRUE(IsDns1123Label("fashion-cnn-2"));
  EXPECT_TRUE(IsDns1123Label(std::string(63, 'x')));
  EXPECT_FALSE(IsDns1123Label(std::string(64, 'x')));
  EXPECT_FALSE(IsDns1123Label(""));
  EXPECT_FALSE(IsDns1123Label("-a"));
  EXPECT_FALSE(IsDns1123Label("a-"));
  EXPECT_FALSE(IsDns1123Label("Upper"));
  EXPECT_FALSE(IsDns1123Label("a_b"));
  EXPECT_FALSE(IsDns1123Label("a.b"));

  std::string error = ErrorOf(Replace(kBase, "  name: job", "  name: Fashion_CNN"));
  EXPECT_THAT(error, HasSubstr("metadata.name: must be a DNS-1123 label"));
  EXPECT_THAT(error, HasSubstr("got \"Fashion_CNN\""));
  EXPECT_THAT(ErrorOf(Replace(kBase, "    - name: c\n", "    - name: " + std::string(64, 'c') + "\n")),
              HasSubstr("spec.clusters[2].name: must be a DNS-1123 label"));
  EXPECT_THAT(ErrorOf(Replace(kBase, "  name: job", "  name: job\n  namespace: Team")),
              HasSubstr("metadata.namespace: must be a DNS-1123 label, got \"Team\""));
}

TEST(SpecTest, TolerationsFollowKubernetesRules) {
  EXPECT_EQ(ErrorOf(Replace(kBase, "    - name: c\n",
                            "    - name: c\n      tolerations:\n        - {value: v}\n"
                            "        - {key: k, operator: Exists, value: v, tolerationSeconds: 5}\n"
                            "        - {key: k, effect: NoRun}\n")),
            "spec.clusters[2].tolerations[0].operator: must be Exists when key is empty, got Equal\n"
            "spec.clusters[2].tolerations[1].value: must be empty when operator is Exists, got \"v\"\n"
            "spec.clusters[2].tolerations[1].tolerationSeconds: requires effect NoExecute, got "
            "effect \"\"\n"
            "spec.clusters[2].tolerations[2].effect: must be one of \"\", NoSchedule, "
            "PreferNoSchedule, NoExecute, got \"NoRun\"");
}

TEST(SpecTest, EveryProblemIsReportedTogether) {
  std::string yaml = Replace(kBase, "  name: job", "  name: Bad_Name");
  yaml = Replace(yaml, "    name: mlp", "    name: resnet");
  yaml = Replace(yaml, "batchSize: 64", "batchSize: sixty");
  yaml = Replace(yaml, "steps: 1000", "steps: 1000\n    epochs: 1");
  yaml = Replace(yaml, "    mode: stella", "    mode: allreduce\n    extra: 1");
  yaml = Replace(yaml, "      workers: 1\n", "      workers: 0\n");
  yaml = Replace(yaml, "    - name: c\n", "    - name: a\n");
  std::vector<std::string> lines = Lines(ErrorOf(yaml));
  // Structural and semantic problems together, in document order.
  EXPECT_THAT(lines, ElementsAre(HasSubstr("metadata.name: must be a DNS-1123 label"),
                                 "spec.model.name: must be one of mlp, cnn, got \"resnet\"",
                                 "spec.batchSize: expected an integer, got \"sixty\"",
                                 HasSubstr("spec.training: set only one of steps and epochs"),
                                 "spec.sync.mode: must be one of ddp, stella, got \"allreduce\"",
                                 "spec.sync.extra: unknown field", "spec.clusters[1].workers: must be >= 1, got 0",
                                 "spec.clusters[2].name: duplicate cluster name \"a\" (also "
                                 "spec.clusters[0].name)"));
}

TEST(SpecTest, ValidateWorksOnJobsBuiltInCode) {
  StellaJob job;
  job.metadata.name = "coded";
  job.spec.model.name = "mlp";
  job.spec.dataset.name = "fashion-mnist";
  job.spec.training.epochs = 1;
  job.spec.clusters.push_back(ClusterSpec{});
  job.spec.clusters[0].name = "only";
  EXPECT_THAT(ValidateStellaJob(job), ElementsAre());
  EXPECT_TRUE(FieldErrorsToStatus(ValidateStellaJob(job)).ok());

  job.spec.clusters[0].wan.bandwidth_mbps = std::numeric_limits<double>::infinity();
  job.spec.optimizer.beta1 = std::nan("");
  job.spec.dataset.name.clear();
  job.spec.clusters[0].kubeconfig_secret = SecretKeyRef{};
  std::vector<FieldError> errors = ValidateStellaJob(job);
  EXPECT_THAT(errors, ElementsAre(FieldError{"spec.dataset.name", "required field is missing"},
                                  FieldError{"spec.optimizer.beta1", "must be a finite number, got nan"},
                                  FieldError{"spec.clusters[0].wan.bandwidthMbps", "must be a finite number, got inf"},
                                  FieldError{"spec.clusters[0].kubeconfigSecret.name", "required field is missing"}));
  Status status = FieldErrorsToStatus(errors);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Lines(status.message()).size(), 4u);
  EXPECT_EQ(Lines(status.message())[0], "spec.dataset.name: required field is missing");
}

TEST(SpecTest, EnumSpellings) {
  EXPECT_STREQ(ToString(SyncMode::kStella), "stella");
  EXPECT_STREQ(ToString(OptimizerKind::kAdamW), "adamw");
  EXPECT_STREQ(ToString(TolerationEffect::kAll), "");
  CompressorKind compressor = CompressorKind::kTopK;
  EXPECT_TRUE(ParseEnum("threshold", &compressor));
  EXPECT_EQ(compressor, CompressorKind::kThreshold);
  EXPECT_FALSE(ParseEnum("TopK", &compressor));
  EXPECT_EQ(compressor, CompressorKind::kThreshold);
  ValuePrecision precision = ValuePrecision::kFp32;
  EXPECT_TRUE(ParseEnum("bf16", &precision));
  EXPECT_EQ(precision, ValuePrecision::kBf16);
}

TEST(SpecTest, LoadFileErrors) {
  const std::string missing = ::testing::TempDir() + "/no-such-dir/job.yaml";
  StatusOr<StellaJob> job = LoadStellaJobFile(missing);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(job.status().message(), HasSubstr(missing));

  const std::string bad = WriteTempFile("spec_test_bad.yaml", Replace(Replace(kBase, "batchSize: 64", "batchSize: 0"),
                                                                      "      workers: 1\n", "      workers: 0\n"));
  job = LoadStellaJobFile(bad);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Lines(job.status().message()), ElementsAre(bad + ": spec.batchSize: must be >= 1, got 0",
                                                         bad + ": spec.clusters[1].workers: must be >= 1, got 0"));

  // A directory opens but cannot be read.
  job = LoadStellaJobFile(::testing::TempDir());
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), StatusCode::kIoError);
  EXPECT_THAT(job.status().message(), HasSubstr(::testing::TempDir()));

  const std::string unparsable = WriteTempFile("spec_test_syntax.yaml", "kind: [StellaJob\n");
  job = LoadStellaJobFile(unparsable);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr(unparsable + ": invalid YAML at line 2"));

  const std::string good = WriteTempFile("spec_test_good.yaml", ToYaml(FullJob()));
  job = LoadStellaJobFile(good);
  ASSERT_TRUE(job.ok()) << job.status().ToString() << "\n" << ReadFile(good);
  EXPECT_EQ(*job, FullJob());
}

}  // namespace
}  // namespace stella::spec
