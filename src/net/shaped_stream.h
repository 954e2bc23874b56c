// ShapedStream: a Stream decorator that makes a fast link behave like a WAN
// link of a given bandwidth and one-way latency, on the sending side.
//
// WriteAll splits data into chunks (<= Options.chunk_bytes) and queues them
// with release time = enqueue time + latency, then returns, like a kernel
// socket buffer. An owned sender thread delivers each chunk to the inner
// stream no earlier than its release time and no faster than the token
// bucket allows. The queue is bounded (bandwidth x latency + headroom), so
// WriteAll blocks, up to its deadline, when the emulated link is full.
// Errors of the inner stream are sticky and surface on the next
// WriteAll/Flush. Reads pass through unshaped: each end shapes its egress.
//
// Thread safety: follows the Stream contract (one reader and one writer
// concurrently, Shutdown from any thread); SetRateBitsPerSec, queued_bytes and
// queue_limit_bytes may be called from any thread. Lock order: mu_, then the
// token bucket's internal mutex.
#ifndef STELLA_SRC_NET_SHAPED_STREAM_H_
#define STELLA_SRC_NET_SHAPED_STREAM_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/base/token_bucket.h"
#include "src/net/stream.h"

namespace stella {
namespace net {

class ShapedStream final : public Stream {
 public:
  struct Options {
    // Emulated bandwidth in bits per second; 0 = unlimited. Default 0.
    double rate_bits_per_s = 0;
    // Emulated one-way latency added to every byte. Default 0.
    Clock::Duration latency = Clock::Duration::zero();
    // Token-bucket depth. 0 = automatic: max(16 KiB, 5 ms worth of bytes at
    // the current rate), recomputed on SetRateBitsPerSec; 5 ms absorbs the
    // sender thread's wake-up jitter without letting bursts distort the rate.
    // Default 0.
    size_t burst_bytes = 0;
    // Largest chunk paced and delivered as one unit. Default 16 KiB.
    size_t chunk_bytes = 16 * 1024;
    // Queue bound beyond the bandwidth-delay product (rate x latency): WriteAll
    // blocks while more than rate*latency + queue_headroom_bytes are queued.
    // With an unlimited rate this alone bounds the queue. Default 1 MiB.
    size_t queue_headroom_bytes = 1 << 20;
    // Deadline for each delivery of a chunk to the inner stream (a peer that
    // stops reading for this long fails the link). Default 60 s.
    Clock::Duration inner_write_timeout = std::chrono::seconds(60);
  };

  // Takes ownership of `inner` and starts the sender thread.
  static StatusOr<std::unique_ptr<ShapedStream>> Create(std::unique_ptr<Stream> inner, const Options& options);

  // Shuts down (queued, undelivered bytes are dropped: Flush first to keep
  // them) and joins the sender thread.
  ~ShapedStream() override;
  ShapedStream(const ShapedStream&) = delete;
  ShapedStream& operator=(const ShapedStream&) = delete;

  // Queues data; blocks only while the queue is over its bound. On
  // kDeadlineExceeded a prefix of the data may have been queued.
  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override;
  // Reads from the inner stream directly.
  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override;
  StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) override;
  // Waits until every queued byte was written to the inner stream, then
  // flushes the inner stream.
  Status Flush(Clock::TimePoint deadline) override;
  // Stops the sender thread promptly (dropping queued bytes), wakes blocked
  // writers and flushers, and shuts down the inner stream.
  void Shutdown() override;

  // Changes the emulated bandwidth from now on (0 = unlimited). A chunk whose
  // pacing wait already started keeps its wait.
  Status SetRateBitsPerSec(double bits_per_s);

  // Bytes accepted by WriteAll and not yet written to the inner stream.
  size_t queued_bytes() const;
  // The current queue bound: rate * latency + queue_headroom_bytes.
  size_t queue_limit_bytes() const;

 private:
  struct Chunk {
    std::vector<uint8_t> data;
    Clock::TimePoint release;        // not delivered before this
    Clock::TimePoint first_release;  // release of the chunk's first byte
  };

  ShapedStream(std::unique_ptr<Stream> inner, const Options& options, std::unique_ptr<TokenBucket> bucket);
  void SenderLoop();
  // Waits for the front chunk's release and delivers it (mu_ is released
  // while pacing and writing). False when the sender should stop.
  bool DeliverNextLocked() REQUIRES(mu_);
  size_t QueueLimitLocked() const REQUIRES(mu_);

  const Options options_;
  // Owned; written only by the sender thread (and read by ReadAll callers),
  // destroyed after the sender thread is joined.
  const std::unique_ptr<Stream> inner_;
  const std::unique_ptr<TokenBucket> bucket_;  // thread-safe on its own

  mutable Mutex mu_;
  CondVar sender_cv_;   // queue non-empty, or shutdown
  CondVar writers_cv_;  // bytes delivered, error, rate change, or shutdown
  std::deque<Chunk> queue_ GUARDED_BY(mu_);
  size_t queued_bytes_ GUARDED_BY(mu_) = 0;  // includes the chunk in flight
  double rate_bytes_per_s_ GUARDED_BY(mu_) = 0;
  Status error_ GUARDED_BY(mu_);  // first inner write error, sticky
  bool shut_down_ GUARDED_BY(mu_) = false;

  std::thread sender_;  // started last in the constructor, joined in the destructor
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_SHAPED_STREAM_H_
