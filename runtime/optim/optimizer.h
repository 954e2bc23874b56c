// The CPU optimizer: applies SGD, Adam or AdamW to the fp32 master copy of one
// parameter tensor, from a dense gradient or from the aggregated sparse
// gradient that the cross-cluster exchange delivers.
//
// Numerics follow the PyTorch 1.13 C++ optimizers (torch::optim::SGD, Adam,
// AdamW) operation by operation: hyperparameters are doubles, coefficients
// are computed in double and rounded to float once, exactly where ATen turns
// a Scalar into float, and every float operation runs in ATen's order. So
// StepDense tracks torch::optim within rounding, not bit for bit: libtorch's
// vector kernels fuse p + alpha * d into one FMA and ours do not. After 20
// steps the largest difference is ~1.5e-7 of the tensor's largest magnitude
// (optim_torch_test); compare the two modes with such a magnitude-relative
// measure, since an element that cancels to ~0 has no meaningful elementwise
// relative error. Results do not depend on the thread count or on the CPU's
// vector width: each element is computed independently, with the same IEEE
// operations, so threaded runs are bit-identical.
//
// Sparse steps are "lazy": only the elements that arrived are touched; every
// other element keeps its parameter AND its optimizer state unchanged. The
// state (momentum buffer, Adam moments) is dense, n floats per buffer.
//
// Thread safety: a TensorOptimizer is not thread-safe (one caller at a time),
// but distinct instances share nothing and may step concurrently, also with
// one shared ThreadPool.
#ifndef STELLA_RUNTIME_OPTIM_OPTIMIZER_H_
#define STELLA_RUNTIME_OPTIM_OPTIMIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/optim/optimizer_options.h"
#include "runtime/optim/thread_pool.h"
#include "src/base/status.h"

namespace stella {
namespace optim {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

// "sgd", "adam", "adamw".
const char* OptimizerKindName(OptimizerKind kind);

// Checks every field; the error names the offending field and value, e.g.
// "optimizer.learningRate must be > 0, got -1".
Status ValidateOptimizerOptions(const OptimizerOptions& options);

// A copy of one tensor's optimizer state, for checkpoints.
struct OptimizerState {
  // Step calls so far (dense or sparse, including sparse calls that carried
  // no index).
  int64_t step = 0;
  // SGD with momentum: the momentum buffer; Adam/AdamW: exp_avg. n floats,
  // or empty for SGD without momentum.
  std::vector<float> first_moment;
  // Adam/AdamW: exp_avg_sq, n floats; empty for SGD.
  std::vector<float> second_moment;
};

// Tensors with at least this many elements (dense) or covered elements
// (sparse) are split between the threads of a ThreadPool, in chunks of
// kParallelGrain elements; smaller ones run on the caller, where waking
// workers would cost more than it saves.
inline constexpr size_t kParallelThreshold = 64 * 1024;
inline constexpr size_t kParallelGrain = 16 * 1024;

// Optimizer state for ONE parameter tensor of n floats.
//
// Step counting: the step counter belongs to the tensor and advances once per
// StepDense/StepSparse call, whatever the call touched. Adam's bias correction
// uses it (1 - beta^step), as torch does for a dense tensor stepped every
// iteration. For SGD, PyTorch creates the momentum buffer as a copy of the
// first update (buf = d at step 1, then buf = momentum * buf + d). We do the
// same on the tensor's first call; an element first touched by a later sparse
// call finds its buffer at 0 and gets momentum * 0 + d = d, the same value, so
// per-tensor and per-element "first step" semantics coincide.
class TensorOptimizer {
 public:
  // InvalidArgument if the options are invalid (see ValidateOptimizerOptions).
  static StatusOr<std::unique_ptr<TensorOptimizer>> Create(const OptimizerOptions& options, size_t n);

  // One step from a dense gradient: param and grad each hold size() floats
  // and must not overlap. A non-null pool with more than one thread splits
  // tensors of >= kParallelThreshold elements; the pool must not be one whose
  // ParallelFor is running the caller.
  void StepDense(float* param, const float* grad, ThreadPool* pool = nullptr);

  // One lazy step from a block-sparse gradient, in the compression library's
  // layout: block b covers elements [b * block_size, min((b + 1) * block_size,
  // n)); `indices` lists num_indices block numbers, strictly ascending; values
  // packs the gradient of every covered element, block after block (so only
  // the last block can be short). block_size 1 is plain element indices.
  // InvalidArgument (and nothing changes, the step counter included) if
  // block_size is 0, an index is out of range, or indices are not strictly
  // ascending. An empty index list is valid and only advances the step.
  Status StepSparse(float* param, const uint32_t* indices, size_t num_indices, uint32_t block_size, const float* values,
                    ThreadPool* pool = nullptr);

  // Changes the learning rate for later steps (schedules). InvalidArgument
  // unless lr > 0 and finite.
  Status SetLearningRate(double lr);

  size_t size() const { return n_; }
  OptimizerKind kind() const { return kind_; }
  const OptimizerOptions& options() const { return options_; }
  int64_t step() const { return step_; }
  // Views of the dense state buffers; see OptimizerState for their meaning.
  const std::vector<float>& first_moment() const { return first_moment_; }
  const std::vector<float>& second_moment() const { return second_moment_; }

  OptimizerState SaveState() const;
  // Replaces the state. InvalidArgument if step < 0 or a buffer's size is not
  // what this optimizer keeps (n or 0, as documented on OptimizerState); the
  // current state is then left unchanged.
  Status LoadState(OptimizerState state);

 private:
  TensorOptimizer(const OptimizerOptions& options, OptimizerKind kind, size_t n);

  // Runs the kernels over [0, n) (dense) or over the index list (sparse) with
  // the coefficients of step step_ + 1, then advances step_.
  void Run(bool sparse, float* param, const float* grad, const uint32_t* indices, size_t num_indices,
           uint32_t block_size, ThreadPool* pool);

  OptimizerOptions options_;
  OptimizerKind kind_;
  size_t n_;
  int64_t step_ = 0;
  std::vector<float> first_moment_;
  std::vector<float> second_moment_;
};

}  // namespace optim
}  // namespace stella

#endif  // STELLA_RUNTIME_OPTIM_OPTIMIZER_H_
