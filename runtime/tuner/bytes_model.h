// How many bytes one step's sparse gradient puts on the wire at a given
// density, so the tuner can pick the density that fits a link.
//
// The default formula mirrors the cache-line compressor and the wire format
// (runtime/compress/wire.h) closely enough to plan with: for a tensor of n
// elements at density d the compressor keeps k = clamp(llround(d*n), 1, n)
// elements, as ceil(k / block_size) blocks; the message holds one index per
// block, the values of the blocks (clipped to n), and a fixed header:
//   bytes = per_tensor_overhead + blocks * index_bytes
//         + min(blocks * block_size, n) * value_bytes
// The runtime can plug in the wire format's exact size through
// `encoded_size` instead.
//
// Thread safety: plain values and pure functions; `encoded_size`, when set,
// must itself be safe to call from the thread that uses the model.
#ifndef STELLA_RUNTIME_TUNER_BYTES_MODEL_H_
#define STELLA_RUNTIME_TUNER_BYTES_MODEL_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "src/base/status.h"

namespace stella {
namespace tuner {

struct BytesModel {
  // Bytes per transmitted value: 4 for fp32, 2 for fp16/bf16. Default 4.
  uint32_t value_bytes = 4;
  // Bytes per transmitted block index: 2 with chunk-local u16 indices, 4 with
  // absolute u32 indices. Default 2.
  uint32_t index_bytes = 2;
  // Elements per selected block, one index each. Default 16 (one 64-byte
  // cache line of floats, the cache-line compressor's block).
  uint32_t block_size = 16;
  // Fixed bytes per tensor per step (wire header, chunk headers). Default 24,
  // the wire header (compress::kWireHeaderSize).
  uint32_t per_tensor_overhead = 24;
  // If set, replaces the formula: the encoded bytes of one tensor of
  // `num_elements` elements at `density` in (0, 1]. It must be
  // non-decreasing in density (the density search bisects on it).
  // Default unset.
  std::function<uint64_t(uint64_t num_elements, double density)> encoded_size;
};

// InvalidArgument naming the field ("bytes_model.block_size: ...") unless
// value_bytes, index_bytes and block_size are >= 1.
Status ValidateBytesModel(const BytesModel& model);

// Bytes of one tensor of `num_elements` at `density` (clamped to (0, 1]):
// the formula above, or model.encoded_size. 0 for an empty tensor.
uint64_t TensorBytes(const BytesModel& model, uint64_t num_elements, double density);

// Sum of TensorBytes over the model's tensors: one gateway's payload per step.
uint64_t PayloadBytes(const BytesModel& model, const std::vector<uint64_t>& tensor_sizes, double density);

}  // namespace tuner
}  // namespace stella

#endif  // STELLA_RUNTIME_TUNER_BYTES_MODEL_H_
