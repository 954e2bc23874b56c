// Internal: constructors of the concrete selectors behind CreateCompressor,
// and the adaptive-threshold exact selection the threshold and cache-line
// selectors share. Not part of the public API.
//
// Thread safety: ThresholdSelector is not thread-safe (per-tensor state).
#ifndef STELLA_RUNTIME_COMPRESS_INTERNAL_COMPRESSORS_H_
#define STELLA_RUNTIME_COMPRESS_INTERNAL_COMPRESSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/compress/compressor.h"
#include "src/base/byte_io.h"
#include "src/base/status.h"

namespace stella {
namespace compress {
namespace internal {

std::unique_ptr<Compressor> NewTopKCompressor();
std::unique_ptr<Compressor> NewRandomKCompressor(uint64_t seed);
std::unique_ptr<Compressor> NewThresholdCompressor(const CompressorOptions& options);
std::unique_ptr<Compressor> NewCachelineCompressor(const CompressorOptions& options);

// Compressor state blobs start with the kind's name, then what `write` adds
// (nothing when null).
std::string SaveStateBlob(const char* kind, const std::function<void(ByteWriter*)>& write = nullptr);
// Checks that `state` is a blob of `kind`; then `read` takes the rest (none
// when null), which must end the blob. DataLoss names what did not parse.
Status LoadStateBlob(const char* kind, std::string_view state, const std::function<void(ByteReader*)>& read = nullptr);

// Exact top-k of x[0, n) by (|x| descending, index ascending), made fast by
// a per-instance threshold tau adapted with AIMD (see CompressorOptions):
// one streaming scan keeps |x| >= tau; if that finds at least k candidates
// the top k among them are the exact answer (everything below tau is
// smaller than every candidate). Otherwise tau is lowered and the scan
// repeated up to max_rescans times, then the whole array is selected
// exactly.
class ThresholdSelector {
 public:
  explicit ThresholdSelector(const CompressorOptions& options);

  // Writes the k (1 <= k < n) selected indices ascending to *selected. With
  // reject_non_finite, a NaN/Inf in x is reported as NonFiniteError (it
  // always passes the finite tau, so the first candidate that is not finite
  // is the first such element of x); otherwise x must hold no NaN.
  //
  // `first_scan`, if given, is a scan the caller already did at tau()
  // (fused into its own pass) whose `count` candidates it wrote to
  // candidate_buffer(); Select then continues from there. Only valid when
  // has_tau().
  struct FirstScan {
    float tau;
    size_t count;
  };
  Status Select(const float* x, size_t n, size_t k, bool reject_non_finite, std::vector<uint32_t>* selected,
                const FirstScan* first_scan = nullptr);

  bool has_tau() const { return initialized_; }
  std::vector<uint64_t>* candidate_buffer() { return &candidates_; }
  float tau() const { return initialized_ ? tau_ : 0.0f; }
  uint64_t scans() const { return scans_; }
  uint64_t rescans() const { return rescans_; }
  uint64_t fallbacks() const { return fallbacks_; }
  uint64_t last_candidates() const { return last_candidates_; }

  // The adaptive threshold (not the counters), for Compressor::SaveState.
  void SaveState(ByteWriter* out) const;
  // Reads what SaveState wrote, which must end the blob; errors (and
  // trailing bytes) are recorded in `in`, and then nothing changes.
  void LoadState(ByteReader* in);

 private:
  void SetTau(float tau);

  const float initial_threshold_;
  const float decrease_;
  const float increase_;
  const double max_candidate_ratio_;
  const int max_rescans_;

  bool initialized_ = false;
  float tau_ = 0.0f;
  float initial_tau_ = 0.0f;  // the unit of the additive increase
  uint64_t scans_ = 0;
  uint64_t rescans_ = 0;
  uint64_t fallbacks_ = 0;
  uint64_t last_candidates_ = 0;

  // Scratch reused across calls (sized to the largest call so far).
  std::vector<uint64_t> candidates_;  // keys (magnitude, index), see kernels.h
  std::vector<uint64_t> keys_;
  std::vector<float> sample_;
};

// A compressor that selects with a ThresholdSelector (threshold, cacheline):
// its state is the selector's, its stats the selector's counters plus the
// calls and input passes the subclass counts.
class SelectorCompressor : public Compressor {
 public:
  explicit SelectorCompressor(const CompressorOptions& options) : selector_(options) {}

  CompressorStats stats() const override;
  std::string SaveState() const override;
  Status LoadState(std::string_view state) override;

 protected:
  // Passes over the input besides the selector's scans, if those count.
  virtual uint64_t input_passes() const = 0;

  ThresholdSelector selector_;
  uint64_t calls_ = 0;
};

}  // namespace internal
}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_INTERNAL_COMPRESSORS_H_
