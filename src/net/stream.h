// Stream: an abstract, reliable, ordered byte stream with deadlines.
//
// This is the seam between framing and the wire: TCP implements it today
// (src/net/tcp.h), an in-memory pipe implements it for tests
// (src/net/memory_stream.h), ShapedStream decorates any Stream with a rate
// limit and latency (src/net/shaped_stream.h), and mutual TLS wraps a Stream
// the same way without the framing layer noticing (src/net/tls_stream.h).
//
// Thread safety (contract for every implementation): one thread may call
// ReadAll while another calls WriteAll/Flush; Shutdown may be called from any
// thread at any time. Two concurrent readers (or two concurrent writers) are
// not supported. After a ReadAll/WriteAll error the byte position is unknown
// and the stream must be abandoned.
#ifndef STELLA_SRC_NET_STREAM_H_
#define STELLA_SRC_NET_STREAM_H_

#include <cstddef>

#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella {
namespace net {

class Stream {
 public:
  virtual ~Stream() = default;

  // Writes all n bytes or fails. Returns kDeadlineExceeded if the deadline
  // passes first, kUnavailable if the peer went away, kCancelled after
  // Shutdown. Returning ok may mean "handed to a buffer" (like a kernel socket
  // buffer); Flush waits until buffered bytes left this layer.
  virtual Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) = 0;

  // Reads exactly n bytes or fails. kUnavailable with "peer closed connection
  // after X of Y bytes" if the peer closes first; kDeadlineExceeded;
  // kCancelled after Shutdown.
  virtual Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) = 0;

  // Reads at least 1 and at most `max` bytes (max > 0) and returns how many:
  // what has arrived, without waiting for more. Errors as for ReadAll; a
  // kDeadlineExceeded consumes nothing, so the caller may simply call again.
  // Pure virtual on purpose: a decorator that forgot it once fell back to
  // one-byte reads and cut the TLS WAN path to a sixth of link speed.
  virtual StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) = 0;

  // Waits until every byte accepted by WriteAll was handed to the layer below
  // (the kernel, for TCP). Unbuffered streams return ok at once.
  virtual Status Flush(Clock::TimePoint deadline) { return Status::Ok(); }

  // Ends the stream in both directions and makes blocked and future
  // ReadAll/WriteAll/Flush calls on this object return kCancelled promptly.
  // Idempotent.
  virtual void Shutdown() = 0;

  // The transport's own estimate of the rate at which the peer receives our
  // bytes (bytes/s), or 0 when the stream has none. For TCP this is the
  // kernel's delivery rate (TCP_INFO), the only honest measure when the
  // bottleneck is in the network: write times only say how fast the kernel's
  // send buffer filled. 0 also when the latest sample is not a path
  // measurement (TCP: application-limited). Safe to call from any thread.
  virtual double DeliveryRateBytesPerSecond() const { return 0; }
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_STREAM_H_
