#include "runtime/compress/aggregate.h"

#include <algorithm>
#include <string>

namespace stella {
namespace compress {
namespace {

Status CheckTarget(const SparseGradient& sparse, const float* dense, size_t n) {
  if (sparse.num_elements != n) {
    return InvalidArgumentError("sparse gradient of " + std::to_string(sparse.num_elements) +
                                " elements does not match the dense tensor of " + std::to_string(n));
  }
  if (n > 0 && dense == nullptr) return InvalidArgumentError("dense buffer is null");
  return ValidateSparseGradient(sparse);
}

}  // namespace

Status AddSparseTo(const SparseGradient& sparse, float scale, float* dense, size_t n) {
  STELLA_RETURN_IF_ERROR(CheckTarget(sparse, dense, n));
  const float* v = sparse.values.data();
  if (sparse.block_size == 1) {
    for (uint32_t idx : sparse.indices) dense[idx] += scale * *v++;
    return Status::Ok();
  }
  const size_t bs = sparse.block_size;
  for (uint32_t b : sparse.indices) {
    const size_t start = static_cast<size_t>(b) * bs;
    const size_t len = std::min(bs, n - start);
    float* d = dense + start;
    for (size_t j = 0; j < len; ++j) d[j] += scale * v[j];  // contiguous: vectorizes
    v += len;
  }
  return Status::Ok();
}

Status DecompressInto(const SparseGradient& sparse, float* dense, size_t n) {
  STELLA_RETURN_IF_ERROR(CheckTarget(sparse, dense, n));
  std::fill(dense, dense + n, 0.0f);
  const float* v = sparse.values.data();
  const size_t bs = sparse.block_size;
  for (uint32_t b : sparse.indices) {
    const size_t start = static_cast<size_t>(b) * bs;
    const size_t len = std::min(bs, n - start);
    std::copy(v, v + len, dense + start);
    v += len;
  }
  return Status::Ok();
}

}  // namespace compress
}  // namespace stella
