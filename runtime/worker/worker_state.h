// WorkerState: what one worker writes into its checkpoint, and the sections
// of the checkpoint file (runtime/checkpoint) that hold it.
//
// A checkpoint is taken at a step boundary S where every computed step is
// applied (stella mode drains its pipeline first), so all of it describes the
// same moment. Sections:
//   meta        mode, world size, global rank, staleness, tensor sizes: what
//               must match the running job (CheckCompatible)
//   loop        step S, the sampler's (epoch, cursor), this worker's batch
//               size, the target-accuracy flag, the last loss and accuracy
//   parameters  fp32 parameters: the model (ddp) or the master copy (stella)
//   ddp:    torch_optimizer  libtorch's optimizer archive (moments, steps)
//   stella: cpu_optimizer    per tensor: step count and moments
//           exchange         the density of the next step; gateways
//                            only: per tensor compressor state,
//                            error-feedback residual and DGC velocity
//           pipeline         the published versions S - s .. S - 1 (S itself
//                            is the master copy) and the agreed control
//                            values of step S - 1
//           tuner            with spec.sync.tuner: the tuner's state and the
//                            worker's record of batch decisions (all made,
//                            and those not yet applied by the compute thread)
// Every worker saves its own copy of the replicated state (parameters,
// optimizer), so each cluster's checkpoint directory is self-sufficient.
//
// Thread safety: plain values and pure functions.
#ifndef STELLA_RUNTIME_WORKER_WORKER_STATE_H_
#define STELLA_RUNTIME_WORKER_WORKER_STATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/pipeline/sparse_sync.h"
#include "runtime/pipeline/tensor_pipeline.h"
#include "runtime/tuner/decision.h"
#include "src/base/status.h"

namespace stella::worker {

struct CheckpointMeta {
  std::string mode;  // "ddp" | "stella"
  int world_size = 0;
  int global_rank = 0;
  int staleness = 0;  // stella mode; 0 in ddp
  std::vector<int64_t> tensor_sizes;
};

struct LoopState {
  int64_t step = 0;  // S: steps computed and applied
  int64_t sampler_epoch = 0;
  int64_t sampler_cursor = 0;
  int batch = 0;  // this worker's batch size (the tuner may have changed it)
  bool target_reached = false;
  double final_accuracy = -1;  // last evaluation (rank 0), -1 = none
  float last_loss = 0;
};

struct TunerRecord {
  std::string tuner;                     // Tuner::SaveState
  std::vector<int> last_batches;         // the last batch plan made
  std::vector<tuner::Decision> history;  // every batch decision made, in order
  std::vector<tuner::Decision> pending;  // not yet applied by the compute thread
};

struct WorkerState {
  CheckpointMeta meta;
  LoopState loop;
  std::vector<float> parameters;
  std::string torch_optimizer;                         // ddp
  std::optional<pipeline::SparseSyncState> sync;       // stella; sync->master is `parameters`
  double density = 0;                                  // stella: the tuner driver's density
  std::optional<pipeline::PipelineSnapshot> pipeline;  // stella
  std::optional<TunerRecord> tuner;                    // stella with the tuner
};

// The sections of `state`. sync->master and the pipeline's newest version are
// not written twice: both are `parameters`.
checkpoint::Sections EncodeWorkerState(const WorkerState& state);

// Reads the sections back. DataLoss naming the section and field for
// anything malformed or missing.
StatusOr<WorkerState> DecodeWorkerState(const checkpoint::Sections& sections, const std::string& source);

// FailedPrecondition naming what differs when a checkpoint of `saved` cannot
// continue in a job described by `now` (another mode, world size, rank,
// staleness or model).
Status CheckCompatible(const CheckpointMeta& saved, const CheckpointMeta& now);

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_STATE_H_
