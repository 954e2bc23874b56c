// The wiring from a StellaJob (plus the worker's flags) to each component's
// options. Pure functions without libtorch: every spec value reaches its
// component here, once, and the components keep no copy of the spec's
// defaults (the spec library is their one home).
#ifndef STELLA_RUNTIME_WORKER_OPTIONS_FROM_SPEC_H_
#define STELLA_RUNTIME_WORKER_OPTIONS_FROM_SPEC_H_

#include <chrono>
#include <cstdint>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/compute/trainer_options.h"
#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"
#include "runtime/optim/optimizer.h"
#include "runtime/pipeline/sparse_sync.h"
#include "runtime/tuner/tuner.h"
#include "runtime/tuner/tuner_driver.h"
#include "runtime/worker/worker_options.h"
#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::worker {

// Slots of the control section that every mode carries: decisions all
// workers must take at the same step, and the loss (averaged for reporting).
enum ControlSlot { kStopSlot = 0, kLossSlot = 1, kNumControlSlots = 2 };

// Stella mode's pipeline unit: consecutive tensors (reverse model order) are
// grouped until a bucket holds this many bytes of gradient, as DDP does.
// Measured on examples/wan10-stella.yaml (10 Mbit/s, 5 ms): one bucket per
// tensor halved throughput and 32 KB buckets lost 4 points of accuracy, since
// small WAN rounds are latency-bound and the tuner, reading their low
// goodput as a slow link, drove the density to its floor.
inline constexpr size_t kBucketBytes = 256 * 1024;
// Steps between tuner decisions: short enough to follow a bandwidth change
// within ~20 steps (the tuner itself reacts within 1-3 rounds).
inline constexpr int kTunerEverySteps = 5;
// Complete checkpoints kept per worker: if the newest is found torn or
// corrupt, the one before it is used.
inline constexpr int kCheckpointsKept = 2;

struct Placement {
  int global_rank = 0;
  int world_size = 1;
};
// InvalidArgument naming the flag when the cluster index, local rank or the
// number of WAN addresses does not fit the job.
StatusOr<Placement> PlacementFrom(const WorkerOptions& o);

std::vector<int> ClusterWorkers(const spec::JobSpec& spec);
// Steps to train: spec.training.steps, or the epochs over the training set.
int64_t TotalSteps(const spec::JobSpec& spec, int64_t train_size, int world_size);
// The wait for a late WAN peer in one round (the flag, or half the
// collective timeout, while the cluster's other workers wait meanwhile).
std::chrono::milliseconds WanRoundTimeout(const WorkerOptions& o);

compute::TrainerOptions TrainerOptionsFrom(const WorkerOptions& o);
exchange::GlooGroupOptions GroupOptionsFrom(const WorkerOptions& o);
// Only for the gateway of a multi-cluster job.
exchange::WanMeshOptions WanMeshOptionsFrom(const WorkerOptions& o);
// Needs spec.checkpoint.path.
checkpoint::StoreOptions StoreOptionsFrom(const WorkerOptions& o);

// The CPU optimizer of stella mode: the same hyperparameters the libtorch
// optimizer gets in ddp mode; with DGC momentum correction the momentum
// moves into error feedback and the receivers run plain SGD.
// FailedPrecondition naming the spec field for combinations that cannot work.
StatusOr<optim::OptimizerOptions> CpuOptimizerOptionsFrom(const spec::JobSpec& spec);

// Stella mode's sync stage for a model with these tensors.
StatusOr<pipeline::SparseSyncOptions> SparseSyncOptionsFrom(const WorkerOptions& o, const Placement& p,
                                                            const std::vector<int64_t>& tensor_sizes,
                                                            size_t num_control);
tuner::TelemetryLayout TelemetryLayoutFrom(const spec::JobSpec& spec, int world_size);
tuner::TunerOptions TunerOptionsFrom(const spec::JobSpec& spec, const std::vector<int64_t>& tensor_sizes,
                                     int world_size);
// The driver without its Tuner (the caller creates one when spec.sync.tuner).
tuner::TunerDriverOptions TunerDriverOptionsFrom(const WorkerOptions& o, const Placement& p);

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_OPTIONS_FROM_SPEC_H_
