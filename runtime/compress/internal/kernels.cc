#include "runtime/compress/internal/kernels.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace stella {
namespace compress {
namespace internal {
namespace {

constexpr uint32_t kExponentMask = 0x7F800000u;

// Sum of |p[0..16)| in the order BlockL1Score documents. Plain fixed-size
// loops that the compiler turns into 4-wide SIMD plus one horizontal add;
// the portable path of ComputeBlockScores and its remainder blocks.
inline float Score16(const float* p) {
  float t[4];
  for (int l = 0; l < 4; ++l) {
    t[l] = (std::fabs(p[l]) + std::fabs(p[l + 8])) + (std::fabs(p[l + 4]) + std::fabs(p[l + 12]));
  }
  return (t[0] + t[2]) + (t[1] + t[3]);
}

// 1 if AbsBits(x) >= tau (both <= 0x7FFFFFFF, so a signed compare is exact
// and maps to one SSE2 pcmpgtd), else 0.
inline int AtLeast(const float* x, int32_t tau) {
  uint32_t b;
  std::memcpy(&b, x, sizeof(b));
  return static_cast<int32_t>(b & 0x7FFFFFFFu) >= tau;
}

}  // namespace

size_t FindFirstNonFinite(const float* x, size_t n) {
  constexpr size_t kChunk = 64;
  size_t i = 0;
  // Branch-free OR of "exponent all ones" per chunk: vectorizes to and/cmpeq/or.
  for (; i + kChunk <= n; i += kChunk) {
    uint32_t bad = 0;
    for (size_t j = 0; j < kChunk; ++j) {
      uint32_t b;
      std::memcpy(&b, x + i + j, sizeof(b));
      bad |= static_cast<uint32_t>((b & kExponentMask) == kExponentMask);
    }
    if (bad) break;
  }
  for (; i < n; ++i) {
    if ((FloatBits(x[i]) & kExponentMask) == kExponentMask) return i;
  }
  return n;
}

Status NonFiniteError(size_t index, float value) {
  const char* what = std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
  return InvalidArgumentError("gradient element " + std::to_string(index) + " is " + what);
}

Status CheckFinite(const float* x, size_t n) {
  const size_t bad = FindFirstNonFinite(x, n);
  return bad < n ? NonFiniteError(bad, x[bad]) : Status::Ok();
}

void SelectAll(const float* grad, size_t n, SparseGradient* out) {
  out->indices.resize(n);
  for (size_t i = 0; i < n; ++i) out->indices[i] = static_cast<uint32_t>(i);
  out->values.assign(grad, grad + n);
}

Status BeginCompress(const float* grad, size_t n, double density, uint32_t block_size, SparseGradient* out) {
  if (!(density > 0.0 && density <= 1.0)) {
    return InvalidArgumentError("density must be in (0, 1], got " + std::to_string(density));
  }
  if (out == nullptr) return InvalidArgumentError("output SparseGradient is null");
  if (n > 0 && grad == nullptr) {
    return InvalidArgumentError("gradient pointer is null for " + std::to_string(n) + " elements");
  }
  if (n > kMaxCompressElements) {
    return InvalidArgumentError("tensor of " + std::to_string(n) + " elements exceeds the compressor limit of " +
                                std::to_string(kMaxCompressElements));
  }
  out->num_elements = n;
  out->block_size = block_size;
  out->indices.clear();
  out->values.clear();
  return Status::Ok();
}

size_t CollectKeysAtLeast(const float* x, size_t n, uint32_t tau_bits, std::vector<uint64_t>* out) {
  constexpr size_t kChunk = 16;
  if (out->size() < 4 * kChunk) out->resize(4 * kChunk);
  uint64_t* dst = out->data();
  size_t cap = out->size();
  size_t count = 0;
  const int32_t tau = static_cast<int32_t>(std::min<uint32_t>(tau_bits, 0x7FFFFFFFu));
  size_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    // Vectorized test: does any of the 16 qualify? Most chunks do not.
    int hit = 0;
    for (size_t j = 0; j < kChunk; ++j) hit |= AtLeast(x + i + j, tau);
    if (!hit) continue;
    if (count + kChunk > cap) {
      out->resize(std::max(2 * cap, count + kChunk));
      dst = out->data();
      cap = out->size();
    }
    // Branch-free compaction of the qualifying keys of this chunk.
    for (size_t j = 0; j < kChunk; ++j) {
      const uint32_t a = AbsBits(x[i + j]);
      dst[count] = MakeKey(a, static_cast<uint32_t>(i + j));
      count += static_cast<size_t>(static_cast<int32_t>(a) >= tau);
    }
  }
  if (count + kChunk > cap) {
    out->resize(count + kChunk);
    dst = out->data();
  }
  for (; i < n; ++i) {
    const uint32_t a = AbsBits(x[i]);
    dst[count] = MakeKey(a, static_cast<uint32_t>(i));
    count += static_cast<size_t>(static_cast<int32_t>(a) >= tau);
  }
  return count;
}

size_t ComputeBlockScores(const float* x, size_t n, float* scores, float tau, std::vector<uint64_t>* candidates,
                          bool* all_finite) {
  const size_t full = n / kCachelineBlockSize;
  size_t count = 0;
  auto reserve = [&](size_t more) {
    if (candidates != nullptr && count + more > candidates->size()) {
      candidates->resize(std::max(2 * candidates->size(), count + more + 64));
    }
  };
  size_t b = 0;
  bool finite = true;
#if defined(__SSE2__)
  // Four blocks at a time: the four per-block partial vectors are reduced
  // with one 4x4 transpose-and-add instead of four horizontal sums, halving
  // the instructions per cache line so the pass stays memory-bound. The
  // additions are exactly those of Score16, so scores are bit-identical to
  // the portable path and to BlockL1Score. Candidates are picked from the
  // fresh score vector, so the scores array is never re-read.
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  const __m128 tau4 = _mm_set1_ps(tau);
  const bool collect = candidates != nullptr;
  __m128 bad = _mm_setzero_ps();
  for (; b + 4 <= full; b += 4) {
    const float* p = x + b * kCachelineBlockSize;
    __m128 t[4];
    for (int k = 0; k < 4; ++k) {
      const float* q = p + 16 * k;
      const __m128 v0 = _mm_and_ps(_mm_loadu_ps(q), abs_mask);
      const __m128 v1 = _mm_and_ps(_mm_loadu_ps(q + 4), abs_mask);
      const __m128 v2 = _mm_and_ps(_mm_loadu_ps(q + 8), abs_mask);
      const __m128 v3 = _mm_and_ps(_mm_loadu_ps(q + 12), abs_mask);
      t[k] = _mm_add_ps(_mm_add_ps(v0, v2), _mm_add_ps(v1, v3));  // t_l of block k
    }
    const __m128 ab = _mm_add_ps(_mm_unpacklo_ps(t[0], t[1]),  // [A0+A2 B0+B2 A1+A3 B1+B3]
                                 _mm_unpackhi_ps(t[0], t[1]));
    const __m128 cd = _mm_add_ps(_mm_unpacklo_ps(t[2], t[3]),  // [C0+C2 D0+D2 C1+C3 D1+D3]
                                 _mm_unpackhi_ps(t[2], t[3]));
    const __m128 s = _mm_add_ps(_mm_movelh_ps(ab, cd),  // (t0+t2) + (t1+t3)
                                _mm_movehl_ps(cd, ab));
    _mm_storeu_ps(scores + b, s);
    const __m128 d = _mm_sub_ps(s, s);  // NaN iff s is NaN or Inf
    bad = _mm_or_ps(bad, _mm_cmpunord_ps(d, d));
    if (collect) {
      int mask = _mm_movemask_ps(_mm_cmpge_ps(s, tau4));
      if (mask != 0) {
        reserve(4);
        uint64_t* dst = candidates->data();
        for (; mask != 0; mask &= mask - 1) {
          const size_t blk = b + static_cast<size_t>(__builtin_ctz(mask));
          dst[count++] = MakeKey(FloatBits(scores[blk]), static_cast<uint32_t>(blk));
        }
      }
    }
  }
  finite = _mm_movemask_ps(bad) == 0;
#endif
  auto one = [&](size_t blk, float score) {
    scores[blk] = score;
    finite &= std::isfinite(score);
    if (candidates != nullptr && score >= tau) {
      reserve(1);
      (*candidates)[count++] = MakeKey(FloatBits(score), static_cast<uint32_t>(blk));
    }
  };
  for (; b < full; ++b) one(b, Score16(x + b * kCachelineBlockSize));
  const size_t tail = n % kCachelineBlockSize;
  if (tail != 0) one(full, BlockL1Score(x + full * kCachelineBlockSize, tail));
  *all_finite = finite;
  return count;
}

float EstimateThreshold(const float* x, size_t n, double fraction, std::vector<float>* scratch) {
  if (n == 0 || fraction >= 1.0) return 0.0f;
  constexpr size_t kMaxSample = 4096;
  const size_t s = std::min(n, kMaxSample);  // i * n < 2^12 * 2^32: no overflow
  scratch->resize(s);
  for (size_t i = 0; i < s; ++i) {
    (*scratch)[i] = std::fabs(x[static_cast<size_t>((static_cast<uint64_t>(i) * n) / s)]);
  }
  size_t rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(s)));
  rank = std::min(std::max<size_t>(rank, 1), s);
  std::nth_element(scratch->begin(), scratch->begin() + (rank - 1), scratch->end(), std::greater<float>());
  return (*scratch)[rank - 1];
}

uint64_t SelectTopKeys(const uint64_t* keys, size_t c, size_t k, std::vector<uint64_t>* scratch,
                       std::vector<uint32_t>* selected) {
  STELLA_CHECK(k >= 1 && k <= c);
  scratch->assign(keys, keys + c);
  uint64_t* sp = scratch->data();
  std::nth_element(sp, sp + (k - 1), sp + c, std::greater<uint64_t>());
  const uint64_t kth = sp[k - 1];
  // Keys are distinct, so exactly k reach kth; filtering the original
  // (index-ascending) array keeps them in ascending order without a sort.
  selected->resize(k + 1);  // + 1: the branch-free store below runs one past
  uint32_t* out = selected->data();
  size_t m = 0;
  for (size_t j = 0; j < c; ++j) {
    out[m] = KeyIndex(keys[j]);
    m += static_cast<size_t>(keys[j] >= kth);
  }
  STELLA_CHECK(m == k);
  selected->resize(k);
  return kth;
}

uint64_t SelectTopAll(const float* x, size_t n, size_t k, std::vector<uint64_t>* keys,
                      std::vector<uint32_t>* selected) {
  STELLA_CHECK(k >= 1 && k <= n);
  keys->resize(n);
  uint64_t* kp = keys->data();
  for (size_t i = 0; i < n; ++i) kp[i] = MakeKey(AbsBits(x[i]), static_cast<uint32_t>(i));
  std::nth_element(kp, kp + (k - 1), kp + n, std::greater<uint64_t>());
  const uint64_t kth = kp[k - 1];
  // Everything with |x| >= the k-th magnitude, ascending, then keep the keys
  // that reach the k-th key (equal magnitudes past it lose the index tie).
  const size_t c = CollectKeysAtLeast(x, n, KeyAbsBits(kth), keys);
  selected->resize(k + 1);  // + 1: the branch-free store below runs one past
  uint32_t* out = selected->data();
  const uint64_t* cand = keys->data();  // CollectKeysAtLeast may have reallocated
  size_t m = 0;
  for (size_t j = 0; j < c; ++j) {
    out[m] = KeyIndex(cand[j]);
    m += static_cast<size_t>(cand[j] >= kth);
  }
  STELLA_CHECK(m == k);
  selected->resize(k);
  return kth;
}

}  // namespace internal

float BlockL1Score(const float* block, size_t len) {
  STELLA_CHECK(len <= kCachelineBlockSize);
  float padded[kCachelineBlockSize] = {};
  if (len > 0) std::memcpy(padded, block, len * sizeof(float));
  return internal::Score16(padded);
}

}  // namespace compress
}  // namespace stella
