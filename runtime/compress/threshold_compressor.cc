// Threshold selection on |g| ("threshold-v" of the prototype), made exact.
#include <memory>
#include <vector>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {
namespace {

class ThresholdCompressor final : public Compressor {
 public:
  explicit ThresholdCompressor(const CompressorOptions& options) : selector_(options) {}

  Status Compress(const float* grad, size_t n, double density, SparseGradient* out) override {
    STELLA_RETURN_IF_ERROR(BeginCompress(grad, n, density, 1, out));
    if (n > 0) {
      const size_t k = SelectionSize(n, density);
      if (k == n) {
        const size_t bad = FindFirstNonFinite(grad, n);
        if (bad < n) return NonFiniteError(bad, grad[bad]);
        out->indices.resize(n);
        for (size_t i = 0; i < n; ++i) out->indices[i] = static_cast<uint32_t>(i);
        out->values.assign(grad, grad + n);
        extra_passes_ += 2;
      } else {
        const uint64_t fallbacks_before = selector_.fallbacks();
        STELLA_RETURN_IF_ERROR(selector_.Select(grad, n, k, /*reject_non_finite=*/true,
                                                &out->indices));
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

  CompressorStats stats() const override {
    CompressorStats s;
    s.calls = calls_;
    s.input_passes = selector_.scans() + extra_passes_;
    s.rescans = selector_.rescans();
    s.exact_fallbacks = selector_.fallbacks();
    s.last_candidates = selector_.last_candidates();
    s.threshold = selector_.tau();
    return s;
  }

  std::string SaveState() const override {
    ByteWriter w;
    BeginState(name(), &w);
    selector_.SaveState(&w);
    return w.Release();
  }

  Status LoadState(std::string_view state) override {
    ByteReader r(state, std::string(name()) + " compressor state");
    CheckStateKind(name(), &r);
    selector_.LoadState(&r);
    return r.status();
  }

 private:
  ThresholdSelector selector_;
  uint64_t calls_ = 0;
  uint64_t extra_passes_ = 0;
};

}  // namespace

std::unique_ptr<Compressor> NewThresholdCompressor(const CompressorOptions& options) {
  return std::make_unique<ThresholdCompressor>(options);
}

}  // namespace internal
}  // namespace compress
}  // namespace stella
