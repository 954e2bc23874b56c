// Helpers shared by the compress tests: deterministic tensors and brute-force
// reference selections (full sort with the documented tie rule).
#ifndef STELLA_TESTS_COMPRESS_TEST_UTIL_H_
#define STELLA_TESTS_COMPRESS_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "runtime/compress/compressor.h"

namespace stella {
namespace compress {
namespace testing {

inline std::vector<float> RandomTensor(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> g(n);
  for (float& v : g) v = dist(rng);
  return g;
}

// Sorts ids by (score descending, id ascending) and returns the first k ids,
// ascending.
inline std::vector<uint32_t> TopIds(const std::vector<float>& score, size_t k) {
  std::vector<uint32_t> ids(score.size());
  std::iota(ids.begin(), ids.end(), 0u);
  std::sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) {
    if (score[a] != score[b]) return score[a] > score[b];
    return a < b;
  });
  ids.resize(std::min(k, ids.size()));
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Exact top-k by |g|, ties to the lower index.
inline SparseGradient ReferenceTopK(const std::vector<float>& g, double density) {
  SparseGradient s;
  s.num_elements = g.size();
  s.block_size = 1;
  std::vector<float> mag(g.size());
  for (size_t i = 0; i < g.size(); ++i) mag[i] = std::fabs(g[i]);
  s.indices = TopIds(mag, SelectionSize(g.size(), density));
  for (uint32_t i : s.indices) s.values.push_back(g[i]);
  return s;
}

// Exact cache-line selection: ceil(k/16) blocks by BlockL1Score.
inline SparseGradient ReferenceCacheline(const std::vector<float>& g, double density) {
  SparseGradient s;
  s.num_elements = g.size();
  s.block_size = kCachelineBlockSize;
  const size_t n = g.size();
  const size_t nb = (n + 15) / 16;
  std::vector<float> score(nb);
  for (size_t b = 0; b < nb; ++b) {
    score[b] = BlockL1Score(g.data() + 16 * b, std::min<size_t>(16, n - 16 * b));
  }
  const size_t k = SelectionSize(n, density);
  s.indices = TopIds(score, std::min(nb, (k + 15) / 16));
  for (uint32_t b : s.indices) {
    for (size_t e = 16 * size_t{b}; e < std::min<size_t>(16 * size_t{b} + 16, n); ++e) {
      s.values.push_back(g[e]);
    }
  }
  return s;
}

}  // namespace testing
}  // namespace compress
}  // namespace stella

#endif  // STELLA_TESTS_COMPRESS_TEST_UTIL_H_
