#include "runtime/tuner/bytes_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace stella {
namespace tuner {

Status ValidateBytesModel(const BytesModel& model) {
  if (model.value_bytes < 1) {
    return InvalidArgumentError("bytes_model.value_bytes: must be >= 1, got 0");
  }
  if (model.index_bytes < 1) {
    return InvalidArgumentError("bytes_model.index_bytes: must be >= 1, got 0");
  }
  if (model.block_size < 1) {
    return InvalidArgumentError("bytes_model.block_size: must be >= 1, got 0");
  }
  return Status::Ok();
}

uint64_t TensorBytes(const BytesModel& model, uint64_t num_elements, double density) {
  if (num_elements == 0) return 0;
  // Clamped into (0, 1]: even the smallest density keeps one element.
  density = std::clamp(density, std::numeric_limits<double>::min(), 1.0);
  if (model.encoded_size) return model.encoded_size(num_elements, density);
  const double n = static_cast<double>(num_elements);
  const uint64_t k =
      static_cast<uint64_t>(std::clamp(std::llround(density * n), 1LL, static_cast<long long>(num_elements)));
  const uint64_t bs = model.block_size;
  const uint64_t blocks = (k + bs - 1) / bs;
  const uint64_t values = std::min(blocks * bs, num_elements);
  return model.per_tensor_overhead + blocks * model.index_bytes + values * model.value_bytes;
}

uint64_t PayloadBytes(const BytesModel& model, const std::vector<uint64_t>& tensor_sizes, double density) {
  uint64_t total = 0;
  for (uint64_t n : tensor_sizes) total += TensorBytes(model, n, density);
  return total;
}

}  // namespace tuner
}  // namespace stella
