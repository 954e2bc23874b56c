// FramedConnection: the user-facing end of a gateway link. Sends and receives
// checksummed frames (src/net/frame.h) over any Stream (TCP, shaped, TLS,
// in-memory) and keeps LinkStats for metrics.
//
// Goodput: payload bytes sent since the previous Flush, divided by the time
// from the first of those Sends to the end of the Flush, is fed to the
// LinkStats EWMA once per successful Flush. Flushing once per training step
// thus yields one sample per step. Sends never followed by a Flush give no
// goodput sample (a buffered write's return says nothing about the link).
//
// Thread safety: Send/Flush may be called from several threads (serialized
// internally, frames never interleave); Receive likewise; one sending and one
// receiving thread run concurrently. stats() and Shutdown() from any thread.
// After a send-side error (other than kInvalidArgument, which writes nothing)
// every later Send/Flush fails, since the peer's byte stream may be mid-frame.
// After a receive-side error every later Receive fails, except a
// kDeadlineExceeded that arrived before any byte of the next frame: polling
// Receive with short deadlines is supported.
#ifndef STELLA_SRC_NET_FRAMED_CONNECTION_H_
#define STELLA_SRC_NET_FRAMED_CONNECTION_H_

#include <memory>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/net/frame.h"
#include "src/net/link_stats.h"
#include "src/net/stream.h"

namespace stella {
namespace net {

class FramedConnection {
 public:
  struct Options {
    // Payload size limit for both directions. Default: FrameLimits{} (256 MiB).
    FrameLimits limits;
  };

  // Takes ownership of `stream` (must not be null).
  explicit FramedConnection(std::unique_ptr<Stream> stream, const Options& options = {});
  ~FramedConnection();
  FramedConnection(const FramedConnection&) = delete;
  FramedConnection& operator=(const FramedConnection&) = delete;

  Status Send(FrameType type, uint32_t tag, const void* payload, size_t n, Clock::TimePoint deadline);
  StatusOr<Frame> Receive(Clock::TimePoint deadline);
  // Waits until sent frames left this process's buffers (see Stream::Flush)
  // and records a goodput sample.
  Status Flush(Clock::TimePoint deadline);
  // Shuts the stream down; blocked and later calls return errors promptly.
  void Shutdown();

  const LinkStats& stats() const { return stats_; }
  // The underlying stream, e.g. to reach a ShapedStream's SetRateBitsPerSec
  // through a pointer kept before handing it over. Owned by this object.
  Stream& stream() { return *stream_; }

 private:
  const Options options_;
  const std::unique_ptr<Stream> stream_;
  LinkStats stats_;

  Mutex send_mu_;                           // serializes Send/Flush; taken before stream calls
  Status send_error_ GUARDED_BY(send_mu_);  // sticky
  uint64_t unflushed_payload_bytes_ GUARDED_BY(send_mu_) = 0;
  Clock::TimePoint unflushed_since_ GUARDED_BY(send_mu_);  // valid if bytes > 0

  Mutex recv_mu_;                           // serializes Receive
  Status recv_error_ GUARDED_BY(recv_mu_);  // sticky
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_FRAMED_CONNECTION_H_
