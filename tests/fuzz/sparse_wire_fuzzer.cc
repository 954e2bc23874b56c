// Fuzzes the sparse gradient wire decoder (runtime/compress/wire.h).
//
// Invariants (abort on violation) for every input DecodeSparse accepts:
//  - the result passes ValidateSparseGradient and respects DecodeLimits;
//  - every value is representable in the message's precision (rounding it
//    again changes nothing);
//  - EncodeSparse succeeds, produces EncodedSize bytes, no more than the input
//    (the encoder picks the smaller index encoding) and no more than
//    MaxEncodedSize, with the same header fields;
//  - the re-encoding decodes to an equal gradient (NaN payloads aside), and
//    is the input byte for byte when it chose the same index encoding and no
//    value is NaN (fp16/bf16 quiet a signalling NaN, by design).
// Rejections must be DataLoss or InvalidArgument.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/compress/wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::compress {
namespace {

uint32_t Bits(float v) {
  uint32_t b = 0;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

// Bitwise equal, or both NaN.
bool SameValue(float a, float b) { return (std::isnan(a) && std::isnan(b)) || Bits(a) == Bits(b); }

void CheckEquivalent(const SparseGradient& a, const SparseGradient& b) {
  FUZZ_CHECK(a.num_elements == b.num_elements && a.block_size == b.block_size, "shape changed in the round trip");
  FUZZ_CHECK(a.indices == b.indices, "indices changed in the round trip");
  FUZZ_CHECK(a.values.size() == b.values.size(), "value count changed in the round trip");
  for (size_t i = 0; i < a.values.size(); ++i) {
    FUZZ_CHECK(SameValue(a.values[i], b.values[i]), "value " + std::to_string(i) + " changed in the round trip");
  }
}

void Check(const uint8_t* data, size_t size, const DecodeLimits& limits) {
  StatusOr<SparseGradient> decoded = DecodeSparse(data, size, limits);
  if (!decoded.ok()) {
    const StatusCode c = decoded.status().code();
    FUZZ_CHECK(c == StatusCode::kDataLoss || c == StatusCode::kInvalidArgument,
               "unexpected DecodeSparse error " + decoded.status().ToString());
    return;
  }
  const SparseGradient& sg = *decoded;
  Status valid = ValidateSparseGradient(sg);
  FUZZ_CHECK(valid.ok(), "decoded gradient is invalid: " + valid.ToString());
  FUZZ_CHECK(sg.values.size() == CoveredElements(sg), "values do not match the covered blocks");
  FUZZ_CHECK(sg.num_elements <= limits.max_num_elements && sg.block_size <= limits.max_block_size &&
                 sg.indices.size() <= limits.max_indices,
             "decoded gradient exceeds DecodeLimits");
  FUZZ_CHECK(size >= kWireHeaderSize, "accepted a message shorter than the header");

  const auto precision = static_cast<ValuePrecision>(data[5]);
  bool any_nan = false;
  for (size_t i = 0; i < sg.values.size(); ++i) {
    const float v = sg.values[i];
    any_nan = any_nan || std::isnan(v);
    FUZZ_CHECK(SameValue(RoundToPrecision(v, precision), v),
               "decoded value " + std::to_string(i) + " is not representable in " + ValuePrecisionName(precision));
  }

  std::vector<uint8_t> out;
  Status encoded = EncodeSparse(sg, precision, &out);
  FUZZ_CHECK(encoded.ok(), "EncodeSparse of a decoded gradient: " + encoded.ToString());
  FUZZ_CHECK(out.size() == EncodedSize(sg, precision), "EncodedSize says " +
                                                           std::to_string(EncodedSize(sg, precision)) +
                                                           ", encoder wrote " + std::to_string(out.size()));
  FUZZ_CHECK(out.size() <= size, "re-encoding (" + std::to_string(out.size()) + " bytes) is larger than the input (" +
                                     std::to_string(size) + ")");
  const size_t bound = MaxEncodedSize(sg.num_elements, sg.block_size, sg.indices.size(), precision);
  FUZZ_CHECK(out.size() <= bound,
             "encoding of " + std::to_string(out.size()) + " bytes exceeds MaxEncodedSize " + std::to_string(bound));
  // Same magic, version, precision, reserved byte and header fields; byte 6
  // (index encoding) may differ.
  FUZZ_CHECK(std::memcmp(out.data(), data, 6) == 0 && std::memcmp(out.data() + 7, data + 7, kWireHeaderSize - 7) == 0,
             "re-encoded header differs");
  if (out[6] == data[6] && !any_nan) {
    FUZZ_CHECK(out.size() == size && std::memcmp(out.data(), data, size) == 0,
               "EncodeSparse(DecodeSparse(x)) != x with the same index encoding");
  }

  StatusOr<SparseGradient> again = DecodeSparse(out.data(), out.size(), limits);
  FUZZ_CHECK(again.ok(), "decoding the re-encoding: " + again.status().ToString());
  CheckEquivalent(sg, *again);

  // The receiver that knows the tensor size accepts it too.
  DecodeLimits exact = limits;
  exact.expected_num_elements = sg.num_elements;
  if (sg.num_elements > 0) {
    StatusOr<SparseGradient> known = DecodeSparse(data, size, exact);
    FUZZ_CHECK(known.ok(), "rejected with the matching expected_num_elements: " + known.status().ToString());
  }
}

}  // namespace
}  // namespace stella::compress

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The defaults a gateway uses; they already bound every allocation by the
  // message length.
  stella::compress::Check(data, size, stella::compress::DecodeLimits{});
  return 0;
}
