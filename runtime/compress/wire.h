// Wire format of one sparse gradient (a SparseGradient) between gateways.
//
// Layout, all integers little-endian, no padding:
//   header (24 bytes)
//     u32 magic       0x47535453 ("STSG")
//     u8  version     1
//     u8  precision   0 fp32, 1 fp16, 2 bf16          (ValuePrecision)
//     u8  index enc.  0 absolute u32, 1 chunked u16
//     u8  reserved    0
//     u32 block_size  >= 1
//     u64 num_elements
//     u32 num_indices (blocks listed)
//   indices
//     absolute: num_indices x u32 block index
//     chunked:  the block-index space is cut into chunks of 65,536 blocks;
//               for each chunk holding an index, ascending: u32 chunk id,
//               u32 count (1..65,536), then count x u16 UNSIGNED chunk-local
//               offsets (index & 0xFFFF), ascending. Counts sum to
//               num_indices.
//   values
//     CoveredElements() values: fp32 as IEEE-754 binary32 bits, fp16 as
//     binary16 bits, bf16 as the upper 16 bits of binary32.
// The encoder picks the smaller index encoding (chunked on a tie).
//
// Value conversion is done in software with round-to-nearest-even:
//   fp16: relative error <= 2^-11 for |x| in [2^-14, 65504]; absolute error
//     <= 2^-25 below (subnormals are kept, not flushed). Finite values beyond
//     the fp16 range SATURATE to +-65504 rather than become Inf: one
//     oversized residual must not turn a model's weights into Inf/NaN.
//   bf16: relative error <= 2^-8 (same exponent range as fp32); finite values
//     that would round past the largest bf16 saturate likewise.
//   Inf stays Inf and NaN stays a (quiet) NaN in both.
// To feed rounding error back into ErrorFeedback, round the values first
// with RoundValues() and pass the rounded SparseGradient to Update().
//
// Decoding validates every field against the buffer and DecodeLimits before
// allocating, and returns DataLoss (truncated, trailing bytes, bad magic or
// version, unknown enum, non-ascending or out-of-range indices, empty
// chunks) or InvalidArgument (a well-formed message that exceeds the
// limits). It never reads out of bounds on hostile input.
//
// Thread safety: pure functions.
#ifndef STELLA_RUNTIME_COMPRESS_WIRE_H_
#define STELLA_RUNTIME_COMPRESS_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/compress/compressor.h"
#include "src/base/status.h"

namespace stella {
namespace compress {

enum class ValuePrecision : uint8_t { kFp32 = 0, kFp16 = 1, kBf16 = 2 };

const char* ValuePrecisionName(ValuePrecision precision);

inline constexpr uint32_t kWireMagic = 0x47535453;  // "STSG" in byte order
inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kWireHeaderSize = 24;
inline constexpr uint32_t kWireChunkBlocks = 65536;

// Software conversions (round-to-nearest-even, saturating, see above).
uint16_t FloatToHalfBits(float value);
float HalfBitsToFloat(uint16_t bits);
uint16_t FloatToBf16Bits(float value);
float Bf16BitsToFloat(uint16_t bits);
// The float that `value` becomes after a trip through `precision`.
float RoundToPrecision(float value, ValuePrecision precision);
// Rounds sparse->values in place (no-op for kFp32).
void RoundValues(SparseGradient* sparse, ValuePrecision precision);

// Exact encoded size of `sparse` (assumed valid) in bytes.
size_t EncodedSize(const SparseGradient& sparse, ValuePrecision precision);

// Upper bound on the encoded size of any selection of `num_indices` blocks
// of a tensor, for planning bytes per step before compressing.
size_t MaxEncodedSize(uint64_t num_elements, uint32_t block_size, size_t num_indices, ValuePrecision precision);

// Replaces *out with the encoding of `sparse`. InvalidArgument if `sparse`
// breaks ValidateSparseGradient or lists more than 2^32 - 1 blocks.
Status EncodeSparse(const SparseGradient& sparse, ValuePrecision precision, std::vector<uint8_t>* out);

struct DecodeLimits {
  // Largest num_elements accepted. Default 2^32 - 1 (kMaxCompressElements).
  uint64_t max_num_elements = kMaxCompressElements;
  // Largest block_size accepted. Default 4096.
  uint32_t max_block_size = 4096;
  // Largest num_indices accepted. Default 2^32 - 1 (then bounded by the
  // buffer length anyway).
  uint32_t max_indices = 0xFFFFFFFFu;
  // If nonzero, num_elements must equal it (the receiver knows the tensor).
  // Default 0: any size within max_num_elements.
  uint64_t expected_num_elements = 0;
};

// Decodes and validates one encoding occupying exactly data[0, n).
StatusOr<SparseGradient> DecodeSparse(const uint8_t* data, size_t n, const DecodeLimits& limits);

}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_WIRE_H_
