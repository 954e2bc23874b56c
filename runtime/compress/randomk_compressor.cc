// Random-k: Floyd's sampling of a uniformly random k-subset, O(k) draws, with
// a bitmap so the ascending order comes from a bit scan instead of a sort.
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {
namespace {

// Uniform in [0, bound) without modulo bias. Written out (rather than
// std::uniform_int_distribution, whose algorithm is library-specific) so a
// seed selects the same indices with every standard library.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t reject_below = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const uint64_t r = rng();
    if (r >= reject_below) return r % bound;
  }
}

class RandomKCompressor final : public Compressor {
 public:
  explicit RandomKCompressor(uint64_t seed) : rng_(seed) {}

  Status Compress(const float* grad, size_t n, double density, SparseGradient* out) override {
    STELLA_RETURN_IF_ERROR(BeginCompress(grad, n, density, 1, out));
    if (n > 0) {
      // The selection ignores the values, but a NaN must still not be sent.
      STELLA_RETURN_IF_ERROR(CheckFinite(grad, n));
      const size_t k = SelectionSize(n, density);
      const size_t words = (n + 63) / 64;
      bitmap_.assign(words, 0);
      for (size_t j = n - k; j < n; ++j) {
        uint64_t t = UniformBelow(rng_, static_cast<uint64_t>(j) + 1);
        if (bitmap_[t / 64] & (uint64_t{1} << (t % 64))) t = j;  // Floyd: j is new
        bitmap_[t / 64] |= uint64_t{1} << (t % 64);
      }
      out->indices.resize(k);
      out->values.resize(k);
      size_t m = 0;
      for (size_t w = 0; w < words; ++w) {
        uint64_t bits = bitmap_[w];
        while (bits != 0) {
          const size_t idx = w * 64 + static_cast<size_t>(__builtin_ctzll(bits));
          bits &= bits - 1;
          out->indices[m] = static_cast<uint32_t>(idx);
          out->values[m] = grad[idx];
          ++m;
        }
      }
      STELLA_CHECK(m == k);
      ++stats_.input_passes;
      stats_.last_candidates = k;
    }
    ++stats_.calls;
    return Status::Ok();
  }

  const char* name() const override { return "randomk"; }
  CompressorStats stats() const override { return stats_; }

  // The generator's standard text form (its full state, the same with every
  // standard library).
  std::string SaveState() const override {
    std::ostringstream text;
    text << rng_;
    return SaveStateBlob(name(), [&text](ByteWriter* w) { w->String(text.str()); });
  }

  Status LoadState(std::string_view state) override {
    std::istringstream text;
    STELLA_RETURN_IF_ERROR(LoadStateBlob(name(), state, [&text](ByteReader* r) { text.str(r->String("generator")); }));
    std::mt19937_64 restored;
    text >> restored;
    if (text.fail()) return DataLossError("randomk compressor state: the generator state does not parse");
    rng_ = restored;
    return Status::Ok();
  }

 private:
  std::mt19937_64 rng_;
  CompressorStats stats_;
  std::vector<uint64_t> bitmap_;  // scratch, one bit per element
};

}  // namespace

std::unique_ptr<Compressor> NewRandomKCompressor(uint64_t seed) { return std::make_unique<RandomKCompressor>(seed); }

}  // namespace internal
}  // namespace compress
}  // namespace stella
