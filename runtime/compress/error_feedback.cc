#include "runtime/compress/error_feedback.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace stella {
namespace compress {

StatusOr<std::unique_ptr<ErrorFeedback>> ErrorFeedback::Create(const ErrorFeedbackOptions& options) {
  if (!(options.momentum >= 0.0 && options.momentum < 1.0)) {
    return InvalidArgumentError("error feedback momentum must be in [0, 1), got " + std::to_string(options.momentum));
  }
  if (options.num_elements > kMaxCompressElements) {
    return InvalidArgumentError("error feedback tensor of " + std::to_string(options.num_elements) +
                                " elements exceeds the limit of " + std::to_string(kMaxCompressElements));
  }
  return std::unique_ptr<ErrorFeedback>(new ErrorFeedback(options.num_elements, static_cast<float>(options.momentum)));
}

ErrorFeedback::ErrorFeedback(size_t n, float momentum)
    : momentum_(momentum), residual_(n, 0.0f), velocity_(momentum != 0.0f ? n : 0, 0.0f) {}

void ErrorFeedback::Accumulate(const float* grad, float* out, size_t n) {
  STELLA_CHECK(!accumulated_);  // Update(sent) must follow each Accumulate
  STELLA_CHECK(n == residual_.size());
  STELLA_CHECK(n == 0 || (grad != nullptr && out != nullptr));
  float* r = residual_.data();
  if (momentum_ == 0.0f) {
    for (size_t i = 0; i < n; ++i) {
      r[i] += grad[i];
      out[i] = r[i];
    }
  } else {
    float* u = velocity_.data();
    const float m = momentum_;
    for (size_t i = 0; i < n; ++i) {
      u[i] = m * u[i] + grad[i];
      r[i] += u[i];
      out[i] = r[i];
    }
  }
  accumulated_ = true;
}

void ErrorFeedback::Update(const SparseGradient& sent) {
  STELLA_CHECK(accumulated_);  // Accumulate must precede each Update
  STELLA_CHECK(sent.num_elements == residual_.size());
  const Status valid = ValidateSparseGradient(sent);
  if (!valid.ok()) {
    std::fprintf(stderr, "ErrorFeedback::Update: %s\n", valid.ToString().c_str());
    STELLA_CHECK(valid.ok());
  }
  const size_t n = residual_.size();
  const size_t bs = sent.block_size;
  float* r = residual_.data();
  const float* v = sent.values.data();
  for (uint32_t b : sent.indices) {
    const size_t start = static_cast<size_t>(b) * bs;
    const size_t len = std::min(bs, n - start);
    for (size_t j = 0; j < len; ++j) r[start + j] -= v[j];
    if (momentum_ != 0.0f) std::fill(velocity_.begin() + start, velocity_.begin() + start + len, 0.0f);
    v += len;
  }
  accumulated_ = false;
}

Status ErrorFeedback::LoadState(const std::vector<float>& residual, const std::vector<float>& velocity) {
  if (residual.size() != residual_.size()) {
    return InvalidArgumentError("error feedback residual holds " + std::to_string(residual.size()) +
                                " floats, the tensor has " + std::to_string(residual_.size()));
  }
  if (velocity.size() != velocity_.size()) {
    return InvalidArgumentError("error feedback velocity holds " + std::to_string(velocity.size()) +
                                " floats, expected " + std::to_string(velocity_.size()) +
                                (momentum_correction() ? " (momentum correction on)" : " (momentum correction off)"));
  }
  residual_ = residual;
  velocity_ = velocity;
  accumulated_ = false;
  return Status::Ok();
}

void ErrorFeedback::Reset() {
  std::fill(residual_.begin(), residual_.end(), 0.0f);
  std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  accumulated_ = false;
}

}  // namespace compress
}  // namespace stella
