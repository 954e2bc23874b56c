#include "src/net/link_stats.h"

namespace stella {
namespace net {

void LinkStats::RecordFrameSent(size_t wire_bytes) {
  bytes_sent_.fetch_add(wire_bytes, std::memory_order_relaxed);
  frames_sent_.fetch_add(1, std::memory_order_relaxed);
}

void LinkStats::RecordFrameReceived(size_t wire_bytes) {
  bytes_received_.fetch_add(wire_bytes, std::memory_order_relaxed);
  frames_received_.fetch_add(1, std::memory_order_relaxed);
}

void LinkStats::RecordGoodputSample(uint64_t payload_bytes, double seconds) {
  if (!(seconds > 0) || payload_bytes == 0) return;
  const double sample = static_cast<double>(payload_bytes) / seconds;
  double old = goodput_bytes_per_s_.load(std::memory_order_relaxed);
  double updated;
  do {
    updated = (old == 0) ? sample : kGoodputAlpha * sample + (1 - kGoodputAlpha) * old;
  } while (!goodput_bytes_per_s_.compare_exchange_weak(old, updated, std::memory_order_relaxed));
}

LinkStatsSnapshot LinkStats::Snapshot() const {
  LinkStatsSnapshot s;
  s.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  s.frames_sent = frames_sent_.load(std::memory_order_relaxed);
  s.frames_received = frames_received_.load(std::memory_order_relaxed);
  s.goodput_bytes_per_s = goodput_bytes_per_s_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace net
}  // namespace stella
