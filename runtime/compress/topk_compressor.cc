// Exact top-k: nth_element on a compact array of 64-bit keys, O(n) average.
#include <memory>
#include <vector>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {
namespace {

class TopKCompressor final : public Compressor {
 public:
  Status Compress(const float* grad, size_t n, double density, SparseGradient* out) override {
    STELLA_RETURN_IF_ERROR(BeginCompress(grad, n, density, 1, out));
    if (n > 0) {
      STELLA_RETURN_IF_ERROR(CheckFinite(grad, n));
      const size_t k = SelectionSize(n, density);
      if (k == n) {
        SelectAll(grad, n, out);
        stats_.input_passes += 2;
      } else {
        SelectTopAll(grad, n, k, &keys_, &out->indices);
        out->values.resize(k);
        for (size_t j = 0; j < k; ++j) out->values[j] = grad[out->indices[j]];
        stats_.input_passes += 3;  // finiteness, keys, collection
      }
      stats_.last_candidates = n;
    }
    ++stats_.calls;
    return Status::Ok();
  }

  const char* name() const override { return "topk"; }
  CompressorStats stats() const override { return stats_; }

  // Exact top-k keeps no history: the state is only the kind.
  std::string SaveState() const override { return SaveStateBlob(name()); }
  Status LoadState(std::string_view state) override { return LoadStateBlob(name(), state); }

 private:
  CompressorStats stats_;
  std::vector<uint64_t> keys_;  // scratch, n entries
};

}  // namespace

std::unique_ptr<Compressor> NewTopKCompressor() { return std::make_unique<TopKCompressor>(); }

}  // namespace internal
}  // namespace compress
}  // namespace stella
