// Internal kernels shared by the selectors: finiteness checks, the
// vectorized candidate scan, block scoring (SSE2 with a portable fallback,
// bit-identical) and exact selection on keys.
// Not part of the public API.
//
// Selection order everywhere is "larger magnitude first, then lower index".
// It is encoded in one 64-bit key, (abs_bits << 32) | ~index, which is
// totally ordered and distinct per index: for finite floats the IEEE bit
// pattern of |x| orders like the value (and -0 equals +0).
//
// Thread safety: pure functions over caller-owned buffers.
#ifndef STELLA_RUNTIME_COMPRESS_INTERNAL_KERNELS_H_
#define STELLA_RUNTIME_COMPRESS_INTERNAL_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/compress/compressor.h"
#include "src/base/status.h"

namespace stella {
namespace compress {
namespace internal {

inline uint32_t FloatBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}
inline float BitsToFloat(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}
inline uint32_t AbsBits(float f) { return FloatBits(f) & 0x7FFFFFFFu; }

inline uint64_t MakeKey(uint32_t abs_bits, uint32_t index) {
  return (static_cast<uint64_t>(abs_bits) << 32) | static_cast<uint32_t>(~index);
}
inline uint32_t KeyAbsBits(uint64_t key) { return static_cast<uint32_t>(key >> 32); }
inline uint32_t KeyIndex(uint64_t key) { return ~static_cast<uint32_t>(key); }

// Index of the first NaN or Inf in x[0, n), or n if all are finite.
size_t FindFirstNonFinite(const float* x, size_t n);

// InvalidArgument "gradient element <index> is NaN" (or +Inf / -Inf).
Status NonFiniteError(size_t index, float value);
// NonFiniteError for the first NaN/Inf of x[0, n); Ok if there is none.
Status CheckFinite(const float* x, size_t n);

// Selects every element of grad[0, n) (density 1, block size 1).
void SelectAll(const float* grad, size_t n, SparseGradient* out);

// The argument checks every Compress starts with; on success also resets
// *out to an empty selection of an n-element tensor in blocks of block_size.
Status BeginCompress(const float* grad, size_t n, double density, uint32_t block_size, SparseGradient* out);

// Writes MakeKey(AbsBits(x[i]), i) for every i in [0, n) with
// AbsBits(x[i]) >= tau_bits, ascending by i, to (*out)[0, count) and returns
// count. Grows *out as needed; its size is scratch capacity, not the count.
// NaN and Inf always qualify when tau_bits is finite (<= 0x7F800000).
// Carrying the magnitude in the key means later steps never go back to the
// (by then evicted) input for the candidates.
size_t CollectKeysAtLeast(const float* x, size_t n, uint32_t tau_bits, std::vector<uint64_t>* out);

// scores[b] = BlockL1Score of block b of 16, for all ceil(n / 16) blocks.
// If `candidates` is not null, also writes the keys MakeKey(score bits, b)
// of the blocks with score >= tau, ascending by b, to (*candidates)[0, count)
// (growing it as needed; its size is capacity) and returns count; else 0. *all_finite is false if any
// score is NaN or Inf (a NaN/Inf element, or a sum that overflowed).
size_t ComputeBlockScores(const float* x, size_t n, float* scores, float tau, std::vector<uint64_t>* candidates,
                          bool* all_finite);

// A threshold that about `fraction` of |x| reach, estimated from an evenly
// strided sample of at most 4096 elements (deterministic). 0 if fraction >= 1.
float EstimateThreshold(const float* x, size_t n, double fraction, std::vector<float>* scratch);

// Among the candidate keys keys[0, c), ascending by index, writes the
// indices of the k (1 <= k <= c) largest keys to *selected, ascending.
// `scratch` is reused storage. Returns the k-th largest key.
uint64_t SelectTopKeys(const uint64_t* keys, size_t c, size_t k, std::vector<uint64_t>* scratch,
                       std::vector<uint32_t>* selected);

// Exact selection over all of x[0, n) (1 <= k <= n): the k largest keys,
// ascending in *selected. Returns the k-th largest key.
uint64_t SelectTopAll(const float* x, size_t n, size_t k, std::vector<uint64_t>* keys, std::vector<uint32_t>* selected);

}  // namespace internal
}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_INTERNAL_KERNELS_H_
