// Decision: what the tuner tells every worker to do from a given step on,
// and its frame encoding.
//
// Consistency: every worker's TunerDriver makes the same Decision from the
// same job-wide telemetry (no broadcast) and applies it at the step boundary
// before step `apply_at_step`, so the whole job switches batch sizes and
// density at the same step; TunerOptions::lead_steps covers the steps the
// compute thread runs ahead of the exchange. The frame encoding below is for
// checkpoints and tools that record decisions.
//
// Frame layout, all integers little-endian, no padding (kDecisionHeaderSize
// bytes of header):
//   u32 magic          kDecisionMagic ("STTD" in byte order)
//   u8  version        kDecisionVersion
//   u8  reserved[3]    0
//   u64 round
//   i64 apply_at_step
//   u64 density        IEEE-754 binary64 bits
//   u32 num_workers
//   u32 reason_length
//   num_workers x (i32 worker_id, i32 batch_size)
//   reason_length bytes of reason
// Decoding checks lengths before allocating and then the same invariants as
// ValidateDecision; it never reads out of bounds on hostile input.
//
// Thread safety: a plain value type and pure functions.
#ifndef STELLA_RUNTIME_TUNER_DECISION_H_
#define STELLA_RUNTIME_TUNER_DECISION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella {
namespace tuner {

inline constexpr uint32_t kDecisionMagic = 0x44545453;  // "STTD"
inline constexpr uint8_t kDecisionVersion = 1;
inline constexpr size_t kDecisionHeaderSize = 40;
inline constexpr size_t kMaxDecisionWorkers = 65536;
inline constexpr size_t kMaxDecisionReasonBytes = 4096;

struct Decision {
  uint64_t round = 0;            // 1, 2, ... per Decide call; 0 = the initial state
  int64_t apply_at_step = 0;     // first step that uses this decision
  double density = 0.0;          // job-wide gradient density, (0, 1]
  std::vector<int> worker_ids;   // strictly ascending; parallel to batch_sizes
  std::vector<int> batch_sizes;  // per worker, >= 1; sums to the global batch
  std::string reason;            // why, for the log (<= kMaxDecisionReasonBytes)

  // The batch size for `worker_id`, or nullopt if it is not in the decision.
  std::optional<int> BatchSizeFor(int worker_id) const;

  // One line for the log:
  // tuner round=3 apply_at_step=120 density=0.00631 batches=[0:43 1:21] reason="..."
  std::string ToLogLine() const;
};

// InvalidArgument naming the first violation: density not in (0, 1] or not
// finite, apply_at_step < 0, ids and batches of different lengths, ids not
// strictly ascending or negative, a batch < 1, too many workers, or a reason
// longer than kMaxDecisionReasonBytes.
Status ValidateDecision(const Decision& decision);

// Replaces *out with the frame. InvalidArgument if ValidateDecision fails.
Status EncodeDecision(const Decision& decision, std::vector<uint8_t>* out);

// Decodes one frame occupying exactly data[0, n). DataLoss for truncated or
// oversized frames, bad magic, version or reserved bytes; InvalidArgument for
// a well-formed frame whose decision fails ValidateDecision.
StatusOr<Decision> DecodeDecision(const uint8_t* data, size_t n);

}  // namespace tuner
}  // namespace stella

#endif  // STELLA_RUNTIME_TUNER_DECISION_H_
