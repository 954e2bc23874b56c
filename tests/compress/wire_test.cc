#include "runtime/compress/wire.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/compress/test_util.h"

namespace stella {
namespace compress {
namespace {

using testing::RandomTensor;

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t ToBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

constexpr ValuePrecision kAllPrecisions[] = {ValuePrecision::kFp32, ValuePrecision::kFp16, ValuePrecision::kBf16};

SparseGradient Select(const std::string& kind, const std::vector<float>& g, double density) {
  CompressorOptions o;
  o.kind = kind;
  auto c = std::move(CreateCompressor(o)).value();
  SparseGradient s;
  EXPECT_TRUE(c->Compress(g.data(), g.size(), density, &s).ok());
  return s;
}

std::vector<uint8_t> Encode(const SparseGradient& s, ValuePrecision p) {
  std::vector<uint8_t> buf;
  Status st = EncodeSparse(s, p, &buf);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return buf;
}

StatusOr<SparseGradient> Decode(const std::vector<uint8_t>& buf, const DecodeLimits& limits = DecodeLimits()) {
  return DecodeSparse(buf.data(), buf.size(), limits);
}

// ---- value conversions ----

TEST(HalfTest, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfBitsToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(f)))) << h;
      EXPECT_EQ((h & 0x7C00u), 0x7C00u);
      continue;
    }
    EXPECT_EQ(FloatToHalfBits(f), h) << std::hex << h;
  }
}

TEST(HalfTest, RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(FloatToHalfBits(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalfBits(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalfBits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(FloatToHalfBits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(FloatToHalfBits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalfBits(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7BFF);  // would round to Inf: saturates
  EXPECT_EQ(FloatToHalfBits(1e10f), 0x7BFF);
  EXPECT_EQ(FloatToHalfBits(-FLT_MAX), 0xFBFF);
  EXPECT_EQ(FloatToHalfBits(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(FloatToHalfBits(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(std::nanf("")))));
  // Subnormals: 2^-24 is the smallest; 2^-25 is a tie with 0 -> 0.
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -25) * 1.01f), 0x0001);
  EXPECT_EQ(FloatToHalfBits(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp tie -> even
  EXPECT_EQ(FloatToHalfBits(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)), 0x0400);  // carry
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1023.0f, -24)), 0x03FF);
  EXPECT_EQ(FloatToHalfBits(FromBits(1)), 0x0000);  // float subnormal
}

#if defined(__FLT16_MAX__)
TEST(HalfTest, AgreesWithTheCompilersFloat16) {
  std::mt19937 rng(1);
  for (int i = 0; i < 200000; ++i) {
    // Exponents around the half range, so normals, subnormals and overflow
    // are all exercised.
    const uint32_t bits = (rng() & 0x80000000u) | ((90u + rng() % 60u) << 23) | (rng() & 0x7FFFFFu);
    const float f = FromBits(bits);
    if (std::fabs(f) >= 65520.0f) continue;  // there we saturate, the compiler gives Inf
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(FloatToHalfBits(f), ref_bits) << std::hexfloat << f;
    ASSERT_EQ(HalfBitsToFloat(ref_bits), static_cast<float>(ref));
  }
}
#endif

TEST(Bf16Test, EveryBf16RoundTripsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16BitsToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(f))));
      continue;
    }
    EXPECT_EQ(FloatToBf16Bits(f), h) << h;
  }
}

TEST(Bf16Test, RoundsToTheNearestWithTiesToEven) {
  std::mt19937 rng(2);
  for (int i = 0; i < 200000; ++i) {
    const float f = FromBits(rng() & 0xFF7FFFFFu);  // finite, any sign
    const uint16_t h = FloatToBf16Bits(f);
    const uint32_t lo_bits = ToBits(f) & 0xFFFF0000u;
    const double lo = FromBits(lo_bits);
    const double hi = FromBits(lo_bits + 0x10000u);  // next bf16 away from zero
    const double got = Bf16BitsToFloat(h);
    const double dl = std::fabs(f - lo), dh = std::fabs(hi - f);
    if (std::isinf(hi)) {
      EXPECT_EQ(got, lo);  // saturates at the largest finite bf16
    } else if (dl < dh) {
      ASSERT_EQ(got, lo) << std::hexfloat << f;
    } else if (dh < dl) {
      ASSERT_EQ(got, hi) << std::hexfloat << f;
    } else {
      ASSERT_EQ(h & 1u, 0u) << std::hexfloat << f;
    }
  }
  EXPECT_EQ(FloatToBf16Bits(FLT_MAX), 0x7F7F);
  EXPECT_EQ(FloatToBf16Bits(-FLT_MAX), 0xFF7F);
  EXPECT_EQ(FloatToBf16Bits(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(std::nanf("")))));
}

TEST(PrecisionTest, DocumentedTolerances) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mag(-30.0f, 15.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::exp2(mag(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
    const float h = RoundToPrecision(x, ValuePrecision::kFp16);
    if (std::fabs(x) >= std::ldexp(1.0f, -14)) {
      ASSERT_LE(std::fabs(h - x), std::ldexp(std::fabs(x), -11)) << x;
    } else {
      ASSERT_LE(std::fabs(h - x), std::ldexp(1.0f, -25)) << x;
    }
    const float b = RoundToPrecision(x, ValuePrecision::kBf16);
    ASSERT_LE(std::fabs(b - x), std::ldexp(std::fabs(x), -8)) << x;
    ASSERT_EQ(RoundToPrecision(x, ValuePrecision::kFp32), x);
  }
}

// ---- round trips ----

TEST(WireTest, RoundTripsEveryCompressorAtEveryPrecision) {
  for (const char* kind : {"topk", "randomk", "threshold", "cacheline"}) {
    for (size_t n : {0, 1, 17, 1000, 65537, 300000}) {
      for (double density : {0.001, 0.01, 0.5}) {
        std::vector<float> g = RandomTensor(n, n + 7);
        const SparseGradient s = Select(kind, g, density);
        for (ValuePrecision p : kAllPrecisions) {
          const std::vector<uint8_t> buf = Encode(s, p);
          EXPECT_EQ(buf.size(), EncodedSize(s, p));
          EXPECT_LE(buf.size(), MaxEncodedSize(n, s.block_size, s.indices.size(), p));
          auto d = Decode(buf);
          ASSERT_TRUE(d.ok()) << d.status().ToString();
          EXPECT_EQ(d->num_elements, s.num_elements);
          EXPECT_EQ(d->block_size, s.block_size);
          EXPECT_EQ(d->indices, s.indices);
          ASSERT_EQ(d->values.size(), s.values.size());
          for (size_t j = 0; j < s.values.size(); ++j) {
            if (p == ValuePrecision::kFp32) {
              ASSERT_EQ(ToBits(d->values[j]), ToBits(s.values[j]));  // bit exact
            } else {
              ASSERT_EQ(d->values[j], RoundToPrecision(s.values[j], p));
            }
          }
        }
      }
    }
  }
}

TEST(WireTest, BoundaryIndicesSurviveBothEncodings) {
  // 16-bit offsets must be unsigned: the prototype corrupted >= 32,768.
  const std::vector<uint32_t> boundary = {0, 1, 32767, 32768, 32769, 65535, 65536};
  SparseGradient sparse_few;  // 7 indices in 2 chunks: absolute is smaller
  sparse_few.num_elements = 65537;
  sparse_few.indices = boundary;
  SparseGradient dense_many = sparse_few;  // many per chunk: chunked is smaller
  dense_many.indices.clear();
  for (uint32_t i = 32700; i < 32900; ++i) dense_many.indices.push_back(i);
  for (uint32_t i = 65500; i < 65537; ++i) dense_many.indices.push_back(i);
  dense_many.indices.insert(dense_many.indices.begin(), 0);
  for (SparseGradient* s : {&sparse_few, &dense_many}) {
    s->values.clear();
    for (uint32_t i : s->indices) s->values.push_back(static_cast<float>(i));
  }
  const std::vector<uint8_t> a = Encode(sparse_few, ValuePrecision::kFp32);
  const std::vector<uint8_t> b = Encode(dense_many, ValuePrecision::kFp32);
  EXPECT_EQ(a[6], 0);  // absolute u32
  EXPECT_EQ(b[6], 1);  // chunked u16
  for (const auto& [s, buf] : {std::make_pair(&sparse_few, &a), std::make_pair(&dense_many, &b)}) {
    auto d = Decode(*buf);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->indices, s->indices);
    EXPECT_EQ(d->values, s->values);  // value i sits at index i
  }
  // In the chunked buffer, chunk 0 holds 0 and 32700..32899; index 32768 is
  // offset 0x8000, stored as bytes 00 80.
  const size_t first_offsets = kWireHeaderSize + 8;
  const size_t at_32768 = first_offsets + 2 * (1 + (32768 - 32700));
  EXPECT_EQ(b[at_32768], 0x00);
  EXPECT_EQ(b[at_32768 + 1], 0x80);
  // Element-wise round trip of a 65,537-element tensor at full density.
  std::vector<float> g = RandomTensor(65537, 12);
  const SparseGradient all = Select("topk", g, 1.0);
  auto d = Decode(Encode(all, ValuePrecision::kFp32));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->indices, all.indices);
  EXPECT_EQ(d->values, g);
}

TEST(WireTest, EncodingChoiceAndSizes) {
  SparseGradient s;
  s.num_elements = 10'000'000;
  for (uint32_t i = 0; i < 100; ++i) s.indices.push_back(i * 90000);  // one per chunk
  s.values.assign(100, 1.0f);
  std::vector<uint8_t> buf = Encode(s, ValuePrecision::kFp16);
  EXPECT_EQ(buf[6], 0);
  EXPECT_EQ(buf.size(), kWireHeaderSize + 4 * 100 + 2 * 100);
  EXPECT_EQ(buf[5], 1);  // fp16
  // Little-endian header fields.
  EXPECT_EQ(buf[0], 'S');
  EXPECT_EQ(buf[1], 'T');
  EXPECT_EQ(buf[2], 'S');
  EXPECT_EQ(buf[3], 'G');
  EXPECT_EQ(buf[12], 0x80);  // 10,000,000 = 0x989680
  EXPECT_EQ(buf[13], 0x96);
  EXPECT_EQ(buf[14], 0x98);
  EXPECT_EQ(MaxEncodedSize(16, 16, 5, ValuePrecision::kFp32), kWireHeaderSize + 4 + 64);
  EXPECT_EQ(MaxEncodedSize(0, 1, 5, ValuePrecision::kFp32), kWireHeaderSize);
}

TEST(WireTest, EncodeRejectsInvalidInput) {
  SparseGradient s;
  s.num_elements = 10;
  s.indices = {3, 2};
  s.values = {1, 2};
  std::vector<uint8_t> buf;
  EXPECT_EQ(EncodeSparse(s, ValuePrecision::kFp32, &buf).code(), StatusCode::kInvalidArgument);
  s.indices = {2, 3};
  EXPECT_EQ(EncodeSparse(s, ValuePrecision::kFp32, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeSparse(s, static_cast<ValuePrecision>(7), &buf).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(EncodeSparse(s, ValuePrecision::kBf16, &buf).ok());
}

// ---- hostile input ----

void PutU32At(std::vector<uint8_t>* b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

void ExpectRejected(const std::vector<uint8_t>& buf, StatusCode code, const std::string& needle,
                    const DecodeLimits& limits = DecodeLimits()) {
  auto d = Decode(buf, limits);
  ASSERT_FALSE(d.ok()) << needle;
  EXPECT_EQ(d.status().code(), code) << d.status().ToString();
  EXPECT_NE(d.status().message().find(needle), std::string::npos) << d.status().ToString();
}

TEST(WireDecodeTest, EveryTruncationIsRejected) {
  std::vector<float> g = RandomTensor(70000, 5);
  for (const char* kind : {"topk", "cacheline"}) {
    const SparseGradient s = Select(kind, g, 0.01);
    for (ValuePrecision p : kAllPrecisions) {
      const std::vector<uint8_t> buf = Encode(s, p);
      for (size_t len = 0; len < buf.size(); ++len) {
        auto d = DecodeSparse(buf.data(), len, DecodeLimits());
        ASSERT_FALSE(d.ok()) << kind << " truncated to " << len << " of " << buf.size();
        ASSERT_EQ(d.status().code(), StatusCode::kDataLoss) << d.status().ToString();
      }
      std::vector<uint8_t> longer = buf;
      longer.push_back(0);
      ExpectRejected(longer, StatusCode::kDataLoss, "trailing bytes");
    }
  }
  // A short prefix names what was missing.
  ExpectRejected(std::vector<uint8_t>(10, 0), StatusCode::kDataLoss, "header");
}

TEST(WireDecodeTest, RejectsCorruptHeaders) {
  SparseGradient s;
  s.num_elements = 100;
  s.indices = {5, 50, 99};
  s.values = {1, 2, 3};
  const std::vector<uint8_t> good = Encode(s, ValuePrecision::kFp32);
  ASSERT_TRUE(Decode(good).ok());
  auto with = [&](size_t at, uint8_t v) {
    std::vector<uint8_t> b = good;
    b[at] = v;
    return b;
  };
  ExpectRejected(with(0, 'X'), StatusCode::kDataLoss, "bad magic");
  ExpectRejected(with(4, 2), StatusCode::kDataLoss, "version 2");
  ExpectRejected(with(5, 3), StatusCode::kDataLoss, "precision 3");
  ExpectRejected(with(6, 9), StatusCode::kDataLoss, "index encoding 9");
  ExpectRejected(with(7, 1), StatusCode::kDataLoss, "reserved");
  std::vector<uint8_t> b = good;
  PutU32At(&b, 8, 0);
  ExpectRejected(b, StatusCode::kDataLoss, "block_size 0");
  DecodeLimits limits;
  limits.expected_num_elements = 101;
  ExpectRejected(good, StatusCode::kInvalidArgument, "expected 101", limits);
  limits = DecodeLimits();
  limits.max_num_elements = 99;
  ExpectRejected(good, StatusCode::kInvalidArgument, "exceeds the limit", limits);
  limits = DecodeLimits();
  limits.max_indices = 2;
  ExpectRejected(good, StatusCode::kInvalidArgument, "limit 2", limits);
  b = good;
  PutU32At(&b, 8, 1u << 20);
  ExpectRejected(b, StatusCode::kInvalidArgument, "block_size 1048576", DecodeLimits());
}

TEST(WireDecodeTest, RejectsBadIndicesInBothEncodings) {
  // Absolute: 3 indices at header + 0, 4, 8.
  SparseGradient s;
  s.num_elements = 100;
  s.indices = {5, 50, 99};
  s.values = {1, 2, 3};
  std::vector<uint8_t> good = Encode(s, ValuePrecision::kFp32);
  ASSERT_EQ(good[6], 0);
  std::vector<uint8_t> b = good;
  PutU32At(&b, kWireHeaderSize + 4, 5);  // 5, 5, 99
  ExpectRejected(b, StatusCode::kDataLoss, "not strictly ascending");
  b = good;
  PutU32At(&b, kWireHeaderSize + 8, 100);  // past the end
  ExpectRejected(b, StatusCode::kDataLoss, "block 100");
  b = good;
  PutU32At(&b, 20, 101);  // more indices than blocks
  ExpectRejected(b, StatusCode::kDataLoss, "only 100");

  // Chunked: one chunk of 40 in a tensor of 200,000 elements.
  SparseGradient c;
  c.num_elements = 200000;
  for (uint32_t i = 0; i < 40; ++i) c.indices.push_back(70000 + i * 3);
  c.values.assign(40, 1.0f);
  good = Encode(c, ValuePrecision::kFp16);
  ASSERT_EQ(good[6], 1);
  const size_t chunk_at = kWireHeaderSize;
  const size_t offsets_at = chunk_at + 8;
  b = good;
  PutU32At(&b, chunk_at + 4, 0);
  ExpectRejected(b, StatusCode::kDataLoss, "count 0");
  b = good;
  PutU32At(&b, chunk_at + 4, 70000);
  ExpectRejected(b, StatusCode::kDataLoss, "count 70000");
  b = good;
  PutU32At(&b, chunk_at, 4);  // chunk 4 starts at block 262,144 > 200,000
  ExpectRejected(b, StatusCode::kDataLoss, "past the last chunk");
  b = good;
  b[offsets_at + 2] = b[offsets_at];  // second offset == first
  b[offsets_at + 3] = b[offsets_at + 1];
  ExpectRejected(b, StatusCode::kDataLoss, "not strictly ascending");
  // Two chunks out of order.
  SparseGradient two;
  two.num_elements = 200000;
  for (uint32_t i = 0; i < 20; ++i) two.indices.push_back(i);
  for (uint32_t i = 0; i < 20; ++i) two.indices.push_back(65536 + i);
  two.values.assign(40, 1.0f);
  good = Encode(two, ValuePrecision::kFp32);
  ASSERT_EQ(good[6], 1);
  b = good;
  PutU32At(&b, kWireHeaderSize + 8 + 40, 0);  // second chunk id 1 -> 0
  ExpectRejected(b, StatusCode::kDataLoss, "out of order");
  // The last chunk may not reach past the tensor either.
  SparseGradient tail;
  tail.num_elements = 65540;
  for (uint32_t i = 65530; i < 65540; ++i) tail.indices.push_back(i);
  tail.values.assign(10, 1.0f);
  good = Encode(tail, ValuePrecision::kFp32);
  ASSERT_EQ(good[6], 1);
  b = good;
  // Chunk 0 holds 65530..65535 (6 offsets), chunk 1 holds 65536..65539; set
  // the high byte of chunk 1's last offset: 3 + 0x400 -> block 66563.
  const size_t last_offset = kWireHeaderSize + 8 + 2 * 6 + 8 + 2 * 3;
  ASSERT_EQ(b[last_offset], 3);
  b[last_offset + 1] = 0x04;
  ExpectRejected(b, StatusCode::kDataLoss, "past the last block");
}

TEST(WireDecodeTest, HugeCountsAreRejectedBeforeAllocating) {
  SparseGradient s;
  s.num_elements = 100;
  s.indices = {1};
  s.values = {1};
  std::vector<uint8_t> b = Encode(s, ValuePrecision::kFp32);
  PutU32At(&b, 20, 0xFFFFFFFFu);  // 4 billion indices in a 32-byte message
  b[12] = 0xFF;
  b[13] = 0xFF;
  b[14] = 0xFF;
  b[15] = 0xFF;  // num_elements 2^32 - 1
  ExpectRejected(b, StatusCode::kDataLoss, "truncated");
  // Block size at the limit with a tiny buffer: values are checked before
  // they are allocated.
  SparseGradient big;
  big.num_elements = 4096u * 1000u;
  big.block_size = 4096;
  big.indices = {0, 1};
  big.values.assign(8192, 0.5f);
  b = Encode(big, ValuePrecision::kFp16);
  b.resize(kWireHeaderSize + 8 + 10);
  ExpectRejected(b, StatusCode::kDataLoss, "truncated");
}

TEST(WireDecodeTest, RandomCorruptionNeverYieldsAnInvalidGradient) {
  std::vector<float> g = RandomTensor(100000, 6);
  std::mt19937_64 rng(77);
  for (const char* kind : {"topk", "cacheline"}) {
    const std::vector<uint8_t> good = Encode(Select(kind, g, 0.002), ValuePrecision::kFp16);
    for (int trial = 0; trial < 3000; ++trial) {
      std::vector<uint8_t> b = good;
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < flips; ++f) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      auto d = Decode(b);
      if (d.ok()) {
        ASSERT_TRUE(ValidateSparseGradient(*d).ok());  // e.g. a flipped value byte
      }
    }
  }
  for (int trial = 0; trial < 3000; ++trial) {  // pure garbage with a valid magic
    std::vector<uint8_t> b(rng() % 96);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    if (b.size() >= 8) {
      PutU32At(&b, 0, kWireMagic);
      b[4] = kWireVersion;
      b[5] %= 3;
      b[6] %= 2;
      b[7] = 0;
    }
    auto d = Decode(b);
    if (d.ok()) {
      ASSERT_TRUE(ValidateSparseGradient(*d).ok());
    }
  }
}

}  // namespace
}  // namespace compress
}  // namespace stella
