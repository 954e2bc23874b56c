#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/compress/compressor.h"

namespace stella {
namespace compress {

uint64_t NumBlocks(uint64_t num_elements, uint32_t block_size) {
  if (block_size == 0) return 0;
  return num_elements / block_size + (num_elements % block_size != 0 ? 1 : 0);
}

size_t CoveredElements(const SparseGradient& sparse) {
  if (sparse.block_size == 1) {
    // Fast path; an out-of-range index still covers nothing.
    size_t covered = 0;
    for (uint32_t idx : sparse.indices) covered += idx < sparse.num_elements ? 1 : 0;
    return covered;
  }
  const uint64_t bs = sparse.block_size;
  size_t covered = 0;
  for (uint32_t idx : sparse.indices) {
    const uint64_t start = static_cast<uint64_t>(idx) * bs;
    if (start < sparse.num_elements) covered += std::min(bs, sparse.num_elements - start);
  }
  return covered;
}

Status ValidateSparseGradient(const SparseGradient& sparse) {
  if (sparse.block_size == 0) return InvalidArgumentError("sparse gradient block_size is 0");
  const uint64_t num_blocks = NumBlocks(sparse.num_elements, sparse.block_size);
  for (size_t j = 0; j < sparse.indices.size(); ++j) {
    const uint32_t idx = sparse.indices[j];
    if (idx >= num_blocks) {
      return InvalidArgumentError("sparse gradient index " + std::to_string(j) + " is block " + std::to_string(idx) +
                                  ", but the tensor of " + std::to_string(sparse.num_elements) + " elements has " +
                                  std::to_string(num_blocks) + " blocks of " + std::to_string(sparse.block_size));
    }
    if (j > 0 && idx <= sparse.indices[j - 1]) {
      return InvalidArgumentError("sparse gradient indices must be strictly ascending: index " + std::to_string(j) +
                                  " is " + std::to_string(idx) + " after " + std::to_string(sparse.indices[j - 1]));
    }
  }
  const size_t covered = CoveredElements(sparse);
  if (sparse.values.size() != covered) {
    return InvalidArgumentError("sparse gradient has " + std::to_string(sparse.values.size()) + " values, but its " +
                                std::to_string(sparse.indices.size()) + " blocks cover " + std::to_string(covered) +
                                " elements");
  }
  return Status::Ok();
}

size_t SelectionSize(size_t n, double density) {
  if (n == 0) return 0;
  STELLA_CHECK(density > 0.0 && density <= 1.0);
  // llround semantics (half away from zero), computed in double so that no
  // size_t can overflow the conversion.
  const double k = std::round(density * static_cast<double>(n));
  if (k < 1.0) return 1;
  if (k >= static_cast<double>(n)) return n;
  return static_cast<size_t>(k);
}

}  // namespace compress
}  // namespace stella
