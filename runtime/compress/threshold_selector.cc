#include <algorithm>
#include <cfloat>
#include <cmath>

#include "runtime/compress/internal/compressors.h"
#include "runtime/compress/internal/kernels.h"

namespace stella {
namespace compress {
namespace internal {

ThresholdSelector::ThresholdSelector(const CompressorOptions& options)
    : initial_threshold_(options.initial_threshold),
      decrease_(static_cast<float>(options.threshold_decrease)),
      increase_(static_cast<float>(options.threshold_increase)),
      max_candidate_ratio_(options.max_candidate_ratio),
      max_rescans_(options.max_rescans) {}

void ThresholdSelector::SaveState(ByteWriter* out) const {
  out->Bool(initialized_);
  out->F32(tau_);
  out->F32(initial_tau_);
}

void ThresholdSelector::LoadState(ByteReader* in) {
  const bool initialized = in->Bool("threshold initialized");
  const float tau = in->F32("threshold");
  const float initial_tau = in->F32("initial threshold");
  in->ExpectEnd();
  if (!in->ok()) return;
  if (!std::isfinite(tau) || tau < 0 || !std::isfinite(initial_tau) || initial_tau < 0) {
    in->Fail("threshold must be finite and >= 0");
    return;
  }
  initialized_ = initialized;
  tau_ = tau;
  initial_tau_ = initial_tau;
}

std::string SaveStateBlob(const char* kind, const std::function<void(ByteWriter*)>& write) {
  ByteWriter w;
  w.String(kind);
  if (write) write(&w);
  return w.Release();
}

Status LoadStateBlob(const char* kind, std::string_view state, const std::function<void(ByteReader*)>& read) {
  ByteReader r(state, std::string(kind) + " compressor state");
  const std::string saved = r.String("compressor kind");
  if (r.ok() && saved != kind) r.Fail("state of a " + saved + " compressor given to a " + kind + " compressor");
  if (r.ok() && read) read(&r);
  r.ExpectEnd();
  return r.status();
}

CompressorStats SelectorCompressor::stats() const {
  CompressorStats s;
  s.calls = calls_;
  s.input_passes = input_passes();
  s.rescans = selector_.rescans();
  s.exact_fallbacks = selector_.fallbacks();
  s.last_candidates = selector_.last_candidates();
  s.threshold = selector_.tau();
  return s;
}

std::string SelectorCompressor::SaveState() const {
  return SaveStateBlob(name(), [this](ByteWriter* w) { selector_.SaveState(w); });
}

Status SelectorCompressor::LoadState(std::string_view state) {
  return LoadStateBlob(name(), state, [this](ByteReader* r) { selector_.LoadState(r); });
}

void ThresholdSelector::SetTau(float tau) {
  if (!(tau > 0.0f) || !std::isfinite(tau)) return;  // keep the last usable tau
  tau_ = tau;
  if (!initialized_) {
    initial_tau_ = tau;
    initialized_ = true;
  }
}

Status ThresholdSelector::Select(const float* x, size_t n, size_t k, bool reject_non_finite,
                                 std::vector<uint32_t>* selected, const FirstScan* first_scan) {
  STELLA_CHECK(k >= 1 && k < n);
  STELLA_CHECK(first_scan == nullptr || (initialized_ && first_scan->tau == tau_));
  if (!initialized_) {
    if (initial_threshold_ > 0.0f) {
      SetTau(initial_threshold_);
    } else {
      // Aim at ~1.5 k candidates: enough margin that the first scan rarely
      // comes up short, few enough that selecting among them is cheap.
      const double fraction = std::min(1.0, 1.5 * static_cast<double>(k) / static_cast<double>(n));
      SetTau(EstimateThreshold(x, n, fraction, &sample_));
    }
  }
  float tau = initialized_ ? tau_ : 0.0f;
  size_t count = 0;
  int rescans = 0;
  for (bool scanned = first_scan != nullptr;; scanned = false) {
    count = scanned ? first_scan->count : CollectKeysAtLeast(x, n, FloatBits(tau), &candidates_);
    ++scans_;
    if (reject_non_finite) {
      for (size_t j = 0; j < count; ++j) {
        if (KeyAbsBits(candidates_[j]) >= 0x7F800000u) {
          const uint32_t i = KeyIndex(candidates_[j]);
          return NonFiniteError(i, x[i]);
        }
      }
    }
    if (count >= k || tau == 0.0f || rescans >= max_rescans_) break;
    tau *= decrease_;
    ++rescans;
    ++rescans_;
  }
  last_candidates_ = count;

  if (count >= k) {
    SelectTopKeys(candidates_.data(), count, k, &keys_, selected);
    if (initialized_) {
      if (rescans > 0) {
        SetTau(tau);  // multiplicative decrease: keep the tau that worked
      } else if (static_cast<double>(count) > max_candidate_ratio_ * static_cast<double>(k)) {
        SetTau(std::min(FLT_MAX, tau_ + increase_ * initial_tau_));  // additive increase
      }
    }
    return Status::Ok();
  }
  // Still short after the rescans: select exactly over everything, and
  // restart the adaptation just below the k-th magnitude seen now.
  ++fallbacks_;
  const uint64_t kth = SelectTopAll(x, n, k, &keys_, selected);
  SetTau(BitsToFloat(KeyAbsBits(kth)) * decrease_);
  return Status::Ok();
}

}  // namespace internal
}  // namespace compress
}  // namespace stella
