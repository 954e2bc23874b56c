// LinkStats: per-link traffic counters for one FramedConnection, readable
// from a metrics thread while the link is busy.
//
// Thread safety: all methods are thread-safe (lock-free atomics). Each field
// is individually consistent; a Snapshot taken mid-frame may show bytes of a
// frame whose frame count has not been bumped yet.
#ifndef STELLA_SRC_NET_LINK_STATS_H_
#define STELLA_SRC_NET_LINK_STATS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace stella {
namespace net {

// A plain copy of the counters.
struct LinkStatsSnapshot {
  uint64_t bytes_sent = 0;      // wire bytes, framing overhead included
  uint64_t bytes_received = 0;  // wire bytes, framing overhead included
  uint64_t frames_sent = 0;
  uint64_t frames_received = 0;
  double goodput_bytes_per_s = 0;  // EWMA of payload bytes/s per flush; 0 until the first sample
};

class LinkStats {
 public:
  // Weight of the newest goodput sample. 0.2 smooths step-to-step jitter over
  // roughly the last five flushes while still following a bandwidth change
  // within a few steps. The first sample is taken as is.
  static constexpr double kGoodputAlpha = 0.2;

  void RecordFrameSent(size_t wire_bytes);
  void RecordFrameReceived(size_t wire_bytes);
  // One goodput sample: `payload_bytes` left this end in `seconds`. Ignored if
  // seconds <= 0 or payload_bytes == 0 (no information).
  void RecordGoodputSample(uint64_t payload_bytes, double seconds);

  LinkStatsSnapshot Snapshot() const;

 private:
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<uint64_t> frames_sent_{0};
  std::atomic<uint64_t> frames_received_{0};
  std::atomic<double> goodput_bytes_per_s_{0};
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_LINK_STATS_H_
