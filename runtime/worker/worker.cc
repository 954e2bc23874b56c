#include "runtime/worker/worker.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/compute/trainer.h"
#include "runtime/data/dataset.h"
#include "runtime/exchange/dense_allreduce.h"
#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"
#include "runtime/pipeline/sparse_sync.h"
#include "runtime/pipeline/tensor_pipeline.h"
#include "runtime/tuner/tuner.h"
#include "runtime/worker/events.h"
#include "runtime/worker/worker_state.h"
#include "src/base/clock.h"
#include "src/base/file.h"
#include "src/metrics/exposer.h"
#include "src/metrics/registry.h"

namespace stella::worker {
namespace {

using Seconds = std::chrono::duration<double>;

// Extra values appended to the gradient buffer: decisions all workers must
// take at the same step, and the loss (averaged for reporting).
enum ControlSlot { kStopSlot = 0, kLossSlot = 1, kNumControlSlots = 2 };

// Stella mode adds the tuner's telemetry to the control section, so that every
// worker receives the same (averaged, then rescaled) values and the same
// deterministic tuner reaches the same decision everywhere without a broadcast:
//   [stop, loss, compute_seconds[world], {goodput, bytes_last_step}[clusters]]
struct TelemetryLayout {
  int world = 1;
  int clusters = 1;
  size_t size() const { return kNumControlSlots + static_cast<size_t>(world) + 2 * static_cast<size_t>(clusters); }
  size_t compute(int rank) const { return kNumControlSlots + static_cast<size_t>(rank); }
  size_t goodput(int cluster) const { return kNumControlSlots + static_cast<size_t>(world) + 2 * static_cast<size_t>(cluster); }
  size_t bytes(int cluster) const { return goodput(cluster) + 1; }
};

// Steps between tuner decisions: short enough to follow a bandwidth change
// within ~20 steps (the tuner itself reacts within 1-3 rounds).
constexpr int kTunerEverySteps = 5;
// Stella mode's pipeline unit: consecutive tensors (reverse model order) are
// grouped until a bucket holds this many bytes of gradient, as DDP does, so
// tiny tensors (biases) do not each pay a collective and a WAN round.
// Measured on examples/wan10-stella.yaml (10 Mbit/s, 5 ms): one bucket per
// tensor halved throughput and 32 KB buckets lost 4 points of accuracy, since
// small WAN rounds are latency-bound and the tuner, reading their low
// goodput as a slow link, drove the density to its floor.
constexpr size_t kBucketBytes = 256 * 1024;
// Resume agreement: the all-reduce round (WAN frame tag) it uses, before any
// training round (the mesh's tags only go forward), and how many of its
// newest complete checkpoints each worker offers.
constexpr uint32_t kAgreementRound = exchange::kSetupRoundTag;
// stella_samples_per_second is updated once per window of at least this much
// wall time (short enough for a 15 s scrape to see it move).
constexpr double kRateWindowSeconds = 2.0;
constexpr size_t kAgreementSlots = 8;
// Complete checkpoints kept per worker: if the newest is found torn or
// corrupt, the one before it is used.
constexpr int kCheckpointsKept = 2;

// The metric handles of one worker, taken once (hot path keeps references).
struct WorkerMetrics {
  explicit WorkerMetrics(metrics::Registry& r, const metrics::Labels& l)
      : steps(r.AddCounter("stella_steps_total", "Training steps completed by this worker.").Add(l)),
        samples(r.AddCounter("stella_samples_total", "Training samples processed by this worker.").Add(l)),
        samples_per_second(r.AddGauge("stella_samples_per_second",
                                      "Job-wide training throughput seen by this worker: samples/s over the last "
                                      ">= 2 s of wall time, evaluations and checkpoints included.")
                               .Add(l)),
        loss(r.AddGauge("stella_loss", "Training loss averaged over all workers, last step.").Add(l)),
        test_accuracy(r.AddGauge("stella_test_accuracy", "Test-set accuracy at the last evaluation (0..1).").Add(l)),
        test_loss(r.AddGauge("stella_test_loss", "Test-set mean loss at the last evaluation.").Add(l)),
        step_seconds(r.AddHistogram("stella_step_seconds", "Wall time of one training step.",
                                    metrics::Histogram::ExponentialBuckets(0.005, 2, 14))
                         .Add(l)),
        compute_busy(r.AddGauge("stella_compute_busy_ratio",
                                "Fraction of wall time the compute device was busy (GPU utilization proxy).")
                         .Add(l)),
        parameters(r.AddGauge("stella_model_parameters", "Number of model parameters.").Add(l)),
        density(r.AddGauge("stella_density", "Fraction of each gradient tensor sent over the WAN (1 = dense).").Add(l)),
        wan_bytes_per_step(r.AddGauge("stella_wan_bytes_per_step",
                                      "Bytes this gateway sent over the WAN in the last step (0 off gateways).")
                               .Add(l)),
        batch_size(r.AddGauge("stella_batch_size", "This worker's batch size (the tuner may rebalance it).").Add(l)),
        inflight_steps(r.AddGauge("stella_pipeline_inflight_steps",
                                  "Steps computed but not yet applied to the parameters (<= staleness + 1).")
                           .Add(l)),
        tuner_decisions(r.AddCounter("stella_tuner_decisions_total",
                                     "Tuner decisions that changed the density or the batch sizes.")
                            .Add(l)),
        degraded_steps(r.AddCounter("stella_wan_degraded_steps_total",
                                    "Steps applied without some cluster's gradients (a WAN link was down).")
                           .Add(l)),
        resyncs(r.AddCounter("stella_wan_resyncs_total",
                             "Buckets whose state was averaged across clusters after a lost link (stella mode).")
                    .Add(l)) {
    auto& phase = r.AddCounter(
        "stella_step_phase_seconds_total",
        "Time spent per step phase: compute, communication, optimizer, wait (for parameters), compression.");
    auto& last = r.AddGauge("stella_step_phase_seconds", "Duration of each phase in the last step.");
    for (const char* p : {"compute", "communication", "optimizer", "wait", "compression"}) {
      metrics::Labels pl = l;
      pl["phase"] = p;
      phase_total.push_back(&phase.Add(pl));
      phase_last.push_back(&last.Add(pl));
    }
  }
  // In stella mode compute and wait are observed on the compute thread, the
  // others on the communication thread (metric updates are lock-free).
  enum Phase { kCompute = 0, kCommunication = 1, kOptimizer = 2, kWait = 3, kCompression = 4 };
  void ObservePhase(Phase p, double seconds) {
    phase_total[p]->Increment(seconds);
    phase_last[p]->Set(seconds);
  }

  metrics::Counter& steps;
  metrics::Counter& samples;
  metrics::Gauge& samples_per_second;
  metrics::Gauge& loss;
  metrics::Gauge& test_accuracy;
  metrics::Gauge& test_loss;
  metrics::Histogram& step_seconds;
  metrics::Gauge& compute_busy;
  metrics::Gauge& parameters;
  metrics::Gauge& density;
  metrics::Gauge& wan_bytes_per_step;
  metrics::Gauge& batch_size;
  metrics::Gauge& inflight_steps;
  metrics::Counter& tuner_decisions;
  metrics::Counter& degraded_steps;
  metrics::Counter& resyncs;
  std::vector<metrics::Counter*> phase_total;  // owned by the registry
  std::vector<metrics::Gauge*> phase_last;
};

// Per-peer WAN series, refreshed from the mesh's counters; link changes seen
// between two refreshes are also reported as "wan_link" events.
struct WanMetrics {
  WanMetrics(metrics::Registry& r, const metrics::Labels& l, const std::vector<exchange::PeerLinkStats>& peers) {
    auto& sent_f = r.AddGauge("stella_wan_sent_bytes", "Bytes sent to a peer cluster's gateway (cumulative).");
    auto& recv_f = r.AddGauge("stella_wan_received_bytes", "Bytes received from a peer cluster's gateway (cumulative).");
    auto& good_f = r.AddGauge("stella_wan_goodput_bytes_per_second", "Achieved send goodput to a peer (EWMA).");
    auto& up_f = r.AddGauge("stella_wan_link_up", "1 while the link to a peer cluster's gateway is up, else 0.");
    auto& reconnects_f = r.AddCounter("stella_wan_reconnects_total",
                                      "Links to a peer cluster's gateway re-established after a loss.");
    auto& losses_f = r.AddCounter("stella_wan_link_losses_total",
                                  "Links to a peer cluster's gateway lost (error, reset or silence).");
    for (const auto& p : peers) {
      metrics::Labels pl = l;
      pl["peer"] = p.name;
      sent.push_back(&sent_f.Add(pl));
      received.push_back(&recv_f.Add(pl));
      goodput.push_back(&good_f.Add(pl));
      up.push_back(&up_f.Add(pl));
      reconnects.push_back(&reconnects_f.Add(pl));
      losses.push_back(&losses_f.Add(pl));
      last.push_back(p);
      up.back()->Set(p.up ? 1 : 0);
    }
  }
  void Update(const std::vector<exchange::PeerLinkStats>& peers, EventSink& events) {
    for (size_t i = 0; i < peers.size() && i < sent.size(); ++i) {
      const auto& p = peers[i];
      sent[i]->Set(static_cast<double>(p.bytes_sent));
      received[i]->Set(static_cast<double>(p.bytes_received));
      goodput[i]->Set(p.goodput_bytes_per_second);
      up[i]->Set(p.up ? 1 : 0);
      const auto& before = last[i];
      if (p.link_losses > before.link_losses) {
        losses[i]->Increment(static_cast<double>(p.link_losses - before.link_losses));
      }
      if (p.connects > before.connects) {
        reconnects[i]->Increment(static_cast<double>(p.connects - before.connects));
      }
      // A loss and a reconnect both between two refreshes show as both events.
      if (p.link_losses > before.link_losses || (before.up && !p.up && !p.left)) {
        events.Emit("wan_link", {{"peer", p.name}, {"state", "down"}, {"reason", p.last_error},
                                 {"losses", p.link_losses}});
      }
      if (p.left && !before.left) events.Emit("wan_link", {{"peer", p.name}, {"state", "left"}});
      if (p.connects > before.connects && p.up) {
        events.Emit("wan_link", {{"peer", p.name}, {"state", "up"}, {"connects", p.connects}});
      }
      last[i] = p;
    }
  }
  std::vector<metrics::Gauge*> sent, received, goodput, up;  // owned by the registry
  std::vector<metrics::Counter*> reconnects, losses;         // owned by the registry
  std::vector<exchange::PeerLinkStats> last;                 // at the previous refresh
};

Status DumpParameters(const compute::Trainer& trainer, const std::string& path) {
  std::vector<float> params(static_cast<size_t>(trainer.num_parameters()));
  trainer.CopyParametersTo(params.data());
  return WriteFileAtomically(path, {reinterpret_cast<const char*>(params.data()), params.size() * sizeof(float)});
}

}  // namespace

struct Worker::State {
  WorkerOptions options;
  int global_rank = 0;
  int world_size = 1;
  int64_t total_steps = 0;
  data::Dataset train;
  data::Dataset test;  // loaded on global rank 0 only
  std::unique_ptr<compute::Trainer> trainer;
  std::unique_ptr<exchange::IntraClusterGroup> group;
  std::unique_ptr<exchange::WanMesh> mesh;  // gateways of multi-cluster jobs
  std::unique_ptr<exchange::DenseAllReduce> allreduce;     // ddp mode
  std::unique_ptr<pipeline::SparseSync> sparse_sync;       // stella mode
  std::unique_ptr<tuner::Tuner> tuner;                     // stella mode with spec.sync.tuner;
                                                           // used only on the communication thread
  TelemetryLayout telemetry;
  // Batch-size decisions handed from the communication thread (Tune) to the
  // compute thread, which applies each at its apply_at_step. Every worker
  // sees the same sequence, so all switch at the same step.
  std::mutex decisions_mu;
  std::deque<tuner::Decision> pending_batches;  // guarded by decisions_mu
  // Declared before the exposer so the exposer (which reads it) dies first.
  metrics::Registry registry;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<WanMetrics> wan_metrics;
  std::unique_ptr<metrics::Exposer> exposer;
  std::unique_ptr<EventSink> events;
  // This worker's checkpoint directory; null without spec.checkpoint.path.
  std::unique_ptr<checkpoint::CheckpointStore> store;
  CheckpointMeta meta;  // what a checkpoint must match to continue this job
};

// Bookkeeping of one Run, shared by the dense and the stella loops.
struct Worker::Loop {
  const Clock& clock = SystemClock::Get();
  Clock::TimePoint start;
  double busy_seconds = 0;
  // Throughput window: samples/s is measured over wall time, not summed
  // from per-step durations (those leave out evaluations and the time
  // between steps, and read 2-4x high).
  Clock::TimePoint rate_window_start;
  int64_t rate_window_steps = 0;
  double final_accuracy = -1;
  bool target_reached = false;
  int64_t step = 0;     // steps computed (forward/backward done)
  int64_t applied = 0;  // updates applied to the parameters
  uint64_t last_wan_sent = 0;
  std::unique_ptr<data::BatchSampler> sampler;
  int batch = 0;        // this worker's batch size (the tuner may rebalance it)
  float last_loss = 0;
  int64_t resumed_from = 0;          // the step training (re)started at
  int64_t last_checkpoint = -1;      // step of the newest checkpoint written or resumed from
  // Stella mode: the pipeline state to continue from after a resume.
  std::unique_ptr<pipeline::PipelineSnapshot> resume_snapshot;
  // Stella mode: the sampler position before each of the last few computed
  // steps, so that a checkpoint of an applied step behind the computed ones
  // (an agreed stop drops the steps in flight) records where that step began.
  struct SamplerMark {
    int64_t step, epoch, cursor;
  };
  std::deque<SamplerMark> sampler_marks;
};

Worker::Worker(std::unique_ptr<State> state) : state_(std::move(state)) {}
Worker::~Worker() = default;

namespace {

// The CPU optimizer of stella mode, from the spec (the same hyperparameters
// the libtorch optimizer gets in ddp mode).
StatusOr<optim::OptimizerOptions> CpuOptimizerOptionsFromSpec(const spec::JobSpec& spec) {
  optim::OptimizerOptions oo;
  oo.name = spec::ToString(spec.optimizer.name);
  oo.lr = spec.optimizer.learning_rate;
  oo.weight_decay = spec.optimizer.weight_decay;  // AdamW too: the spec's value, not torch's 0.01
  oo.beta1 = spec.optimizer.beta1;
  oo.beta2 = spec.optimizer.beta2;
  oo.eps = spec.optimizer.epsilon;
  if (spec.optimizer.name == spec::OptimizerKind::kSgd) {
    oo.momentum = spec.optimizer.momentum;
    oo.nesterov = spec.optimizer.nesterov;
    if (spec.sync.momentum_correction) {
      // DGC: momentum is applied before selection (ErrorFeedback); the
      // receivers run plain SGD on what arrives.
      oo.momentum = 0.0;
      oo.nesterov = false;
    }
  } else if (spec.sync.momentum_correction) {
    return FailedPreconditionError(std::string("spec.sync.momentumCorrection: needs optimizer sgd, got ") +
                                   spec::ToString(spec.optimizer.name));
  }
  STELLA_RETURN_IF_ERROR(optim::ValidateOptimizerOptions(oo));
  return oo;
}

std::vector<int> ClusterWorkers(const spec::JobSpec& spec) {
  std::vector<int> out;
  for (const auto& c : spec.clusters) out.push_back(c.workers);
  return out;
}

std::chrono::milliseconds WanRoundTimeout(const WorkerOptions& o) {
  return o.wan_round_timeout.count() > 0 ? o.wan_round_timeout : o.collective_timeout / 2;
}

compress::ValuePrecision WirePrecision(spec::ValuePrecision p) {
  switch (p) {
    case spec::ValuePrecision::kFp16: return compress::ValuePrecision::kFp16;
    case spec::ValuePrecision::kBf16: return compress::ValuePrecision::kBf16;
    case spec::ValuePrecision::kFp32: break;
  }
  return compress::ValuePrecision::kFp32;
}

}  // namespace

StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& o) {
  auto s = std::make_unique<State>();
  s->options = o;
  const auto& spec = o.job.spec;
  const int num_clusters = static_cast<int>(spec.clusters.size());
  if (o.cluster_index < 0 || o.cluster_index >= num_clusters) {
    return InvalidArgumentError("--cluster-index " + std::to_string(o.cluster_index) + " out of range: the job has " +
                                std::to_string(num_clusters) + " clusters");
  }
  const auto& cluster = spec.clusters[static_cast<size_t>(o.cluster_index)];
  if (o.local_rank < 0 || o.local_rank >= cluster.workers) {
    return InvalidArgumentError("--local-rank " + std::to_string(o.local_rank) + " out of range: cluster " +
                                cluster.name + " has " + std::to_string(cluster.workers) + " workers");
  }
  if (num_clusters > 1 && static_cast<int>(o.wan_addresses.size()) != num_clusters) {
    return InvalidArgumentError("--wan-ports: need one gateway address per cluster (" + std::to_string(num_clusters) +
                                "), got " + std::to_string(o.wan_addresses.size()));
  }
  optim::OptimizerOptions cpu_optimizer;
  if (spec.sync.mode == spec::SyncMode::kStella) {
    auto oo = CpuOptimizerOptionsFromSpec(spec);
    if (!oo.ok()) return oo.status().WithContext("spec.sync.mode stella");
    cpu_optimizer = *oo;
    if (spec.sync.momentum_correction && !spec.sync.error_feedback) {
      return FailedPreconditionError("spec.sync.momentumCorrection: needs spec.sync.errorFeedback true");
    }
  }
  for (int c = 0; c < o.cluster_index; ++c) s->global_rank += spec.clusters[static_cast<size_t>(c)].workers;
  s->global_rank += o.local_rank;
  s->world_size = o.job.TotalWorkers();

  s->events = std::make_unique<EventSink>(
      stdout, nlohmann::json{{"cluster", o.cluster_index}, {"cluster_name", cluster.name},
                             {"local_rank", o.local_rank}, {"global_rank", s->global_rank}});

  // Data: every worker reads the training set and takes its shard.
  STELLA_ASSIGN_OR_RETURN(s->train, data::LoadFashionMnist(spec.dataset.path, data::Split::kTrain));
  if (s->global_rank == 0) {
    STELLA_ASSIGN_OR_RETURN(s->test, data::LoadFashionMnist(spec.dataset.path, data::Split::kTest));
  }
  const int64_t global_batch = int64_t{spec.batch_size} * s->world_size;
  s->total_steps = spec.training.steps > 0
                       ? spec.training.steps
                       : static_cast<int64_t>(std::ceil(spec.training.epochs * static_cast<double>(s->train.size) /
                                                        static_cast<double>(global_batch)));

  compute::TrainerOptions to;
  to.model = spec.model.name;
  to.hidden = spec.model.hidden;
  to.seed = spec.training.seed;
  to.device = o.device;
  to.threads = o.threads;
  to.optimizer = spec::ToString(spec.optimizer.name);
  to.learning_rate = spec.optimizer.learning_rate;
  to.momentum = spec.optimizer.momentum;
  to.nesterov = spec.optimizer.nesterov;
  to.weight_decay = spec.optimizer.weight_decay;
  to.beta1 = spec.optimizer.beta1;
  to.beta2 = spec.optimizer.beta2;
  to.epsilon = spec.optimizer.epsilon;
  STELLA_ASSIGN_OR_RETURN(s->trainer,
                          compute::Trainer::Create(to, s->train.rows, s->train.cols, s->train.num_classes));

  // Metrics first, so a scrape during the (possibly slow) rendezvous works.
  metrics::Labels labels{{"stella_job", o.job.metadata.name},  // "job" is Prometheus's scrape job
                         {"cluster", cluster.name},
                         {"worker", std::to_string(s->global_rank)}};
  s->metrics = std::make_unique<WorkerMetrics>(s->registry, labels);
  s->metrics->parameters.Set(static_cast<double>(s->trainer->num_parameters()));
  s->metrics->batch_size.Set(spec.batch_size);
  s->metrics->density.Set(spec.sync.mode == spec::SyncMode::kStella ? spec.sync.density : 1.0);
  if (o.metrics_port > 0) {
    metrics::ExposerOptions eo;
    eo.bind_address = o.metrics_bind;
    eo.port = o.metrics_port;
    auto exposer = metrics::Exposer::Create(eo, &s->registry);
    if (!exposer.ok()) return exposer.status().WithContext("metrics endpoint on port " + std::to_string(o.metrics_port));
    s->exposer = std::move(exposer).value();
  }

  // Intra-cluster group, then the WAN mesh between gateways.
  exchange::GlooGroupOptions go;
  go.store_host = o.store_host;
  go.store_port = o.store_port;
  go.rank = o.local_rank;
  go.size = cluster.workers;
  go.bind_host = o.bind_host;
  go.timeout = o.collective_timeout;
#ifdef STELLA_WITH_NCCL
  // GPU workers reduce over NCCL; the rendezvous store is the same.
  if (s->trainer->device_name().rfind("cuda", 0) == 0) {
    STELLA_ASSIGN_OR_RETURN(s->group, exchange::CreateNcclGroup(go, /*device=*/0));
  } else {
    STELLA_ASSIGN_OR_RETURN(s->group, exchange::CreateGlooGroup(go));
  }
#else
  STELLA_ASSIGN_OR_RETURN(s->group, exchange::CreateGlooGroup(go));
#endif
  if (o.local_rank == 0 && num_clusters > 1) {
    exchange::WanMeshOptions mo;
    mo.job_name = o.job.metadata.name;
    mo.cluster_index = o.cluster_index;
    mo.addresses = o.wan_addresses;
    for (const auto& c : spec.clusters) mo.cluster_names.push_back(c.name);
    mo.egress_bits_per_second = cluster.wan.bandwidth_mbps * 1e6;
    mo.egress_latency = std::chrono::microseconds(static_cast<int64_t>(cluster.wan.latency_ms * 1000));
    mo.connect_timeout = o.collective_timeout;
    mo.tls_dir = o.tls_dir;
    mo.job_namespace = o.job.metadata.namespace_name;
    if (o.tls_dir.empty()) {
      // Once per process: only this gateway's mesh reaches here.
      std::fprintf(stderr,
                   "stella-runtime: warning: WAN links are unencrypted and unauthenticated (no --tls-dir); "
                   "anyone who can reach gateway port %s can join this job\n",
                   o.wan_addresses[static_cast<size_t>(o.cluster_index)].c_str());
    }
    if (o.wan_link_timeout.count() > 0) mo.link_timeout = o.wan_link_timeout;
    mo.heartbeat_interval = std::max(std::chrono::milliseconds(1), mo.link_timeout / 10);
    STELLA_ASSIGN_OR_RETURN(s->mesh, exchange::WanMesh::Create(mo));
    s->wan_metrics = std::make_unique<WanMetrics>(s->registry, labels, s->mesh->stats());
  }
  s->meta.mode = spec::ToString(spec.sync.mode);
  s->meta.world_size = s->world_size;
  s->meta.global_rank = s->global_rank;
  s->meta.staleness = spec.sync.mode == spec::SyncMode::kStella ? spec.sync.staleness : 0;
  s->meta.tensor_sizes = s->trainer->tensor_sizes();
  if (!spec.checkpoint.path.empty()) {
    checkpoint::StoreOptions co;
    co.dir = checkpoint::WorkerDirectory(spec.checkpoint.path, cluster.name, o.local_rank);
    co.job = o.job.metadata.name;
    co.worker = cluster.name + "/" + std::to_string(o.local_rank);
    co.keep = kCheckpointsKept;
    auto store = checkpoint::CheckpointStore::Create(co);
    if (!store.ok()) return store.status().WithContext("spec.checkpoint");
    s->store = std::move(store).value();
  } else if (o.resume) {
    return InvalidArgumentError("--resume: the job has no spec.checkpoint.path to resume from");
  }
  if (spec.sync.mode == spec::SyncMode::kStella) {
    // Every worker starts its master copy from the same initial parameters
    // (same seed), so the copies agree from step 0.
    std::vector<float> initial(static_cast<size_t>(s->trainer->num_parameters()));
    s->trainer->CopyParametersTo(initial.data());
    pipeline::SparseSyncOptions so;
    so.tensor_sizes = s->trainer->tensor_sizes();
    so.optimizer = cpu_optimizer;
    so.optimizer_threads = static_cast<size_t>(std::max(1, o.threads));
    so.compressor.kind = spec::ToString(spec.sync.compressor);
    so.compressor.seed = spec.training.seed;
    so.precision = WirePrecision(spec.sync.value_precision);
    so.error_feedback = spec.sync.error_feedback;
    so.momentum_correction = spec.sync.momentum_correction ? spec.optimizer.momentum : 0.0;
    so.density = spec.sync.density;
    so.world_size = s->world_size;
    so.cluster_index = o.cluster_index;
    s->telemetry.world = s->world_size;
    s->telemetry.clusters = num_clusters;
    so.num_control = s->telemetry.size();
    so.timeout = WanRoundTimeout(o);
    so.cluster_workers = ClusterWorkers(spec);
    so.buckets = pipeline::MakeBuckets(so.tensor_sizes, kBucketBytes);
    auto sync = pipeline::SparseSync::Create(so, s->group.get(), s->mesh.get(), initial.data());
    if (!sync.ok()) return sync.status().WithContext("spec.sync.mode stella");
    s->sparse_sync = std::move(sync).value();
    if (spec.sync.tuner) {
      tuner::TunerOptions to;
      for (int64_t size : s->trainer->tensor_sizes()) to.tensor_sizes.push_back(static_cast<uint64_t>(size));
      // Wire sizes follow the spec's precision and the compressor's block size.
      to.bytes_model.value_bytes = spec.sync.value_precision == spec::ValuePrecision::kFp32 ? 4 : 2;
      to.bytes_model.block_size = pipeline::CompressorBlockSize(spec::ToString(spec.sync.compressor));
      to.min_density = spec.sync.min_density;
      to.max_density = spec.sync.max_density;
      to.initial_density = spec.sync.density;
      to.global_batch = int64_t{spec.batch_size} * s->world_size;
      // A decision must reach every compute thread before it applies: the
      // compute thread runs at most `staleness` steps ahead of the exchange.
      to.lead_steps = spec.sync.staleness + 1;
      auto t = tuner::Tuner::Create(to);
      if (!t.ok()) return t.status().WithContext("spec.sync.tuner");
      s->tuner = std::move(t).value();
    }
  } else {
    s->allreduce = std::make_unique<exchange::DenseAllReduce>(s->group.get(), s->mesh.get(), ClusterWorkers(spec));
  }
  return std::unique_ptr<Worker>(new Worker(std::move(s)));
}

std::pair<uint64_t, uint64_t> Worker::WanTotals() {
  State& s = *state_;
  uint64_t sent = 0, received = 0;
  if (s.mesh) {
    auto st = s.mesh->stats();
    for (const auto& p : st) {
      sent += p.bytes_sent;
      received += p.bytes_received;
    }
    if (s.wan_metrics) s.wan_metrics->Update(st, *s.events);
  }
  return {sent, received};
}

void Worker::Evaluate(Loop& loop) {
  State& s = *state_;
  auto r = s.trainer->Evaluate(s.test);
  loop.final_accuracy = r.accuracy;
  s.metrics->test_accuracy.Set(r.accuracy);
  s.metrics->test_loss.Set(r.loss);
  s.events->Emit("eval", {{"step", loop.step},
                          {"test_accuracy", r.accuracy},
                          {"test_loss", r.loss},
                          {"elapsed_seconds", SecondsBetween(loop.start, loop.clock.Now())}});
  const double target = s.options.job.spec.training.target_accuracy;
  if (target > 0 && r.accuracy >= target) loop.target_reached = true;
}

void Worker::AfterStep(Loop& loop, double compute_seconds, double step_seconds, float loss, double density) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const int64_t global_batch = int64_t{spec.batch_size} * s.world_size;
  loop.busy_seconds += compute_seconds;
  s.metrics->ObservePhase(WorkerMetrics::kCompute, compute_seconds);
  s.metrics->steps.Increment();
  s.metrics->samples.Increment(spec.batch_size);
  s.metrics->step_seconds.Observe(step_seconds);
  s.metrics->loss.Set(loss);
  const auto now = loop.clock.Now();
  ++loop.rate_window_steps;
  const double window = SecondsBetween(loop.rate_window_start, now);
  if (window >= kRateWindowSeconds) {
    s.metrics->samples_per_second.Set(static_cast<double>(loop.rate_window_steps * global_batch) / window);
    loop.rate_window_start = now;
    loop.rate_window_steps = 0;
  }
  const double elapsed = SecondsBetween(loop.start, now);
  s.metrics->compute_busy.Set(elapsed > 0 ? loop.busy_seconds / elapsed : 0);
  auto [sent, received] = WanTotals();
  if (s.options.job.spec.sync.mode == spec::SyncMode::kDdp) {
    // Stella mode sets it from the exchange's own count.
    s.metrics->wan_bytes_per_step.Set(static_cast<double>(sent - loop.last_wan_sent));
  }
  loop.last_wan_sent = sent;

  const bool reporter = s.global_rank == 0;
  if (reporter && (loop.step % s.options.progress_every == 0 || loop.step == s.total_steps)) {
    s.events->Emit("progress", {{"step", loop.step},
                                {"applied", applied_.load()},
                                {"total_steps", s.total_steps},
                                {"samples_per_second",
                                 static_cast<double>((loop.step - loop.resumed_from) * global_batch) / elapsed},
                                {"loss", loss},
                                {"density", density},
                                {"wan_bytes_sent", sent},
                                {"wan_bytes_received", received},
                                {"elapsed_seconds", elapsed}});
  }
  if (reporter && (loop.step % spec.training.eval_every == 0)) Evaluate(loop);
}

Status Worker::RunDense(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const int64_t n = s.trainer->num_parameters();
  std::vector<float> buffer(static_cast<size_t>(n) + kNumControlSlots);
  const Clock& clock = loop.clock;
  bool stop_agreed = false;
  while (loop.step < s.total_steps && !stop_agreed) {
    const auto t0 = clock.Now();
    auto indices = loop.sampler->Next(spec.batch_size);
    STELLA_ASSIGN_OR_RETURN(float loss, s.trainer->ForwardBackward(s.train, indices));
    const auto t1 = clock.Now();
    s.trainer->CopyGradientsTo(buffer.data());
    buffer[static_cast<size_t>(n) + kStopSlot] = (stop_requested_.load() || loop.target_reached) ? 1.0f : 0.0f;
    buffer[static_cast<size_t>(n) + kLossSlot] = loss;
    exchange::DenseRoundInfo round;
    Status st = s.allreduce->AllReduceMean(buffer.data(), buffer.size(),
                                           exchange::kFirstTrainingRoundTag + static_cast<uint32_t>(loop.step),
                                           clock.Now() + WanRoundTimeout(s.options), &round);
    if (!st.ok()) return st.WithContext("step " + std::to_string(loop.step + 1) + " gradient exchange");
    const auto t2 = clock.Now();
    if (round.degraded) s.metrics->degraded_steps.Increment();
    // A peer that left has ended its job: stop with it.
    stop_agreed = buffer[static_cast<size_t>(n) + kStopSlot] > 0 || round.peer_left;
    s.trainer->SetGradients(buffer.data());
    s.trainer->OptimizerStep();
    const auto t3 = clock.Now();
    ++loop.step;
    loop.applied = loop.step;
    applied_.store(loop.applied);
    loop.last_loss = buffer[static_cast<size_t>(n) + kLossSlot];
    s.metrics->ObservePhase(WorkerMetrics::kCommunication, SecondsBetween(t1, t2));
    s.metrics->ObservePhase(WorkerMetrics::kOptimizer, SecondsBetween(t2, t3));
    s.metrics->ObservePhase(WorkerMetrics::kWait, 0.0);         // dense: waiting is inside communication
    s.metrics->ObservePhase(WorkerMetrics::kCompression, 0.0);  // dense: nothing is compressed
    AfterStep(loop, SecondsBetween(t0, t1), SecondsBetween(t0, t3), loop.last_loss, 1.0);
    if (!stop_agreed) STELLA_RETURN_IF_ERROR(MaybeCheckpoint(loop, nullptr));
  }
  // The end of training (all steps, the target, or an agreed stop) is a
  // checkpoint too: a stopped job resumes where it stopped.
  if (s.store && spec.checkpoint.interval_steps > 0 && loop.last_checkpoint != loop.applied) {
    STELLA_RETURN_IF_ERROR(SaveCheckpoint(loop, nullptr));
  }
  return Status::Ok();
}

// Compute thread: this worker's share of the tuner's telemetry. The control
// section is zero except for the slots this worker owns.
void Worker::FillTelemetry(double compute_seconds, float* control) {
  State& s = *state_;
  const TelemetryLayout& t = s.telemetry;
  std::fill(control + kNumControlSlots, control + t.size(), 0.0f);
  control[t.compute(s.global_rank)] = static_cast<float>(compute_seconds);
  if (s.mesh) {
    double goodput = 0;
    for (const auto& p : s.mesh->stats()) {
      if (p.goodput_bytes_per_second > 0 && (goodput == 0 || p.goodput_bytes_per_second < goodput)) {
        goodput = p.goodput_bytes_per_second;
      }
    }
    control[t.goodput(s.options.cluster_index)] = static_cast<float>(goodput);
    control[t.bytes(s.options.cluster_index)] = static_cast<float>(s.metrics->wan_bytes_per_step.Value());
  }
}

// Communication thread: the batch worker `rank` used at `step`, replaying the
// decisions in the order the compute threads apply them.
int Worker::BatchAt(int64_t step, int rank) const {
  int batch = state_->options.job.spec.batch_size;
  for (const auto& d : batch_history_) {
    if (d.apply_at_step > step) break;
    batch = d.BatchSizeFor(rank).value_or(batch);
  }
  return batch;
}

// Communication thread, after step `step`'s exchange: every worker holds the
// same job-wide mean of the control section, so the same tuner decides the
// same density everywhere; it takes effect from the next exchange on.
Status Worker::Tune(int64_t step, const float* control) {
  State& s = *state_;
  const TelemetryLayout& t = s.telemetry;
  const auto& spec = s.options.job.spec;
  const double world = t.world;  // undo the mean: each slot had one writer
  tuner::Telemetry tel;
  tel.step = step;
  tel.num_clusters = t.clusters;
  int rank = 0;
  for (int c = 0; c < t.clusters; ++c) {
    for (int r = 0; r < spec.clusters[static_cast<size_t>(c)].workers; ++r, ++rank) {
      tuner::WorkerTelemetry w;
      w.id = rank;
      w.cluster = c;
      w.batch_size = BatchAt(step, rank);
      w.compute_seconds = std::max(1e-6, control[t.compute(rank)] * world);
      tel.workers.push_back(w);
    }
    const double goodput = control[t.goodput(c)] * world;
    if (t.clusters > 1 && goodput > 0) {
      tuner::LinkTelemetry l;
      l.cluster = c;
      l.goodput_bytes_per_s = goodput;
      l.bytes_sent_last_step = static_cast<uint64_t>(std::max(0.0, std::round(control[t.bytes(c)] * world)));
      l.density_last_step = s.sparse_sync->density();
      l.cap_bytes_per_s = spec.clusters[static_cast<size_t>(c)].wan.bandwidth_mbps * 1e6 / 8;
      tel.links.push_back(l);
    }
  }
  auto decision = s.tuner->Decide(tel);
  if (!decision.ok()) return decision.status().WithContext("tuner at step " + std::to_string(step));
  if (decision->batch_sizes != last_batches_ || decision->density != s.sparse_sync->density()) {
    s.metrics->tuner_decisions.Increment();
  }
  if (decision->batch_sizes != last_batches_) {
    last_batches_ = decision->batch_sizes;
    batch_history_.push_back(*decision);
    std::lock_guard<std::mutex> lock(s.decisions_mu);
    s.pending_batches.push_back(*decision);
  }
  if (decision->density != s.sparse_sync->density()) {
    if (s.global_rank == 0) std::fprintf(stderr, "stella: tuner: %s\n", decision->ToLogLine().c_str());
    s.sparse_sync->SetDensity(decision->density);
  }
  return Status::Ok();
}

// Stella mode, per-tensor pipelining: the compute thread (this one) runs
// forward/backward; autograd hooks hand each gradient to the pipeline as
// backward produces it, and the pipeline's communication thread runs
// SparseSync per bucket of tensors (intra-cluster sum, sparse WAN exchange at
// the gateway, broadcast, CPU optimizer on the bucket's slice of the master
// copy) while backward goes on, up to `staleness` steps behind. Each layer's
// forward pass installs its own tensors at version step - staleness. The stop
// flag and the loss ride in the control section of the last bucket.
Status Worker::RunStella(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const size_t n = static_cast<size_t>(s.trainer->num_parameters());
  const Clock& clock = loop.clock;
  pipeline::SparseSync* sync = s.sparse_sync.get();
  WorkerMetrics* metrics = s.metrics.get();

  pipeline::TensorPipelineOptions po;
  po.staleness = spec.sync.staleness;
  po.tensor_sizes = s.trainer->tensor_sizes();
  po.num_control = s.telemetry.size();
  po.buckets = pipeline::MakeBuckets(po.tensor_sizes, kBucketBytes);
  // Longer than one bucket's collectives (each bounded by the collective
  // timeout), so a slow step fails inside its collective with a precise error.
  po.progress_timeout = 2 * s.options.collective_timeout + std::chrono::seconds(10);
  // Runs on the communication thread; touches only the sync object (not the
  // model) and lock-free metric handles. `total` sums a step's buckets.
  const size_t last_bucket = po.buckets.size() - 1;
  auto total = std::make_shared<pipeline::SyncStepStats>();
  auto bucket_function = [this, sync, metrics, last_bucket, total](int64_t step, size_t bucket, float* gradient,
                                                                   float* control) -> StatusOr<bool> {
    pipeline::SyncStepStats st;
    STELLA_RETURN_IF_ERROR(sync->StepBucket(static_cast<uint32_t>(step), bucket, gradient, control, &st));
    total->allreduce_seconds += st.allreduce_seconds;
    total->compress_seconds += st.compress_seconds;
    total->wan_seconds += st.wan_seconds;
    total->broadcast_seconds += st.broadcast_seconds;
    total->optimizer_seconds += st.optimizer_seconds;
    total->wan_bytes_sent += st.wan_bytes_sent;
    total->degraded = total->degraded || st.degraded;
    total->peer_left = total->peer_left || st.peer_left;
    if (st.resynced) {
      metrics->resyncs.Increment();
      if (sync->is_gateway()) {
        state_->events->Emit("wan_resync", {{"step", step}, {"bucket", bucket}});
      }
    }
    if (bucket != last_bucket) return false;
    applied_.store(step + 1);
    if (total->degraded) metrics->degraded_steps.Increment();
    // A partial round's telemetry lacks the missing clusters: no decision.
    if (state_->tuner && !total->degraded && (step + 1) % kTunerEverySteps == 0) {
      STELLA_RETURN_IF_ERROR(Tune(step, control));
    }
    metrics->ObservePhase(WorkerMetrics::kCompression, total->compress_seconds);
    metrics->ObservePhase(WorkerMetrics::kCommunication,
                          total->allreduce_seconds + total->wan_seconds + total->broadcast_seconds);
    metrics->ObservePhase(WorkerMetrics::kOptimizer, total->optimizer_seconds);
    metrics->density.Set(sync->density());
    metrics->wan_bytes_per_step.Set(static_cast<double>(total->wan_bytes_sent));
    const bool peer_left = total->peer_left;
    *total = pipeline::SyncStepStats();
    // A peer that left has ended its job: stop with it.
    return control[kStopSlot] > 0 || peer_left;
  };
  STELLA_ASSIGN_OR_RETURN(auto pipe, pipeline::TensorPipeline::Create(po, sync->parameters(), bucket_function,
                                                                      loop.resume_snapshot.get()));
  loop.resume_snapshot.reset();
  auto install = [&s](size_t tensor, const float* params) { s.trainer->SetTensorParameters(tensor, params); };
  pipeline::TensorPipeline* p = pipe.get();
  auto gate = [p, &install](const std::vector<size_t>& tensors) { return p->WaitTensors(tensors, install); };

  while (loop.step < s.total_steps) {
    const auto t0 = clock.Now();
    auto begin = pipe->BeginStep(loop.step);
    if (!begin.ok()) return begin.status();
    loop.applied = begin->version;
    if (begin->version > 0) loop.last_loss = begin->control[kLossSlot];
    if (begin->finished) break;  // all workers agreed to stop
    const auto t1 = clock.Now();
    {
      std::lock_guard<std::mutex> lock(s.decisions_mu);
      while (!s.pending_batches.empty() && s.pending_batches.front().apply_at_step <= loop.step) {
        loop.batch = s.pending_batches.front().BatchSizeFor(s.global_rank).value_or(loop.batch);
        s.pending_batches.pop_front();
      }
    }
    metrics->batch_size.Set(loop.batch);
    metrics->inflight_steps.Set(static_cast<double>(loop.step - begin->version));
    loop.sampler_marks.push_back({loop.step, loop.sampler->epoch(), loop.sampler->cursor()});
    if (loop.sampler_marks.size() > static_cast<size_t>(spec.sync.staleness) + 2) loop.sampler_marks.pop_front();
    auto indices = loop.sampler->Next(loop.batch);
    float* buffer = pipe->GradientBuffer();
    compute::Trainer::GradientSink sink;
    sink.buffer = buffer;
    // Unequal batches: weight this worker's mean gradient by its share of
    // the global batch, so the job-wide mean stays the per-sample mean.
    sink.scale = static_cast<float>(loop.batch) / static_cast<float>(spec.batch_size);
    sink.ready = [p](size_t tensor) { p->TensorReady(tensor); };
    STELLA_ASSIGN_OR_RETURN(float loss, s.trainer->ForwardBackwardPipelined(s.train, indices, gate, sink));
    buffer[n + kStopSlot] = (stop_requested_.load() || loop.target_reached) ? 1.0f : 0.0f;
    buffer[n + kLossSlot] = loss;
    FillTelemetry(SecondsBetween(t1, clock.Now()), buffer + n);
    const auto t2 = clock.Now();
    Status st = pipe->Submit(install);
    if (!st.ok()) return st;
    const auto t3 = clock.Now();
    ++loop.step;
    metrics->ObservePhase(WorkerMetrics::kWait, SecondsBetween(t0, t1) + SecondsBetween(t2, t3));
    AfterStep(loop, SecondsBetween(t1, t2), SecondsBetween(t0, t3), loop.last_loss, sync->density());
    STELLA_RETURN_IF_ERROR(MaybeCheckpoint(loop, pipe.get()));
  }
  // The end of training (all steps, the target, or an agreed stop) is a
  // checkpoint too, at the last applied step: a stopped job resumes where it
  // stopped (steps computed after the agreed stop were never applied).
  if (s.store && spec.checkpoint.interval_steps > 0) {
    auto snapshot = pipe->Drain();
    if (!snapshot.ok()) return snapshot.status();
    loop.applied = snapshot->next_step;
    if (loop.last_checkpoint != loop.applied) STELLA_RETURN_IF_ERROR(SaveCheckpoint(loop, &*snapshot));
  }
  auto fin = pipe->Finish(install);
  if (!fin.ok()) return fin.status();
  loop.applied = fin->version;
  return Status::Ok();
}

Status Worker::Run() {
  Status st = RunTraining();
  if (!st.ok()) state_->events->Emit("error", {{"message", st.ToString()}, {"applied", applied_.load()}});
  return st;
}

void Worker::OnStopSignal(int signal) {
  RequestStop();
  state_->events->Emit("stopping", {{"signal", signal}, {"applied", applied_.load()}});
}

Status Worker::RunTraining() {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const bool reporter = s.global_rank == 0;
  s.events->Emit("start", {{"world_size", s.world_size},
                           {"device", s.trainer->device_name()},
                           {"mode", spec::ToString(spec.sync.mode)},
                           {"parameters", s.trainer->num_parameters()},
                           {"total_steps", s.total_steps},
                           {"metrics_port", s.exposer ? s.exposer->port() : 0}});
  Loop loop;
  loop.sampler = std::make_unique<data::BatchSampler>(s.train.size, s.global_rank, s.world_size, spec.training.seed);
  loop.batch = spec.batch_size;
  STELLA_RETURN_IF_ERROR(AgreeAndRestore(loop));
  loop.start = loop.clock.Now();
  loop.rate_window_start = loop.start;
  STELLA_RETURN_IF_ERROR(spec.sync.mode == spec::SyncMode::kStella ? RunStella(loop) : RunDense(loop));
  // Stella mode evaluated in-loop on parameters up to `staleness` updates
  // old; the final evaluation must see the final parameters.
  if (reporter && (loop.final_accuracy < 0 || loop.step % spec.training.eval_every != 0 ||
                   spec.sync.mode == spec::SyncMode::kStella)) {
    Evaluate(loop);
  }

  const double wall = SecondsBetween(loop.start, loop.clock.Now());
  auto [sent, received] = WanTotals();
  s.events->Emit("done", {{"steps", loop.applied},
                          // This process's samples (a resumed run counts from its resume step); the CLI sums workers.
                          {"samples", (loop.applied - loop.resumed_from) * spec.batch_size},
                          {"resumed_from", loop.resumed_from},
                          {"final_accuracy", loop.final_accuracy},
                          {"wall_seconds", wall},
                          {"wan_bytes_sent", sent},
                          {"wan_bytes_received", received},
                          {"wan_degraded_steps", static_cast<int64_t>(s.metrics->degraded_steps.Value())},
                          {"wan_resyncs", static_cast<int64_t>(s.metrics->resyncs.Value())},
                          {"stopped", stop_requested_.load()}});
  if (!s.options.dump_parameters_path.empty()) {
    STELLA_RETURN_IF_ERROR(DumpParameters(*s.trainer, s.options.dump_parameters_path));
  }
  // Keep peers alive until everyone has finished its last exchange.
  STELLA_RETURN_IF_ERROR(s.group->Barrier());
  return Status::Ok();
}

Status Worker::MaybeCheckpoint(Loop& loop, pipeline::TensorPipeline* pipe) {
  State& s = *state_;
  const int interval = s.options.job.spec.checkpoint.interval_steps;
  // The last step is left to the end-of-training checkpoint.
  if (!s.store || interval <= 0 || loop.step % interval != 0 || loop.step >= s.total_steps) return Status::Ok();
  if (pipe == nullptr) return SaveCheckpoint(loop, nullptr);
  STELLA_ASSIGN_OR_RETURN(pipeline::PipelineSnapshot snapshot, pipe->Drain());
  // An agreed stop already ended the pipeline behind this step; the
  // end-of-training checkpoint records where.
  if (snapshot.next_step != loop.step) return Status::Ok();
  loop.applied = snapshot.next_step;
  return SaveCheckpoint(loop, &snapshot);
}

Status Worker::SaveCheckpoint(Loop& loop, const pipeline::PipelineSnapshot* snapshot) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const int64_t step = loop.applied;
  WorkerState w;
  w.meta = s.meta;
  w.loop.step = step;
  w.loop.sampler_epoch = loop.sampler->epoch();
  w.loop.sampler_cursor = loop.sampler->cursor();
  w.loop.batch = loop.batch;
  w.loop.target_reached = loop.target_reached;
  w.loop.final_accuracy = loop.final_accuracy;
  w.loop.last_loss = loop.last_loss;
  if (spec.sync.mode == spec::SyncMode::kStella) {
    STELLA_CHECK(snapshot != nullptr && snapshot->next_step == step);
    if (loop.step != step) {
      // Steps step .. loop.step - 1 were computed but dropped: record where
      // step `step` began.
      bool found = false;
      for (const auto& m : loop.sampler_marks) {
        if (m.step == step) {
          w.loop.sampler_epoch = m.epoch;
          w.loop.sampler_cursor = m.cursor;
          found = true;
        }
      }
      STELLA_CHECK(found);  // at most staleness + 1 steps are in flight
    }
    // The communication thread is idle at a drained boundary, so its state
    // (exchange, tuner, batch decisions) can be read here.
    w.sync = s.sparse_sync->SaveState();
    w.parameters = w.sync->master;
    w.pipeline = *snapshot;
    if (s.tuner) {
      TunerRecord t;
      t.tuner = s.tuner->SaveState();
      t.last_batches = last_batches_;
      t.history = batch_history_;
      // Decisions the compute thread applies from step `step` on.
      for (const auto& d : batch_history_) {
        if (d.apply_at_step >= step) t.pending.push_back(d);
      }
      w.tuner = std::move(t);
      w.loop.batch = step > 0 ? BatchAt(step - 1, s.global_rank) : spec.batch_size;
    }
  } else {
    w.parameters.resize(static_cast<size_t>(s.trainer->num_parameters()));
    s.trainer->CopyParametersTo(w.parameters.data());
    STELLA_ASSIGN_OR_RETURN(w.torch_optimizer, s.trainer->SaveOptimizerState());
  }
  auto saved = s.store->Save(step, EncodeWorkerState(w));
  if (!saved.ok()) return saved.status().WithContext("spec.checkpoint: checkpoint of step " + std::to_string(step));
  loop.last_checkpoint = step;
  s.events->Emit("checkpoint", {{"step", step},
                                {"path", saved->path},
                                {"bytes", saved->bytes},
                                {"seconds", saved->seconds},
                                {"removed_steps", saved->removed}});
  return Status::Ok();
}

Status Worker::AgreeAndRestore(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  if (!s.store) return Status::Ok();
  // Every worker of a job with a checkpoint path takes part, told to resume
  // or not, so the collectives always match; one that was not told to offers
  // nothing, and the job starts over.
  std::vector<int64_t> mine;
  std::vector<std::string> skipped;
  if (s.options.resume) {
    STELLA_ASSIGN_OR_RETURN(checkpoint::ScanResult scan, s.store->Scan());
    for (const auto& why : scan.skipped) {
      std::fprintf(stderr, "stella-runtime: checkpoint: skipping %s\n", why.c_str());
    }
    skipped = scan.skipped;
    mine = scan.steps;
    if (mine.size() > kAgreementSlots) mine.resize(kAgreementSlots);
  }
  const size_t block = kAgreementSlots * checkpoint::kFloatsPerStep;
  std::vector<float> all(block * static_cast<size_t>(s.world_size), 0.0f);
  checkpoint::StepsToFloats(mine, kAgreementSlots, all.data() + block * static_cast<size_t>(s.global_rank));
  exchange::DenseAllReduce agreement(s.group.get(), s.mesh.get(), ClusterWorkers(spec));
  exchange::DenseRoundInfo round;
  Status agreed_ok = agreement.AllReduceMean(all.data(), all.size(), kAgreementRound,
                                             loop.clock.Now() + s.options.collective_timeout, &round);
  if (!agreed_ok.ok()) return agreed_ok.WithContext("checkpoint resume agreement");
  if (round.degraded) {
    // Every worker must offer its steps, or clusters could resume from
    // different checkpoints.
    return UnavailableError("checkpoint resume agreement: only " + std::to_string(round.workers) + " of " +
                            std::to_string(s.world_size) + " workers were reached (a WAN link is down)");
  }
  std::vector<std::vector<int64_t>> per_worker;
  for (int g = 0; g < s.world_size; ++g) {
    per_worker.push_back(checkpoint::FloatsToSteps(all.data() + block * static_cast<size_t>(g), kAgreementSlots,
                                                   s.world_size));
  }
  const int64_t step = checkpoint::NewestCommonStep(per_worker);
  if (!s.options.resume) return Status::Ok();
  if (step < 0) {
    std::fprintf(stderr,
                 "stella-runtime: --resume: no checkpoint that every worker holds complete (or a worker was not "
                 "told to resume); starting at step 0\n");
    s.events->Emit("resume", {{"step", 0}, {"from_checkpoint", false}, {"skipped", skipped}});
    return Status::Ok();
  }
  const std::string path = s.store->PathFor(step);
  STELLA_ASSIGN_OR_RETURN(checkpoint::Sections sections, s.store->Load(step));
  STELLA_ASSIGN_OR_RETURN(WorkerState w, DecodeWorkerState(sections, path));
  STELLA_RETURN_IF_ERROR(CheckCompatible(w.meta, s.meta).WithContext("checkpoint " + path));
  const size_t n = static_cast<size_t>(s.trainer->num_parameters());
  if (w.loop.step != step || w.parameters.size() != n) {
    return DataLossError("checkpoint " + path + ": holds step " + std::to_string(w.loop.step) + " and " +
                         std::to_string(w.parameters.size()) + " parameters, expected step " + std::to_string(step) +
                         " and " + std::to_string(n));
  }
  STELLA_RETURN_IF_ERROR(
      loop.sampler->Seek(w.loop.sampler_epoch, w.loop.sampler_cursor).WithContext("checkpoint " + path));
  s.trainer->SetParameters(w.parameters.data());
  if (spec.sync.mode == spec::SyncMode::kStella) {
    STELLA_RETURN_IF_ERROR(s.sparse_sync->LoadState(*w.sync).WithContext("checkpoint " + path));
    loop.resume_snapshot = std::make_unique<pipeline::PipelineSnapshot>(std::move(*w.pipeline));
    loop.batch = w.loop.batch;
    if (s.tuner && w.tuner) {
      STELLA_RETURN_IF_ERROR(s.tuner->LoadState(w.tuner->tuner).WithContext("checkpoint " + path));
      last_batches_ = w.tuner->last_batches;
      batch_history_ = w.tuner->history;
      std::lock_guard<std::mutex> lock(s.decisions_mu);
      s.pending_batches.assign(w.tuner->pending.begin(), w.tuner->pending.end());
    } else {
      // The tuner was switched on or off: the spec's density and batch.
      s.sparse_sync->SetDensity(spec.sync.density);
      loop.batch = spec.batch_size;
      if (s.tuner && s.global_rank == 0) {
        std::fprintf(stderr, "stella-runtime: the checkpoint has no tuner state; the tuner starts afresh\n");
      }
    }
  } else {
    STELLA_RETURN_IF_ERROR(s.trainer->LoadOptimizerState(w.torch_optimizer).WithContext("checkpoint " + path));
  }
  loop.step = loop.applied = loop.resumed_from = loop.last_checkpoint = step;
  applied_.store(step);
  loop.target_reached = w.loop.target_reached;
  loop.final_accuracy = w.loop.final_accuracy;
  loop.last_loss = w.loop.last_loss;
  std::fprintf(stderr, "stella-runtime: resuming from checkpoint %s (step %lld)\n", path.c_str(),
               static_cast<long long>(step));
  s.events->Emit("resume", {{"step", step}, {"from_checkpoint", true}, {"path", path}, {"skipped", skipped}});
  return Status::Ok();
}

}  // namespace stella::worker
