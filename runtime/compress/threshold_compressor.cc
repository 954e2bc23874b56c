// Threshold selection on |g| ("threshold-v" of the prototype), made exact.
#include <memory>
#include <vector>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {
namespace {

class ThresholdCompressor final : public SelectorCompressor {
 public:
  explicit ThresholdCompressor(const CompressorOptions& options) : SelectorCompressor(options) {}

  Status Compress(const float* grad, size_t n, double density, SparseGradient* out) override {
    STELLA_RETURN_IF_ERROR(BeginCompress(grad, n, density, 1, out));
    if (n > 0) {
      const size_t k = SelectionSize(n, density);
      if (k == n) {
        STELLA_RETURN_IF_ERROR(CheckFinite(grad, n));
        SelectAll(grad, n, out);
        extra_passes_ += 2;
      } else {
        const uint64_t fallbacks_before = selector_.fallbacks();
        STELLA_RETURN_IF_ERROR(selector_.Select(grad, n, k, /*reject_non_finite=*/true, &out->indices));
        // An exact fallback reads the input twice more (keys, collection).
        extra_passes_ += 2 * (selector_.fallbacks() - fallbacks_before);
        out->values.resize(k);
        for (size_t j = 0; j < k; ++j) out->values[j] = grad[out->indices[j]];
      }
    }
    ++calls_;
    return Status::Ok();
  }

  const char* name() const override { return "threshold"; }

 private:
  // The selector's scans read the input itself.
  uint64_t input_passes() const override { return selector_.scans() + extra_passes_; }

  uint64_t extra_passes_ = 0;
};

}  // namespace

std::unique_ptr<Compressor> NewThresholdCompressor(const CompressorOptions& options) {
  return std::make_unique<ThresholdCompressor>(options);
}

}  // namespace internal
}  // namespace compress
}  // namespace stella
