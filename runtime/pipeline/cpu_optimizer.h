// CpuOptimizer: the CPU optimizer stage of the `stella` sync mode. Every
// worker keeps the fp32 master copy of all parameters and one TensorOptimizer
// per tensor, and applies the same aggregated sparse gradient to it, so the
// master copies of all workers of all clusters stay bit-identical (the
// optimizer's results do not depend on thread count or vector width).
//
// Per tensor, only the blocks some cluster sent are stepped (a lazy sparse
// step: untouched elements keep parameter and optimizer state). A tensor whose
// touched list covers every block is stepped densely, which the optim library
// guarantees to be bit-identical to the sparse step over all blocks.
//
// Thread safety: not thread-safe; one thread (the communication thread) drives
// an instance.
#ifndef STELLA_RUNTIME_PIPELINE_CPU_OPTIMIZER_H_
#define STELLA_RUNTIME_PIPELINE_CPU_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/optim/optimizer.h"
#include "runtime/optim/thread_pool.h"
#include "src/base/status.h"

namespace stella::pipeline {

struct CpuOptimizerOptions {
  // Elements per parameter tensor, model order. Required (non-empty).
  std::vector<int64_t> tensor_sizes;
  // Hyperparameters (validated by optim). Default: optim's defaults (sgd).
  optim::OptimizerOptions optimizer;
  // Threads that split large tensors (optim::kParallelThreshold), counting
  // the caller. Default 1: co-located workers stay off each other's cores.
  size_t threads = 1;
};

class CpuOptimizer {
 public:
  // Copies `initial_parameters` (sum of tensor_sizes floats) into the master
  // copy. InvalidArgument for invalid options.
  static StatusOr<std::unique_ptr<CpuOptimizer>> Create(const CpuOptimizerOptions& options,
                                                        const float* initial_parameters);

  // One step. `gradient` is dense (all tensors, model order); touched[i] lists
  // tensor i's blocks of `block_size` elements, strictly ascending; the
  // gradient of every other element is ignored. InvalidArgument if the lists
  // do not fit the tensors (nothing is changed for that tensor or later ones).
  Status Apply(const float* gradient, const std::vector<std::vector<uint32_t>>& touched, uint32_t block_size);

  // The same step restricted to tensors [first, end) (the per-tensor
  // pipeline steps one bucket of tensors at a time): `gradient` starts at
  // tensor `first`'s offset and `touched` has end - first lists. Stepping
  // every tensor once through any partition into ranges is bit-identical to
  // one Apply. InvalidArgument for a bad range or lists.
  Status ApplyTensors(size_t first, size_t end, const float* gradient,
                      const std::vector<std::vector<uint32_t>>& touched, uint32_t block_size);

  // The state a cluster resynchronization carries and averages, per
  // parameter element: the parameter itself plus the optimizer's dense
  // buffers (1 for SGD without momentum, 2 with momentum, 3 for Adam/AdamW).
  size_t state_floats_per_element() const { return state_floats_per_element_; }
  // Copies the state of tensors [first, end) to `out`, tensor after tensor:
  // parameters, then first moment (if kept), then second moment (if kept);
  // state_floats_per_element() times the range's elements in all. Step
  // counters are not part of it (every cluster steps every tensor once per
  // round, so they agree).
  void SaveRangeState(size_t first, size_t end, float* out) const;
  // Replaces the state of tensors [first, end) with one in SaveRangeState's
  // layout. InvalidArgument for a bad range (nothing changes).
  Status LoadRangeState(size_t first, size_t end, const float* in);

  // Offset of tensor i in the master copy (i <= number of tensors).
  size_t tensor_offset(size_t i) const { return offsets_[i]; }
  size_t num_tensors() const { return sizes_.size(); }

  // The master copy (num_parameters() floats).
  const float* parameters() const { return master_.data(); }
  size_t num_parameters() const { return master_.size(); }
  const optim::TensorOptimizer& tensor_optimizer(size_t i) const { return *optimizers_[i]; }

 private:
  CpuOptimizer() = default;

  std::vector<int64_t> sizes_;
  std::vector<size_t> offsets_;  // prefix sums of sizes_ (one more entry)
  std::vector<float> master_;
  std::vector<std::unique_ptr<optim::TensorOptimizer>> optimizers_;
  std::unique_ptr<optim::ThreadPool> pool_;  // null for one thread
  std::vector<float> values_;                // scratch: packed values of touched blocks
  size_t state_floats_per_element_ = 1;
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_CPU_OPTIMIZER_H_
