// Cache-line selection ("thresholdv16" of the prototype), fixed: the whole
// tensor is always scored (no early stop, so no bias toward its start), the
// tail block is scored by |values|, and the selection is exact.
//
// One streaming pass computes the 16-wide L1 score of every block into a
// scores array (1/16 of the input) and, in the same pass, collects the
// blocks whose score reaches the adaptive threshold. A rescan or an exact
// fallback works on the small scores array and never re-reads the gradient.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {
namespace {

class CachelineCompressor final : public SelectorCompressor {
 public:
  explicit CachelineCompressor(const CompressorOptions& options) : SelectorCompressor(options) {}

  Status Compress(const float* grad, size_t n, double density, SparseGradient* out) override {
    STELLA_RETURN_IF_ERROR(BeginCompress(grad, n, density, kCachelineBlockSize, out));
    constexpr size_t kBs = kCachelineBlockSize;
    if (n > 0) {
      const size_t num_blocks = static_cast<size_t>(NumBlocks(n, kCachelineBlockSize));
      scores_.resize(num_blocks);
      // The first candidate scan rides along with the scoring pass once the
      // threshold exists.
      const bool fused = selector_.has_tau();
      const float tau = selector_.tau();
      bool finite = true;
      const size_t count =
          ComputeBlockScores(grad, n, scores_.data(), tau, fused ? selector_.candidate_buffer() : nullptr, &finite);
      if (!finite) {
        // A NaN/Inf element makes its block's score NaN/Inf; only those
        // blocks are searched. An Inf score of finite elements (overflow) is
        // legal.
        for (size_t b = FindFirstNonFinite(scores_.data(), num_blocks); b < num_blocks;
             b = b + 1 + FindFirstNonFinite(scores_.data() + b + 1, num_blocks - b - 1)) {
          const size_t start = b * kBs;
          const size_t len = std::min(kBs, n - start);
          const size_t e = FindFirstNonFinite(grad + start, len);
          if (e < len) return NonFiniteError(start + e, grad[start + e]);
        }
      }
      const size_t k = SelectionSize(n, density);
      const size_t kb = std::min(num_blocks, (k + kBs - 1) / kBs);
      if (kb == num_blocks) {
        out->indices.resize(num_blocks);
        for (size_t b = 0; b < num_blocks; ++b) out->indices[b] = static_cast<uint32_t>(b);
        out->values.assign(grad, grad + n);
      } else {
        const ThresholdSelector::FirstScan first{tau, count};
        STELLA_RETURN_IF_ERROR(selector_.Select(scores_.data(), num_blocks, kb,
                                                /*reject_non_finite=*/false, &out->indices, fused ? &first : nullptr));
        out->values.resize(kb * kBs);  // shrunk below if the tail block is in
        size_t m = 0;
        const uint32_t* sel = out->indices.data();
        const size_t num_sel = out->indices.size();
        for (size_t j = 0; j < num_sel; ++j) {
          // The selected lines were read long ago (and evicted on big
          // tensors): fetch a few ahead so the misses overlap.
          constexpr size_t kAhead = 8;
          if (j + kAhead < num_sel) __builtin_prefetch(grad + size_t{sel[j + kAhead]} * kBs);
          const size_t start = static_cast<size_t>(sel[j]) * kBs;
          const size_t len = std::min(kBs, n - start);
          std::memcpy(out->values.data() + m, grad + start, len * sizeof(float));
          m += len;
        }
        out->values.resize(m);
      }
      ++input_passes_;
    }
    ++calls_;
    return Status::Ok();
  }

  const char* name() const override { return "cacheline"; }

 private:
  // The selector scans the block scores, not the input.
  uint64_t input_passes() const override { return input_passes_; }

  uint64_t input_passes_ = 0;
  std::vector<float> scores_;  // scratch, one score per block
};

}  // namespace

std::unique_ptr<Compressor> NewCachelineCompressor(const CompressorOptions& options) {
  return std::make_unique<CachelineCompressor>(options);
}

}  // namespace internal
}  // namespace compress
}  // namespace stella
