#include "runtime/worker/options_from_spec.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/pipeline/sparse_exchange.h"
#include "runtime/pipeline/tensor_pipeline.h"

namespace stella::worker {
namespace {

const spec::ClusterSpec& ClusterOf(const WorkerOptions& o) {
  return o.job.spec.clusters[static_cast<size_t>(o.cluster_index)];
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

StatusOr<Placement> PlacementFrom(const WorkerOptions& o) {
  const auto& spec = o.job.spec;
  const int num_clusters = static_cast<int>(spec.clusters.size());
  if (o.cluster_index < 0 || o.cluster_index >= num_clusters) {
    return InvalidArgumentError("--cluster-index " + std::to_string(o.cluster_index) + " out of range: the job has " +
                                std::to_string(num_clusters) + " clusters");
  }
  const auto& cluster = ClusterOf(o);
  if (o.local_rank < 0 || o.local_rank >= cluster.workers) {
    return InvalidArgumentError("--local-rank " + std::to_string(o.local_rank) + " out of range: cluster " +
                                cluster.name + " has " + std::to_string(cluster.workers) + " workers");
  }
  if (num_clusters > 1 && static_cast<int>(o.wan_addresses.size()) != num_clusters) {
    return InvalidArgumentError("--wan-ports: need one gateway address per cluster (" + std::to_string(num_clusters) +
                                "), got " + std::to_string(o.wan_addresses.size()));
  }
  Placement p;
  p.global_rank = o.local_rank;
  for (int c = 0; c < o.cluster_index; ++c) p.global_rank += spec.clusters[static_cast<size_t>(c)].workers;
  p.world_size = o.job.TotalWorkers();
  return p;
}

std::vector<int> ClusterWorkers(const spec::JobSpec& spec) {
  std::vector<int> out;
  for (const auto& c : spec.clusters) out.push_back(c.workers);
  return out;
}

int64_t TotalSteps(const spec::JobSpec& spec, int64_t train_size, int world_size) {
  if (spec.training.steps > 0) return spec.training.steps;
  const double global_batch = static_cast<double>(int64_t{spec.batch_size} * world_size);
  return static_cast<int64_t>(std::ceil(spec.training.epochs * static_cast<double>(train_size) / global_batch));
}

std::chrono::milliseconds WanRoundTimeout(const WorkerOptions& o) {
  return o.wan_round_timeout.count() > 0 ? o.wan_round_timeout : o.collective_timeout / 2;
}

compute::TrainerOptions TrainerOptionsFrom(const WorkerOptions& o) {
  const auto& spec = o.job.spec;
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
  return to;
}

exchange::GlooGroupOptions GroupOptionsFrom(const WorkerOptions& o) {
  exchange::GlooGroupOptions go;
  go.store_host = o.store_host;
  go.store_port = o.store_port;
  go.rank = o.local_rank;
  go.size = ClusterOf(o).workers;
  go.bind_host = o.bind_host;
  go.timeout = o.collective_timeout;
  return go;
}

exchange::WanMeshOptions WanMeshOptionsFrom(const WorkerOptions& o) {
  const auto& cluster = ClusterOf(o);
  exchange::WanMeshOptions mo;
  mo.job_name = o.job.metadata.name;
  mo.cluster_index = o.cluster_index;
  mo.addresses = o.wan_addresses;
  for (const auto& c : o.job.spec.clusters) mo.cluster_names.push_back(c.name);
  mo.egress_bits_per_second = cluster.wan.bandwidth_mbps * 1e6;
  mo.egress_latency = std::chrono::microseconds(static_cast<int64_t>(cluster.wan.latency_ms * 1000));
  mo.connect_timeout = o.collective_timeout;
  mo.tls_dir = o.tls_dir;
  mo.job_namespace = o.job.metadata.namespace_name;
  if (o.wan_link_timeout.count() > 0) mo.link_timeout = o.wan_link_timeout;
  mo.heartbeat_interval = std::max(std::chrono::milliseconds(1), mo.link_timeout / 10);
  return mo;
}

checkpoint::StoreOptions StoreOptionsFrom(const WorkerOptions& o) {
  const auto& cluster = ClusterOf(o);
  checkpoint::StoreOptions co;
  co.dir = checkpoint::WorkerDirectory(o.job.spec.checkpoint.path, cluster.name, o.local_rank);
  co.job = o.job.metadata.name;
  co.worker = cluster.name + "/" + std::to_string(o.local_rank);
  co.keep = kCheckpointsKept;
  return co;
}

StatusOr<optim::OptimizerOptions> CpuOptimizerOptionsFrom(const spec::JobSpec& spec) {
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
  if (spec.sync.momentum_correction && !spec.sync.error_feedback) {
    return FailedPreconditionError("spec.sync.momentumCorrection: needs spec.sync.errorFeedback true");
  }
  STELLA_RETURN_IF_ERROR(optim::ValidateOptimizerOptions(oo));
  return oo;
}

StatusOr<pipeline::SparseSyncOptions> SparseSyncOptionsFrom(const WorkerOptions& o, const Placement& p,
                                                            const std::vector<int64_t>& tensor_sizes,
                                                            size_t num_control) {
  const auto& spec = o.job.spec;
  pipeline::SparseSyncOptions so;
  STELLA_ASSIGN_OR_RETURN(so.optimizer, CpuOptimizerOptionsFrom(spec));
  so.tensor_sizes = tensor_sizes;
  so.optimizer_threads = static_cast<size_t>(std::max(1, o.threads));
  so.compression.compressor.kind = spec::ToString(spec.sync.compressor);
  so.compression.compressor.seed = spec.training.seed;
  so.compression.precision = WirePrecision(spec.sync.value_precision);
  so.compression.error_feedback = spec.sync.error_feedback;
  so.compression.momentum_correction = spec.sync.momentum_correction ? spec.optimizer.momentum : 0.0;
  so.world_size = p.world_size;
  so.cluster_index = o.cluster_index;
  so.num_control = num_control;
  so.timeout = WanRoundTimeout(o);
  so.cluster_workers = ClusterWorkers(spec);
  so.buckets = pipeline::MakeBuckets(tensor_sizes, kBucketBytes);
  return so;
}

tuner::TelemetryLayout TelemetryLayoutFrom(const spec::JobSpec& spec, int world_size) {
  tuner::TelemetryLayout t;
  t.fixed = kNumControlSlots;
  t.world = world_size;
  t.clusters = static_cast<int>(spec.clusters.size());
  return t;
}

tuner::TunerOptions TunerOptionsFrom(const spec::JobSpec& spec, const std::vector<int64_t>& tensor_sizes,
                                     int world_size) {
  tuner::TunerOptions to;
  for (int64_t size : tensor_sizes) to.tensor_sizes.push_back(static_cast<uint64_t>(size));
  // Wire sizes follow the spec's precision and the compressor's block size.
  to.bytes_model.value_bytes = spec.sync.value_precision == spec::ValuePrecision::kFp32 ? 4 : 2;
  to.bytes_model.block_size = pipeline::CompressorBlockSize(spec::ToString(spec.sync.compressor));
  to.min_density = spec.sync.min_density;
  to.max_density = spec.sync.max_density;
  to.initial_density = spec.sync.density;
  to.global_batch = int64_t{spec.batch_size} * world_size;
  // A decision must reach every compute thread before it applies: the
  // compute thread runs at most `staleness` steps ahead of the exchange.
  to.lead_steps = spec.sync.staleness + 1;
  return to;
}

tuner::TunerDriverOptions TunerDriverOptionsFrom(const WorkerOptions& o, const Placement& p) {
  const auto& spec = o.job.spec;
  tuner::TunerDriverOptions d;
  d.layout = TelemetryLayoutFrom(spec, p.world_size);
  d.cluster_workers = ClusterWorkers(spec);
  for (const auto& c : spec.clusters) d.cluster_caps_bytes_per_s.push_back(c.wan.bandwidth_mbps * 1e6 / 8);
  d.global_rank = p.global_rank;
  d.cluster_index = o.cluster_index;
  d.initial_batch = spec.batch_size;
  d.initial_density = spec.sync.density;
  d.every_steps = kTunerEverySteps;
  return d;
}

}  // namespace stella::worker
