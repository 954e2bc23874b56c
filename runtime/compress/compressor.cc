#include "runtime/compress/compressor.h"

#include <cmath>
#include <string>

#include "runtime/compress/internal/compressors.h"

namespace stella {
namespace compress {
namespace {

Status ValidateOptions(const CompressorOptions& o) {
  if (!(std::isfinite(o.initial_threshold) && o.initial_threshold >= 0.0f)) {
    return InvalidArgumentError("compressor initial_threshold must be finite and >= 0, got " +
                                std::to_string(o.initial_threshold));
  }
  if (!(o.threshold_decrease > 0.0 && o.threshold_decrease < 1.0)) {
    return InvalidArgumentError("compressor threshold_decrease must be in (0, 1), got " +
                                std::to_string(o.threshold_decrease));
  }
  if (!(o.threshold_increase >= 0.0 && std::isfinite(o.threshold_increase))) {
    return InvalidArgumentError("compressor threshold_increase must be finite and >= 0, got " +
                                std::to_string(o.threshold_increase));
  }
  if (!(o.max_candidate_ratio >= 1.0 && std::isfinite(o.max_candidate_ratio))) {
    return InvalidArgumentError("compressor max_candidate_ratio must be finite and >= 1, got " +
                                std::to_string(o.max_candidate_ratio));
  }
  if (o.max_rescans < 0 || o.max_rescans > 64) {
    return InvalidArgumentError("compressor max_rescans must be in [0, 64], got " + std::to_string(o.max_rescans));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Compressor>> CreateCompressor(const CompressorOptions& options) {
  STELLA_RETURN_IF_ERROR(ValidateOptions(options));
  if (options.kind == "topk") return internal::NewTopKCompressor();
  if (options.kind == "randomk") return internal::NewRandomKCompressor(options.seed);
  if (options.kind == "threshold") return internal::NewThresholdCompressor(options);
  if (options.kind == "cacheline") return internal::NewCachelineCompressor(options);
  if (options.kind.empty()) {
    return InvalidArgumentError("CompressorOptions.kind: required; valid kinds: topk, randomk, threshold, cacheline");
  }
  return InvalidArgumentError("unknown compressor kind \"" + options.kind +
                              "\"; valid kinds: topk, randomk, threshold, cacheline");
}

}  // namespace compress
}  // namespace stella
