#include "src/net/framed_connection.h"

#include <chrono>

namespace stella {
namespace net {

FramedConnection::FramedConnection(std::unique_ptr<Stream> stream, const Options& options)
    : options_(options), stream_(std::move(stream)) {
  STELLA_CHECK(stream_ != nullptr);
}

FramedConnection::~FramedConnection() = default;

Status FramedConnection::Send(FrameType type, uint32_t tag, const void* payload, size_t n, Clock::TimePoint deadline) {
  MutexLock lock(&send_mu_);
  if (!send_error_.ok()) {
    return FailedPreconditionError("connection unusable after an earlier send error: " + send_error_.ToString());
  }
  const auto start = std::chrono::steady_clock::now();
  Status s = WriteFrame(*stream_, type, tag, payload, n, deadline, options_.limits);
  if (!s.ok()) {
    // Argument errors are caught before any byte is written; the stream is
    // still aligned on a frame boundary then.
    if (s.code() != StatusCode::kInvalidArgument) send_error_ = s;
    return s;
  }
  stats_.RecordFrameSent(kFrameOverheadBytes + n);
  if (unflushed_payload_bytes_ == 0) unflushed_since_ = start;
  unflushed_payload_bytes_ += n;
  return Status::Ok();
}

Status FramedConnection::Flush(Clock::TimePoint deadline) {
  MutexLock lock(&send_mu_);
  if (!send_error_.ok()) {
    return FailedPreconditionError("connection unusable after an earlier send error: " + send_error_.ToString());
  }
  Status s = stream_->Flush(deadline);
  if (!s.ok()) {
    send_error_ = s;
    return s;
  }
  if (unflushed_payload_bytes_ > 0) {
    stats_.RecordGoodputSample(
        unflushed_payload_bytes_,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - unflushed_since_).count());
    unflushed_payload_bytes_ = 0;
  }
  return Status::Ok();
}

StatusOr<Frame> FramedConnection::Receive(Clock::TimePoint deadline) {
  MutexLock lock(&recv_mu_);
  if (!recv_error_.ok()) {
    return FailedPreconditionError("connection unusable after an earlier receive error: " + recv_error_.ToString());
  }
  bool started = false;
  StatusOr<Frame> frame = ReadFrame(*stream_, options_.limits, deadline, &started);
  if (!frame.ok()) {
    // A deadline that passed before the first byte leaves the stream aligned
    // on a frame boundary: polling Receive with short deadlines is fine.
    const bool aligned = !started && frame.status().code() == StatusCode::kDeadlineExceeded;
    if (!aligned) recv_error_ = frame.status();
    return frame.status();
  }
  stats_.RecordFrameReceived(kFrameOverheadBytes + frame->payload.size());
  return frame;
}

void FramedConnection::Shutdown() { stream_->Shutdown(); }

}  // namespace net
}  // namespace stella
