// Sparse gradient compression: selects a small part of a dense float gradient
// to send over the WAN (top-k, random-k, threshold and cache-line selectors).
//
// All selectors share one contract (see Compressor::Compress): k is fixed by
// the density, the output is deterministic for a given input and instance
// history, indices are strictly ascending, and non-finite gradients are
// rejected instead of being sent to every peer. Selection is exact: the
// threshold and cache-line selectors use their adaptive threshold only to make
// the common case fast; they return the same set as an exact selection.
//
// Thread safety: SparseGradient and the free functions are plain values and
// pure functions. A Compressor instance carries per-tensor state (an adaptive
// threshold, a random generator, scratch buffers) and is NOT thread-safe: use
// one instance per tensor, called by one thread at a time (the pipeline
// orders the calls). Distinct instances are independent.
#ifndef STELLA_RUNTIME_COMPRESS_COMPRESSOR_H_
#define STELLA_RUNTIME_COMPRESS_COMPRESSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/status.h"

namespace stella {
namespace compress {

// Floats per cache line (64 bytes): the block size of the cache-line selector.
inline constexpr uint32_t kCachelineBlockSize = 16;

// Largest tensor a compressor accepts: indices are 32-bit on the wire.
inline constexpr uint64_t kMaxCompressElements = 0xFFFFFFFFull;

// A sparse view of a dense tensor of `num_elements` floats.
//
// The tensor is split into blocks of `block_size` elements; block b covers
// elements [b * block_size, min((b + 1) * block_size, num_elements)), so the
// last (tail) block may be shorter. `indices` are block indices, strictly
// ascending; `values` holds the covered elements of each listed block in
// order. block_size 1 means element indices.
struct SparseGradient {
  uint64_t num_elements = 0;
  uint32_t block_size = 1;
  std::vector<uint32_t> indices;
  std::vector<float> values;
};

// ceil(num_elements / block_size); 0 when block_size is 0.
uint64_t NumBlocks(uint64_t num_elements, uint32_t block_size);

// Number of dense elements the listed blocks cover (== expected values.size()).
// Indices past the end of the tensor cover nothing.
size_t CoveredElements(const SparseGradient& sparse);

// Checks the structural invariants above: block_size >= 1, indices strictly
// ascending and < NumBlocks, values.size() == CoveredElements. Returns
// InvalidArgument naming the first violation.
Status ValidateSparseGradient(const SparseGradient& sparse);

// The number of elements a compressor keeps: 0 when n == 0, else
// clamp(llround(density * n), 1, n). `density` must be in (0, 1].
size_t SelectionSize(size_t n, double density);

// The cache-line selector's block score: the L1 norm sum(|x[i]|) of up to 16
// floats (a shorter tail block counts only its existing elements). The sum is
// taken in this fixed order so every caller gets bit-identical scores:
//   t_l = (|x_l| + |x_{l+8}|) + (|x_{l+4}| + |x_{l+12}|),  l = 0..3
//   score = (t_0 + t_2) + (t_1 + t_3)
// with missing tail elements counted as 0. `len` must be <= 16.
float BlockL1Score(const float* block, size_t len);

// Counters one compressor instance keeps, for metrics and tests.
struct CompressorStats {
  uint64_t calls = 0;            // successful Compress calls
  uint64_t input_passes = 0;     // full streaming passes over input gradients
  uint64_t rescans = 0;          // candidate scans repeated with a lower threshold
  uint64_t exact_fallbacks = 0;  // calls that fell back to an exact selection
  uint64_t last_candidates = 0;  // candidates found by the last call's final scan
  float threshold = 0.0f;        // current adaptive threshold (0 if none)
};

// Selects the entries of a dense gradient to send.
class Compressor {
 public:
  virtual ~Compressor() = default;

  // Fills `*out` (overwritten; its buffers are reused) with a selection of
  // k = SelectionSize(n, density) elements of grad[0, n):
  //   topk, threshold: the k largest |g|, ties broken toward the lower index;
  //   randomk: k distinct uniformly random indices, values unscaled;
  //   cacheline: the ceil(k / 16) blocks of 16 with the largest BlockL1Score,
  //     ties toward the lower block index (block_size 16 in the output).
  // Errors (InvalidArgument): density outside (0, 1]; a NaN or Inf element
  // ("gradient element 17 is NaN"); n > kMaxCompressElements; null pointers.
  // On error `*out` is unspecified; the instance stays usable.
  virtual Status Compress(const float* grad, size_t n, double density, SparseGradient* out) = 0;

  // "topk", "randomk", "threshold" or "cacheline".
  virtual const char* name() const = 0;

  virtual CompressorStats stats() const = 0;

  // The history the next selections depend on, for checkpoints: random-k's
  // generator (it decides which indices are sent) and the threshold
  // selectors' adaptive threshold (it decides only how fast the exact
  // selection is found). Opaque bytes, tagged with the kind; top-k keeps
  // none. Counters (stats) are not part of it.
  virtual std::string SaveState() const = 0;
  // Restores what SaveState of an instance of the same kind returned, so the
  // next Compress calls select what the saved instance's would have.
  // DataLoss for malformed bytes or a state of another kind; the instance is
  // unchanged on error.
  virtual Status LoadState(std::string_view state) = 0;
};

struct CompressorOptions {
  // Which selector: "topk" | "randomk" | "threshold" | "cacheline".
  // Required: the job's default (spec.sync.compressor) lives in the spec
  // library only.
  std::string kind;

  // randomk: seed of the std::mt19937_64 generator. Two instances with the
  // same seed and the same call sequence select the same indices.
  // Default 0x5eed.
  uint64_t seed = 0x5eed;

  // threshold, cacheline: starting threshold (on |g|, or on block scores for
  // cacheline). Default 0: estimated on the first call from an evenly strided
  // sample of the tensor, aiming at about 1.5 k candidates.
  float initial_threshold = 0.0f;

  // threshold, cacheline: AIMD adaptation of the per-instance threshold tau.
  // Too few candidates (< k): rescan with tau *= threshold_decrease, up to
  // max_rescans times, then select exactly from the whole tensor; the tau
  // that worked is kept for the next call. Too many (> max_candidate_ratio *
  // k): tau += threshold_increase * (initial tau) for the next call.
  // Defaults 0.9, 0.01, 3.0 and 3. The prototype decreased by 0.99 because it
  // padded a short output with arbitrary entries; here a short scan costs a
  // rescan, so the decrease must be decisive.
  double threshold_decrease = 0.9;   // in (0, 1)
  double threshold_increase = 0.01;  // >= 0
  double max_candidate_ratio = 3.0;  // >= 1
  int max_rescans = 3;               // >= 0
};

// Creates the compressor named by options.kind. InvalidArgument for an
// unknown kind (the message lists the valid kinds) or out-of-range options.
StatusOr<std::unique_ptr<Compressor>> CreateCompressor(const CompressorOptions& options);

}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_COMPRESSOR_H_
