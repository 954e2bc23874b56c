// Worker: wiring (Create) and reporting (progress, evaluation, the run's
// summary). The training loops are in dense_loop.cc and stella_loop.cc,
// checkpoints and resume in resume.cc, component options in
// options_from_spec.cc.
#include "runtime/worker/worker.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "runtime/worker/check_job.h"
#include "runtime/worker/worker_internal.h"
#include "src/base/file.h"

namespace stella::worker {
namespace {

// stella_samples_per_second is updated once per window of at least this much
// wall time (short enough for a 15 s scrape to see it move).
constexpr double kRateWindowSeconds = 2.0;

Status DumpParameters(const compute::Trainer& trainer, const std::string& path) {
  std::vector<float> params(static_cast<size_t>(trainer.num_parameters()));
  trainer.CopyParametersTo(params.data());
  return WriteFileAtomically(path, {reinterpret_cast<const char*>(params.data()), params.size() * sizeof(float)});
}

}  // namespace

Worker::Worker(std::unique_ptr<State> state) : state_(std::move(state)) {}
Worker::~Worker() = default;

StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& o) {
  auto s = std::make_unique<State>();
  s->options = o;
  const auto& spec = o.job.spec;
  STELLA_ASSIGN_OR_RETURN(s->placement, PlacementFrom(o));
  const auto& cluster = spec.clusters[static_cast<size_t>(o.cluster_index)];
  s->events = std::make_unique<EventSink>(stdout, nlohmann::json{{"cluster", o.cluster_index},
                                                                 {"cluster_name", cluster.name},
                                                                 {"local_rank", o.local_rank},
                                                                 {"global_rank", s->global_rank()}});

  // Data: every worker reads (maps) the training set and takes its shard;
  // rank 0 evaluates on the validation set.
  const data::DataSource source = DataSourceFrom(spec.dataset);
  STELLA_ASSIGN_OR_RETURN(s->train, data::LoadDataset(source, data::Split::kTrain));
  int classes = s->train.num_classes;
  if (s->global_rank() == 0) {
    STELLA_ASSIGN_OR_RETURN(s->test, data::LoadDataset(source, data::Split::kTest));
    STELLA_RETURN_IF_ERROR(CheckValidationShape(spec.dataset, s->train, s->test));
    // Only a TorchScript model's check uses it: a zoo model's width must be
    // the same on every rank.
    if (!spec.model.torchscript.empty()) classes = std::max(classes, s->test.num_classes);
  }
  s->total_steps = TotalSteps(spec, s->train.size, s->world_size());
  STELLA_ASSIGN_OR_RETURN(s->trainer, compute::Trainer::Create(TrainerOptionsFrom(o), s->train, classes));
  // Metrics first, so a scrape during the (possibly slow) rendezvous works.
  STELLA_RETURN_IF_ERROR(StartMetrics(*s));
  STELLA_RETURN_IF_ERROR(ConnectGroups(*s));
  s->meta.mode = spec::ToString(spec.sync.mode);
  s->meta.world_size = s->world_size();
  s->meta.global_rank = s->global_rank();
  s->meta.staleness = spec.sync.mode == spec::SyncMode::kStella ? spec.sync.staleness : 0;
  s->meta.tensor_sizes = s->trainer->tensor_sizes();
  if (!spec.checkpoint.path.empty()) {
    auto store = checkpoint::CheckpointStore::Create(StoreOptionsFrom(o));
    if (!store.ok()) return store.status().WithContext("spec.checkpoint");
    s->store = std::move(store).value();
  } else if (o.resume) {
    return InvalidArgumentError("--resume: the job has no spec.checkpoint.path to resume from");
  }
  if (spec.sync.mode == spec::SyncMode::kStella) {
    Status st = CreateStellaStages(*s);
    if (!st.ok()) return st.WithContext("spec.sync.mode stella");
  } else {
    s->allreduce = std::make_unique<exchange::DenseAllReduce>(s->group.get(), s->mesh.get(), ClusterWorkers(spec));
  }
  return std::unique_ptr<Worker>(new Worker(std::move(s)));
}

std::map<std::string, std::string> Worker::Labels(const State& s) {
  const WorkerOptions& o = s.options;
  return {{"stella_job", o.job.metadata.name},  // "job" is Prometheus's scrape job
          {"cluster", o.job.spec.clusters[static_cast<size_t>(o.cluster_index)].name},
          {"worker", std::to_string(s.global_rank())}};
}

Status Worker::StartMetrics(State& s) {
  const WorkerOptions& o = s.options;
  const auto& spec = o.job.spec;
  s.metrics = std::make_unique<WorkerMetrics>(s.registry, Labels(s));
  s.metrics->parameters.Set(static_cast<double>(s.trainer->num_parameters()));
  s.metrics->batch_size.Set(spec.batch_size);
  s.metrics->density.Set(spec.sync.mode == spec::SyncMode::kStella ? spec.sync.density : 1.0);
  if (o.metrics_port <= 0) return Status::Ok();
  metrics::ExposerOptions eo;
  eo.bind_address = o.metrics_bind;
  eo.port = o.metrics_port;
  auto exposer = metrics::Exposer::Create(eo, &s.registry);
  if (!exposer.ok()) return exposer.status().WithContext("metrics endpoint on port " + std::to_string(o.metrics_port));
  s.exposer = std::move(exposer).value();
  return Status::Ok();
}

// The intra-cluster group, then (gateways of multi-cluster jobs) the WAN mesh.
Status Worker::ConnectGroups(State& s) {
  const WorkerOptions& o = s.options;
  const exchange::GlooGroupOptions go = GroupOptionsFrom(o);
#ifdef STELLA_WITH_NCCL
  // GPU workers reduce over NCCL; the rendezvous store is the same.
  if (s.trainer->device_name().rfind("cuda", 0) == 0) {
    STELLA_ASSIGN_OR_RETURN(s.group, exchange::CreateNcclGroup(go, /*device=*/0));
  } else {
    STELLA_ASSIGN_OR_RETURN(s.group, exchange::CreateGlooGroup(go));
  }
#else
  STELLA_ASSIGN_OR_RETURN(s.group, exchange::CreateGlooGroup(go));
#endif
  if (o.local_rank != 0 || o.job.spec.clusters.size() < 2) return Status::Ok();
  if (o.tls_dir.empty()) {
    // Once per process: only this gateway's mesh reaches here.
    std::fprintf(stderr,
                 "stella-runtime: warning: WAN links are unencrypted and unauthenticated (no --tls-dir); "
                 "anyone who can reach gateway port %s can join this job\n",
                 o.wan_addresses[static_cast<size_t>(o.cluster_index)].c_str());
  }
  STELLA_ASSIGN_OR_RETURN(s.mesh, exchange::WanMesh::Create(WanMeshOptionsFrom(o)));
  s.wan_metrics = std::make_unique<WanMetrics>(s.registry, Labels(s), s.mesh->stats());
  return Status::Ok();
}

// Stella mode: the sync stage (its master copy starts from the model's
// initial parameters, the same on every worker: same seed) and the tuner
// driver, which owns the density and batch sizes.
Status Worker::CreateStellaStages(State& s) {
  const auto& spec = s.options.job.spec;
  const std::vector<int64_t> sizes = s.trainer->tensor_sizes();
  const tuner::TelemetryLayout layout = TelemetryLayoutFrom(spec, s.world_size());
  STELLA_ASSIGN_OR_RETURN(pipeline::SparseSyncOptions so,
                          SparseSyncOptionsFrom(s.options, s.placement, sizes, layout.size()));
  std::vector<float> initial(static_cast<size_t>(s.trainer->num_parameters()));
  s.trainer->CopyParametersTo(initial.data());
  STELLA_ASSIGN_OR_RETURN(s.sparse_sync, pipeline::SparseSync::Create(so, s.group.get(), s.mesh.get(), initial.data()));
  tuner::TunerDriverOptions d = TunerDriverOptionsFrom(s.options, s.placement);
  if (spec.sync.tuner) {
    auto t = tuner::Tuner::Create(TunerOptionsFrom(spec, sizes, s.world_size()));
    if (!t.ok()) return t.status().WithContext("spec.sync.tuner");
    d.tuner = std::move(t).value();
  }
  STELLA_ASSIGN_OR_RETURN(s.driver, tuner::TunerDriver::Create(std::move(d)));
  return Status::Ok();
}

// What this gateway would have sent in `steps` steps of dense fp32
// exchange (ddp mode's payload to every other cluster), for the summary's
// comparison. 0 off gateways.
uint64_t Worker::DenseWanBytes(int64_t steps) const {
  if (!state_->mesh || steps <= 0) return 0;
  const uint64_t payload = (static_cast<uint64_t>(state_->trainer->num_parameters()) + kNumControlSlots) * 4;
  return static_cast<uint64_t>(steps) * payload * static_cast<uint64_t>(state_->mesh->num_clusters() - 1);
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
  loop.evaluated = true;
  loop.final_accuracy = r.accuracy;
  loop.final_validation_loss = r.loss;
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
  const int64_t global_batch = int64_t{spec.batch_size} * s.world_size();
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

  const bool reporter = s.global_rank() == 0;
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
  const bool reporter = s.global_rank() == 0;
  s.events->Emit("start", {{"world_size", s.world_size()},
                           {"device", s.trainer->device_name()},
                           {"mode", spec::ToString(spec.sync.mode)},
                           {"parameters", s.trainer->num_parameters()},
                           {"total_steps", s.total_steps},
                           {"metrics_port", s.exposer ? s.exposer->port() : 0}});
  Loop loop;
  loop.sampler =
      std::make_unique<data::BatchSampler>(s.train.size, s.global_rank(), s.world_size(), spec.training.seed);
  loop.batch = spec.batch_size;
  STELLA_RETURN_IF_ERROR(AgreeAndRestore(loop));
  loop.start = loop.clock.Now();
  loop.rate_window_start = loop.start;
  STELLA_RETURN_IF_ERROR(spec.sync.mode == spec::SyncMode::kStella ? RunStella(loop) : RunDense(loop));
  // Stella mode evaluated in-loop on parameters up to `staleness` updates
  // old; the final evaluation must see the final parameters.
  if (reporter &&
      (!loop.evaluated || loop.step % spec.training.eval_every != 0 || spec.sync.mode == spec::SyncMode::kStella)) {
    Evaluate(loop);
  }

  const double wall = SecondsBetween(loop.start, loop.clock.Now());
  auto [sent, received] = WanTotals();
  s.events->Emit("done", {{"steps", loop.applied},
                          // This process's samples (a resumed run counts from its resume step); the CLI sums workers.
                          {"samples", (loop.applied - loop.resumed_from) * spec.batch_size},
                          {"resumed_from", loop.resumed_from},
                          {"final_accuracy", loop.final_accuracy},  // -1: none (a language model)
                          {"final_validation_loss", loop.final_validation_loss},
                          {"wall_seconds", wall},
                          {"wan_bytes_sent", sent},
                          {"wan_bytes_received", received},
                          {"dense_wan_bytes", DenseWanBytes(loop.applied - loop.resumed_from)},
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

}  // namespace stella::worker
