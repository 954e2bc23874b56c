// ErrorFeedback: the per-tensor residual that makes sparse compression
// converge. What a step does not send is kept and added to the next step's
// gradient, so every gradient contribution is eventually sent.
//
// Ordering contract, once per step per tensor:
//   1. Accumulate(grad, acc, n)   acc = grad + residual   (or DGC, below)
//   2. compressor->Compress(acc, n, density, &sent)
//      (optionally round sent.values to the wire precision, see wire.h)
//   3. Update(sent)               residual = acc - sent
// The calls must alternate Accumulate, Update, Accumulate, ...; a violation
// is a broken invariant of the caller and aborts (the prototype let one
// step's residual write race with the next step's read). Pass the values
// exactly as they go on the wire to Update: rounding error is then fed back
// too.
//
// With momentum correction (Deep Gradient Compression, Lin et al. 2018) the
// instance keeps a velocity u and an accumulation v:
//   Accumulate: u = m * u + grad; v = v + u; acc = v
//   Update:     at each sent element, v -= sent value (0 for exact values)
//               and u = 0
// so momentum is applied locally before selection; the receiver then runs
// plain SGD on what arrives.
//
// Thread safety: not thread-safe; one instance per tensor, driven by one
// thread at a time (the pipeline orders the calls).
#ifndef STELLA_RUNTIME_COMPRESS_ERROR_FEEDBACK_H_
#define STELLA_RUNTIME_COMPRESS_ERROR_FEEDBACK_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/compress/compressor.h"
#include "src/base/status.h"

namespace stella {
namespace compress {

struct ErrorFeedbackOptions {
  // Elements of the tensor. Default 0 (an empty tensor is allowed).
  size_t num_elements = 0;
  // DGC momentum-correction coefficient m in [0, 1). Default 0: plain error
  // feedback, no velocity buffer.
  double momentum = 0.0;
};

class ErrorFeedback {
 public:
  static StatusOr<std::unique_ptr<ErrorFeedback>> Create(const ErrorFeedbackOptions& options);

  ErrorFeedback(const ErrorFeedback&) = delete;
  ErrorFeedback& operator=(const ErrorFeedback&) = delete;

  // out[i] = grad[i] + residual[i] (or the DGC rule above). `out` may equal
  // `grad` (in place) but must not otherwise overlap it. n must equal
  // num_elements; must follow construction, Reset or Update.
  void Accumulate(const float* grad, float* out, size_t n);

  // Subtracts what was sent from the accumulated value: an exactly sent
  // element's residual becomes 0. `sent` must describe this tensor (same
  // num_elements, valid structure) and follow Accumulate.
  void Update(const SparseGradient& sent);

  // Zeroes the residual (and velocity) and restarts the ordering contract.
  void Reset();

  // Restores a checkpointed state: `residual` (num_elements floats) and
  // `velocity` (num_elements floats with momentum correction, else empty),
  // as residual() and velocity() showed them between an Update and the next
  // Accumulate. Restarts the ordering contract. InvalidArgument naming the
  // buffer when a size does not fit; nothing changes then.
  Status LoadState(const std::vector<float>& residual, const std::vector<float>& velocity);

  size_t num_elements() const { return residual_.size(); }
  bool momentum_correction() const { return momentum_ != 0.0f; }
  // The accumulated-but-unsent values (v with momentum correction).
  const float* residual() const { return residual_.data(); }
  // The DGC velocity u; empty without momentum correction.
  const std::vector<float>& velocity() const { return velocity_; }

 private:
  ErrorFeedback(size_t n, float momentum);

  float momentum_;
  std::vector<float> residual_;  // plain: r; momentum correction: v
  std::vector<float> velocity_;  // momentum correction: u
  bool accumulated_ = false;     // Accumulate ran and Update has not yet
};

}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_ERROR_FEEDBACK_H_
