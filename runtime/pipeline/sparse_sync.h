// SparseSync: one worker's communication + optimizer step of the `stella`
// sync mode, all collectives included. Per step:
//   1. intra-cluster all-reduce (sum) of [gradient | control] (Gloo, LAN);
//   2. gateway only: SparseExchange (compress with error feedback, WAN
//      all-gather between gateways, aggregate in cluster order);
//   3. intra-cluster broadcast from the gateway of one float message
//      [dense aggregate | control mean | touched-block mask];
//   4. every worker: CpuOptimizer::Apply on its master copy.
// Every worker of every cluster applies the same bits to the same master
// copy, so parameters stay identical everywhere.
//
// Lost WAN links (see sparse_exchange.h): a round that lacks some clusters'
// payloads is applied as the mean over the clusters present; the broadcast
// message carries the round's flags (degraded, resync, a peer left) to every
// worker. In a resync round the gateway broadcasts the averaged state of the
// bucket (master parameters and optimizer buffers) in a second broadcast and
// every worker installs it before applying the round's update, so after a
// resync the clusters are bit-identical again.
//
// Per-tensor pipelining: with `buckets` set, the same four stages run per
// bucket of consecutive tensors (StepBucket), so the communication of the
// late layers' gradients starts while backward is still producing the early
// ones. Each bucket has its own exchange state (compressors, error feedback:
// both per tensor anyway, so the numerics do not depend on the bucketing) and
// its own WAN frame tag, step * num_buckets + bucket. The control section
// rides with the bucket that holds tensor 0 (the last one backward produces).
//
// Thread safety: not thread-safe; one thread (the pipeline's communication
// thread) drives it, calling Step in the same order on every worker, since
// the collectives must match up.
#ifndef STELLA_RUNTIME_PIPELINE_SPARSE_SYNC_H_
#define STELLA_RUNTIME_PIPELINE_SPARSE_SYNC_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/compress/compressor.h"
#include "runtime/compress/wire.h"
#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"
#include "runtime/optim/optimizer.h"
#include "runtime/pipeline/cpu_optimizer.h"
#include "runtime/pipeline/sparse_exchange.h"
#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella::pipeline {

struct SparseSyncOptions {
  // Elements per parameter tensor, model order. Required.
  std::vector<int64_t> tensor_sizes;
  // The CPU optimizer's hyperparameters. Default optim's (sgd).
  optim::OptimizerOptions optimizer;
  // Threads of the CPU optimizer, counting the caller. Default 1.
  size_t optimizer_threads = 1;
  // Gateway compression (see CompressionOptions).
  CompressionOptions compression;
  // Workers in the job (>= 1) and this worker's cluster. Defaults 1 and 0.
  int world_size = 1;
  int cluster_index = 0;
  // Workers per cluster (see SparseExchangeOptions). Default empty: even.
  std::vector<int> cluster_workers;
  // Re-join clusters after a lost link by averaging their state (see the
  // file comment). Default true; false leaves the clusters apart.
  bool resync = true;
  // Control floats after the gradient in each step's buffer. Default 0.
  size_t num_control = 0;
  // Tensor ranges [first, end) that StepBucket steps, a partition of all
  // tensors; the one with first == 0 carries the control section. Default
  // empty: one bucket of all tensors, driven by Step.
  std::vector<std::pair<size_t, size_t>> buckets;
  // Bound on the WAN round of a step: a cluster whose payload has not
  // arrived by then is left out of the round. Must be well below the intra-
  // cluster group's own timeout (the other workers wait in the broadcast
  // meanwhile). Default 60 s.
  std::chrono::milliseconds timeout{60000};
  // Time source for deadlines and stats. Default the system clock.
  const Clock* clock = &SystemClock::Get();
};

struct SyncStepStats {
  double allreduce_seconds = 0;  // intra-cluster sum
  double compress_seconds = 0;   // gateway: feedback + selection + encoding
  double wan_seconds = 0;        // gateway: WAN all-gather + aggregation
  double broadcast_seconds = 0;  // intra-cluster broadcast (waits for the gateway)
  double optimizer_seconds = 0;  // mask decoding + CPU optimizer
  size_t payload_bytes = 0;      // gateway: bytes of this cluster's payload
  uint64_t wan_bytes_sent = 0;   // gateway: bytes sent over the WAN this step
  size_t touched_elements = 0;   // parameters updated this step
  bool degraded = false;         // some cluster's gradient is missing from the update
  bool resynced = false;         // the clusters' states were averaged (resync round)
  bool peer_left = false;        // some peer cluster said Bye (ended its job)
};

// Everything a SparseSync carries from one step to the next, for
// checkpoints. The exchange state exists only on gateways.
struct SparseSyncState {
  std::vector<float> master;                     // the master copy
  std::vector<optim::OptimizerState> optimizer;  // per tensor, model order
  std::vector<TensorExchangeState> exchange;     // per tensor (gateway), else empty
};

class SparseSync {
 public:
  // `group` (every worker) and `mesh` (gateway of a multi-cluster job, else
  // null) are owned by the caller and outlive this object.
  // `initial_parameters` seeds the master copy. InvalidArgument for bad
  // options.
  static StatusOr<std::unique_ptr<SparseSync>> Create(const SparseSyncOptions& options,
                                                      exchange::IntraClusterGroup* group, exchange::WanMesh* mesh,
                                                      const float* initial_parameters);

  // One step at `density` (in (0, 1]; only the gateway's value matters: it
  // compresses; InvalidArgument outside that range). The density is an
  // argument, not state: the tuner driver (runtime/tuner/tuner_driver.h)
  // owns it. `buffer` holds this worker's gradient (num_parameters floats)
  // followed by num_control floats; it is used as scratch. On success the
  // control floats hold the job-wide mean and parameters() includes this
  // step's update.
  // Only without `buckets` (a single bucket).
  Status Step(uint32_t step, double density, float* buffer, SyncStepStats* stats);

  // One bucket of one step: `gradient` holds this worker's gradient of the
  // bucket's tensors (contiguous, model order) and is used as scratch;
  // `control` (num_control floats) is read and replaced by the job-wide mean
  // for the bucket holding tensor 0 and ignored (may be null) otherwise.
  // Every worker must call it for the same (step, bucket) sequence. On
  // success parameters() includes the update of the bucket's tensors.
  Status StepBucket(uint32_t step, size_t bucket, double density, float* gradient, float* control,
                    SyncStepStats* stats);
  size_t num_buckets() const { return ranges_.size(); }

  // Checkpoints. Only between steps (no StepBucket running).
  SparseSyncState SaveState() const;
  // Restores a SaveState of a SparseSync with the same tensors and role
  // (gateway or not). InvalidArgument naming the mismatch; on error the
  // object must not be used.
  Status LoadState(const SparseSyncState& state);

  const float* parameters() const { return optimizer_->parameters(); }
  size_t num_parameters() const { return optimizer_->num_parameters(); }
  bool is_gateway() const { return gateway_; }

 private:
  // The state of one bucket of tensors.
  struct Range {
    size_t first = 0;  // tensors [first, end)
    size_t end = 0;
    size_t elements = 0;     // gradient floats of the range
    size_t num_control = 0;  // control floats it carries (0 or num_control)
    std::vector<int64_t> sizes;
    std::unique_ptr<SparseExchange> exchange;  // gateway only
    size_t mask_words = 0;
    std::vector<float> sum;      // [gradient | control], the intra-cluster sum
    std::vector<float> message;  // [aggregate | control | mask | flags], broadcast from the gateway
    size_t state_floats = 0;     // of a resync; 0 without resync
    // Resync: the range's state (CpuOptimizer::SaveRangeState layout),
    // allocated on first use.
    std::vector<float> state;
    std::vector<std::vector<uint32_t>> touched;
  };

  SparseSync() = default;
  Status RunRange(uint32_t tag, double density, Range& r, float* gradient, float* control, SyncStepStats* stats);

  SparseSyncOptions options_;
  exchange::IntraClusterGroup* group_ = nullptr;  // not owned
  std::unique_ptr<CpuOptimizer> optimizer_;
  uint32_t block_size_ = 1;
  size_t num_parameters_ = 0;
  bool gateway_ = false;
  std::vector<Range> ranges_;  // one per bucket
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_SPARSE_SYNC_H_
