#include "runtime/compress/wire.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace {

using internal::BitsToFloat;
using internal::FloatBits;

enum class IndexEncoding : uint8_t { kAbsolute32 = 0, kChunked16 = 1 };

size_t ValueBytes(ValuePrecision precision) { return precision == ValuePrecision::kFp32 ? 4 : 2; }

size_t CountChunks(const std::vector<uint32_t>& indices) {
  size_t chunks = 0;
  uint32_t last = 0;
  for (size_t j = 0; j < indices.size(); ++j) {
    const uint32_t chunk = indices[j] / kWireChunkBlocks;
    if (j == 0 || chunk != last) ++chunks;
    last = chunk;
  }
  return chunks;
}

// Explicit little-endian stores/loads: independent of the host byte order.
inline void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (static_cast<uint16_t>(p[1]) << 8)); }
inline uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
inline uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

Status Truncated(const char* what, size_t need, size_t have) {
  return DataLossError(std::string("sparse gradient message is truncated: ") + what + " needs " + std::to_string(need) +
                       " more bytes, " + std::to_string(have) + " left");
}

}  // namespace

const char* ValuePrecisionName(ValuePrecision precision) {
  switch (precision) {
    case ValuePrecision::kFp32: return "fp32";
    case ValuePrecision::kFp16: return "fp16";
    case ValuePrecision::kBf16: return "bf16";
  }
  return "unknown";
}

uint16_t FloatToHalfBits(float value) {
  const uint32_t x = FloatBits(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((a >> 13) & 0x3FFu);  // NaN
  if (a == 0x7F800000u) return sign | 0x7C00u;                                             // Inf
  if (a < 0x38800000u) {
    // Below the smallest normal half (2^-14): a subnormal half m * 2^-24.
    // |value| = mant * 2^(e - 150), so m = mant >> (126 - e), rounded to even.
    if (a <= 0x33000000u) return sign;  // <= 2^-25 rounds (ties to even) to 0
    const uint32_t e = a >> 23;
    const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // in [14, 24]
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the min normal
    return sign | static_cast<uint16_t>(h);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits.
  uint32_t h = (a - 0x38000000u) >> 13;
  const uint32_t rem = a & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  if (h >= 0x7C00u) h = 0x7BFFu;  // finite overflow saturates to 65504
  return sign | static_cast<uint16_t>(h);
}

float HalfBitsToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1Fu;
  const uint32_t mant = bits & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exp == 31) return BitsToFloat(sign | 0x7F800000u | (mant << 13));  // Inf / NaN
  return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t FloatToBf16Bits(float value) {
  const uint32_t x = FloatBits(value);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  if (a == 0x7F800000u) return static_cast<uint16_t>(x >> 16);             // Inf
  const uint32_t rounded = x + 0x7FFFu + ((x >> 16) & 1u);                 // no wrap: x <= 0xFF7FFFFF
  uint16_t h = static_cast<uint16_t>(rounded >> 16);
  if ((h & 0x7FFFu) == 0x7F80u) h = static_cast<uint16_t>((h & 0x8000u) | 0x7F7Fu);  // saturate
  return h;
}

float Bf16BitsToFloat(uint16_t bits) { return BitsToFloat(static_cast<uint32_t>(bits) << 16); }

float RoundToPrecision(float value, ValuePrecision precision) {
  switch (precision) {
    case ValuePrecision::kFp32: return value;
    case ValuePrecision::kFp16: return HalfBitsToFloat(FloatToHalfBits(value));
    case ValuePrecision::kBf16: return Bf16BitsToFloat(FloatToBf16Bits(value));
  }
  return value;
}

void RoundValues(SparseGradient* sparse, ValuePrecision precision) {
  if (precision == ValuePrecision::kFp32) return;
  for (float& v : sparse->values) v = RoundToPrecision(v, precision);
}

size_t EncodedSize(const SparseGradient& sparse, ValuePrecision precision) {
  const size_t num = sparse.indices.size();
  const size_t chunked = 8 * CountChunks(sparse.indices) + 2 * num;
  return kWireHeaderSize + std::min(chunked, 4 * num) + sparse.values.size() * ValueBytes(precision);
}

size_t MaxEncodedSize(uint64_t num_elements, uint32_t block_size, size_t num_indices, ValuePrecision precision) {
  const uint64_t num_blocks = NumBlocks(num_elements, block_size);
  const uint64_t m = std::min<uint64_t>(num_indices, num_blocks);
  const uint64_t max_chunks = std::min<uint64_t>(m, NumBlocks(num_blocks, kWireChunkBlocks));
  const uint64_t index_bytes = std::min(8 * max_chunks + 2 * m, 4 * m);
  const uint64_t values = std::min<uint64_t>(m * block_size, num_elements);
  return static_cast<size_t>(kWireHeaderSize + index_bytes + values * ValueBytes(precision));
}

Status EncodeSparse(const SparseGradient& sparse, ValuePrecision precision, std::vector<uint8_t>* out) {
  if (out == nullptr) return InvalidArgumentError("EncodeSparse output buffer is null");
  if (static_cast<uint8_t>(precision) > static_cast<uint8_t>(ValuePrecision::kBf16)) {
    return InvalidArgumentError("unknown value precision " + std::to_string(static_cast<int>(precision)));
  }
  STELLA_RETURN_IF_ERROR(ValidateSparseGradient(sparse));
  const size_t num = sparse.indices.size();
  if (num > 0xFFFFFFFFull) {
    return InvalidArgumentError("sparse gradient lists " + std::to_string(num) +
                                " blocks; the wire format allows 2^32 - 1");
  }
  const size_t chunks = CountChunks(sparse.indices);
  const IndexEncoding encoding =
      8 * chunks + 2 * num <= 4 * num ? IndexEncoding::kChunked16 : IndexEncoding::kAbsolute32;
  out->resize(EncodedSize(sparse, precision));
  uint8_t* p = out->data();
  PutU32(p, kWireMagic);
  p[4] = kWireVersion;
  p[5] = static_cast<uint8_t>(precision);
  p[6] = static_cast<uint8_t>(encoding);
  p[7] = 0;
  PutU32(p + 8, sparse.block_size);
  PutU64(p + 12, sparse.num_elements);
  PutU32(p + 20, static_cast<uint32_t>(num));
  p += kWireHeaderSize;

  if (encoding == IndexEncoding::kAbsolute32) {
    for (uint32_t idx : sparse.indices) {
      PutU32(p, idx);
      p += 4;
    }
  } else {
    size_t j = 0;
    while (j < num) {
      const uint32_t chunk = sparse.indices[j] / kWireChunkBlocks;
      size_t end = j;
      while (end < num && sparse.indices[end] / kWireChunkBlocks == chunk) ++end;
      PutU32(p, chunk);
      PutU32(p + 4, static_cast<uint32_t>(end - j));
      p += 8;
      for (; j < end; ++j) {
        PutU16(p, static_cast<uint16_t>(sparse.indices[j] % kWireChunkBlocks));  // unsigned
        p += 2;
      }
    }
  }

  switch (precision) {
    case ValuePrecision::kFp32:
      for (float v : sparse.values) {
        PutU32(p, FloatBits(v));
        p += 4;
      }
      break;
    case ValuePrecision::kFp16:
      for (float v : sparse.values) {
        PutU16(p, FloatToHalfBits(v));
        p += 2;
      }
      break;
    case ValuePrecision::kBf16:
      for (float v : sparse.values) {
        PutU16(p, FloatToBf16Bits(v));
        p += 2;
      }
      break;
  }
  STELLA_CHECK(p == out->data() + out->size());
  return Status::Ok();
}

StatusOr<SparseGradient> DecodeSparse(const uint8_t* data, size_t n, const DecodeLimits& limits) {
  if (data == nullptr && n > 0) return InvalidArgumentError("DecodeSparse input is null");
  if (n < kWireHeaderSize) return Truncated("the header", kWireHeaderSize, n);
  const uint32_t magic = GetU32(data);
  if (magic != kWireMagic) {
    return DataLossError("sparse gradient message has bad magic 0x" + [&] {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%08x", magic);
      return std::string(buf);
    }() + " (expected 0x47535453)");
  }
  if (data[4] != kWireVersion) {
    return DataLossError("sparse gradient message has unsupported version " + std::to_string(data[4]) + " (expected " +
                         std::to_string(kWireVersion) + ")");
  }
  if (data[5] > static_cast<uint8_t>(ValuePrecision::kBf16)) {
    return DataLossError("sparse gradient message has unknown value precision " + std::to_string(data[5]) +
                         " (expected 0 fp32, 1 fp16 or 2 bf16)");
  }
  const auto precision = static_cast<ValuePrecision>(data[5]);
  if (data[6] > static_cast<uint8_t>(IndexEncoding::kChunked16)) {
    return DataLossError("sparse gradient message has unknown index encoding " + std::to_string(data[6]) +
                         " (expected 0 absolute or 1 chunked)");
  }
  const auto encoding = static_cast<IndexEncoding>(data[6]);
  if (data[7] != 0) {
    return DataLossError("sparse gradient message has nonzero reserved byte " + std::to_string(data[7]));
  }
  SparseGradient sg;
  sg.block_size = GetU32(data + 8);
  sg.num_elements = GetU64(data + 12);
  const uint32_t num = GetU32(data + 20);
  if (sg.block_size == 0) return DataLossError("sparse gradient message has block_size 0");
  if (sg.block_size > limits.max_block_size) {
    return InvalidArgumentError("sparse gradient block_size " + std::to_string(sg.block_size) + " exceeds the limit " +
                                std::to_string(limits.max_block_size));
  }
  if (sg.num_elements > limits.max_num_elements) {
    return InvalidArgumentError("sparse gradient of " + std::to_string(sg.num_elements) +
                                " elements exceeds the limit " + std::to_string(limits.max_num_elements));
  }
  if (limits.expected_num_elements != 0 && sg.num_elements != limits.expected_num_elements) {
    return InvalidArgumentError("sparse gradient describes " + std::to_string(sg.num_elements) +
                                " elements, expected " + std::to_string(limits.expected_num_elements));
  }
  if (num > limits.max_indices) {
    return InvalidArgumentError("sparse gradient lists " + std::to_string(num) + " blocks, more than the limit " +
                                std::to_string(limits.max_indices));
  }
  const uint64_t num_blocks = NumBlocks(sg.num_elements, sg.block_size);
  if (num > num_blocks) {
    return DataLossError("sparse gradient lists " + std::to_string(num) + " blocks, but the tensor of " +
                         std::to_string(sg.num_elements) + " elements has only " + std::to_string(num_blocks));
  }
  const size_t value_bytes = ValueBytes(precision);
  const uint8_t* p = data + kWireHeaderSize;
  const uint8_t* const end = data + n;
  auto left = [&] { return static_cast<size_t>(end - p); };
  // Every listed block costs at least 2 index bytes and one value: check
  // that against the buffer before allocating anything sized by `num`.
  const uint64_t min_bytes = static_cast<uint64_t>(num) * (2 + value_bytes);
  if (min_bytes > left()) return Truncated("the listed blocks", min_bytes, left());
  sg.indices.resize(num);

  uint64_t covered = 0;
  int64_t prev = -1;
  auto accept = [&](uint64_t idx, size_t pos) -> Status {
    if (idx >= num_blocks) {
      return DataLossError("sparse gradient index " + std::to_string(pos) + " is block " + std::to_string(idx) +
                           ", past the last block " + std::to_string(num_blocks - 1));
    }
    if (static_cast<int64_t>(idx) <= prev) {
      return DataLossError("sparse gradient indices are not strictly ascending: index " + std::to_string(pos) + " is " +
                           std::to_string(idx) + " after " + std::to_string(prev));
    }
    prev = static_cast<int64_t>(idx);
    sg.indices[pos] = static_cast<uint32_t>(idx);
    covered += std::min<uint64_t>(sg.block_size, sg.num_elements - idx * sg.block_size);
    return Status::Ok();
  };

  if (encoding == IndexEncoding::kAbsolute32) {
    const uint64_t need = 4ull * num;
    if (need > left()) return Truncated("the absolute indices", need, left());
    for (uint32_t j = 0; j < num; ++j) {
      STELLA_RETURN_IF_ERROR(accept(GetU32(p), j));
      p += 4;
    }
  } else {
    const uint64_t num_chunks = NumBlocks(num_blocks, kWireChunkBlocks);
    uint32_t done = 0;
    int64_t prev_chunk = -1;
    while (done < num) {
      if (left() < 8) return Truncated("a chunk header", 8, left());
      const uint32_t chunk = GetU32(p);
      const uint32_t count = GetU32(p + 4);
      p += 8;
      if (static_cast<int64_t>(chunk) <= prev_chunk || chunk >= num_chunks) {
        return DataLossError("sparse gradient chunk id " + std::to_string(chunk) +
                             " is out of order or past the last chunk " + std::to_string(num_chunks - 1));
      }
      prev_chunk = chunk;
      if (count == 0 || count > kWireChunkBlocks || count > num - done) {
        return DataLossError("sparse gradient chunk " + std::to_string(chunk) + " has count " + std::to_string(count) +
                             "; expected 1.." + std::to_string(std::min<uint32_t>(kWireChunkBlocks, num - done)));
      }
      if (2ull * count > left()) return Truncated("chunk offsets", 2ull * count, left());
      const uint64_t base = static_cast<uint64_t>(chunk) * kWireChunkBlocks;
      for (uint32_t j = 0; j < count; ++j) {
        STELLA_RETURN_IF_ERROR(accept(base + GetU16(p), done + j));
        p += 2;
      }
      done += count;
    }
  }

  const uint64_t need = covered * value_bytes;
  if (need > left()) return Truncated("the values", need, left());
  if (need < left()) {
    return DataLossError("sparse gradient message has " + std::to_string(left() - need) + " trailing bytes after its " +
                         std::to_string(covered) + " values");
  }
  sg.values.resize(static_cast<size_t>(covered));
  switch (precision) {
    case ValuePrecision::kFp32:
      for (float& v : sg.values) {
        v = BitsToFloat(GetU32(p));
        p += 4;
      }
      break;
    case ValuePrecision::kFp16:
      for (float& v : sg.values) {
        v = HalfBitsToFloat(GetU16(p));
        p += 2;
      }
      break;
    case ValuePrecision::kBf16:
      for (float& v : sg.values) {
        v = Bf16BitsToFloat(GetU16(p));
        p += 2;
      }
      break;
  }
  return sg;
}

}  // namespace compress
}  // namespace stella
