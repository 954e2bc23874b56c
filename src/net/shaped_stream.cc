#include "src/net/shaped_stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace stella {
namespace net {
namespace {

// Small writes that arrive within this window of a queued, not yet full
// chunk are appended to it: many tiny frames then cost one pacing step and
// one inner write instead of one each. The chunk's release moves to the
// newest byte's, so no byte is early and the first one is late by <= 1 ms.
constexpr Clock::Duration kCoalesceWindow = std::chrono::milliseconds(1);

constexpr size_t kMinAutoBurst = 16 * 1024;
constexpr double kAutoBurstSeconds = 0.005;

double AutoBurst(double rate_bytes_per_s) {
  return std::max<double>(kMinAutoBurst, rate_bytes_per_s * kAutoBurstSeconds);
}

Status ValidateBits(double bits_per_s) {
  if (!std::isfinite(bits_per_s) || bits_per_s < 0) {
    return InvalidArgumentError("ShapedStream: rate_bits_per_s must be finite and >= 0, got " +
                                std::to_string(bits_per_s));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<ShapedStream>> ShapedStream::Create(std::unique_ptr<Stream> inner, const Options& options) {
  if (inner == nullptr) return InvalidArgumentError("ShapedStream: inner stream is null");
  STELLA_RETURN_IF_ERROR(ValidateBits(options.rate_bits_per_s));
  if (options.latency < Clock::Duration::zero()) {
    return InvalidArgumentError("ShapedStream: latency must be >= 0, got " + std::to_string(options.latency.count()) +
                                " ns");
  }
  if (options.chunk_bytes == 0) {
    return InvalidArgumentError("ShapedStream: chunk_bytes must be > 0");
  }
  if (options.inner_write_timeout <= Clock::Duration::zero()) {
    return InvalidArgumentError("ShapedStream: inner_write_timeout must be > 0, got " +
                                std::to_string(options.inner_write_timeout.count()) + " ns");
  }
  const double rate = options.rate_bits_per_s / 8;
  TokenBucket::Options bucket_options;
  bucket_options.rate_bytes_per_s = rate;
  bucket_options.burst_bytes = options.burst_bytes > 0 ? static_cast<double>(options.burst_bytes) : AutoBurst(rate);
  STELLA_ASSIGN_OR_RETURN(std::unique_ptr<TokenBucket> bucket, TokenBucket::Create(bucket_options, SystemClock::Get()));
  return std::unique_ptr<ShapedStream>(new ShapedStream(std::move(inner), options, std::move(bucket)));
}

ShapedStream::ShapedStream(std::unique_ptr<Stream> inner, const Options& options, std::unique_ptr<TokenBucket> bucket)
    : options_(options),
      inner_(std::move(inner)),
      bucket_(std::move(bucket)),
      rate_bytes_per_s_(options.rate_bits_per_s / 8) {
  sender_ = std::thread([this] { SenderLoop(); });
}

ShapedStream::~ShapedStream() {
  Shutdown();
  sender_.join();
}

void ShapedStream::Shutdown() {
  {
    MutexLock lock(&mu_);
    shut_down_ = true;
  }
  sender_cv_.SignalAll();
  writers_cv_.SignalAll();
  inner_->Shutdown();  // unblocks a delivery or a read in progress
}

size_t ShapedStream::QueueLimitLocked() const {
  const double bdp = rate_bytes_per_s_ * std::chrono::duration<double>(options_.latency).count();
  return options_.queue_headroom_bytes + static_cast<size_t>(bdp);
}

size_t ShapedStream::queue_limit_bytes() const {
  MutexLock lock(&mu_);
  return QueueLimitLocked();
}

size_t ShapedStream::queued_bytes() const {
  MutexLock lock(&mu_);
  return queued_bytes_;
}

Status ShapedStream::SetRateBitsPerSec(double bits_per_s) {
  STELLA_RETURN_IF_ERROR(ValidateBits(bits_per_s));
  const double rate = bits_per_s / 8;
  {
    MutexLock lock(&mu_);
    if (options_.burst_bytes > 0) {
      STELLA_RETURN_IF_ERROR(bucket_->SetRate(rate));
    } else {
      STELLA_RETURN_IF_ERROR(bucket_->SetRate(rate, AutoBurst(rate)));
    }
    rate_bytes_per_s_ = rate;
  }
  writers_cv_.SignalAll();  // the queue bound changed
  return Status::Ok();
}

Status ShapedStream::WriteAll(const void* data, size_t n, Clock::TimePoint deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  MutexLock lock(&mu_);
  while (true) {
    if (!error_.ok()) return error_;
    if (shut_down_) {
      return CancelledError("ShapedStream: write cancelled by Shutdown after " + std::to_string(done) + " of " +
                            std::to_string(n) + " bytes");
    }
    if (done == n) return Status::Ok();
    if (queued_bytes_ > QueueLimitLocked()) {
      if (!writers_cv_.WaitUntil(&mu_, deadline) && !shut_down_ && error_.ok() && queued_bytes_ > QueueLimitLocked()) {
        return DeadlineExceededError("ShapedStream: write deadline exceeded with the emulated link full (" +
                                     std::to_string(queued_bytes_) + " bytes queued, limit " +
                                     std::to_string(QueueLimitLocked()) + ") after queueing " + std::to_string(done) +
                                     " of " + std::to_string(n) + " bytes");
      }
      continue;
    }
    const Clock::TimePoint release = std::chrono::steady_clock::now() + options_.latency;
    bool appended = false;
    if (!queue_.empty()) {
      Chunk& back = queue_.back();
      const size_t room = options_.chunk_bytes - std::min(options_.chunk_bytes, back.data.size());
      if (room > 0 && release - back.first_release <= kCoalesceWindow) {
        const size_t k = std::min(room, n - done);
        back.data.insert(back.data.end(), p + done, p + done + k);
        back.release = release;
        done += k;
        queued_bytes_ += k;
        appended = true;
      }
    }
    if (!appended) {
      const size_t k = std::min(options_.chunk_bytes, n - done);
      Chunk chunk;
      chunk.data.assign(p + done, p + done + k);
      chunk.release = release;
      chunk.first_release = release;
      queue_.push_back(std::move(chunk));
      done += k;
      queued_bytes_ += k;
      sender_cv_.Signal();
    }
  }
}

Status ShapedStream::ReadAll(void* data, size_t n, Clock::TimePoint deadline) {
  return inner_->ReadAll(data, n, deadline);
}

StatusOr<size_t> ShapedStream::ReadSome(void* data, size_t max, Clock::TimePoint deadline) {
  return inner_->ReadSome(data, max, deadline);
}

Status ShapedStream::Flush(Clock::TimePoint deadline) {
  {
    MutexLock lock(&mu_);
    bool waiting = true;
    while (waiting && !shut_down_ && error_.ok() && queued_bytes_ != 0) {
      waiting = writers_cv_.WaitUntil(&mu_, deadline);
    }
    if (!error_.ok()) return error_;
    if (shut_down_) return CancelledError("ShapedStream: flush cancelled by Shutdown");
    if (queued_bytes_ != 0) {
      return DeadlineExceededError("ShapedStream: flush deadline exceeded with " + std::to_string(queued_bytes_) +
                                   " bytes still queued");
    }
  }
  return inner_->Flush(deadline);
}

void ShapedStream::SenderLoop() {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "stella-shaper");
#endif
  MutexLock lock(&mu_);
  while (DeliverNextLocked()) {
  }
}

bool ShapedStream::DeliverNextLocked() {
  while (!shut_down_ && queue_.empty()) sender_cv_.Wait(&mu_);
  if (shut_down_) return false;
  // Emulated propagation delay. The front chunk may still grow (coalescing)
  // and push its release later, so re-read it after every wake-up.
  const Clock::TimePoint release = queue_.front().release;
  if (std::chrono::steady_clock::now() < release) {
    sender_cv_.WaitUntil(&mu_, release);
    return true;
  }
  Chunk chunk = std::move(queue_.front());
  queue_.pop_front();  // queued_bytes_ keeps counting it until delivered
  mu_.Unlock();

  // Emulated bandwidth.
  const Clock::Duration wait = bucket_->Reserve(chunk.data.size());
  if (wait > Clock::Duration::zero()) {
    const Clock::TimePoint until = std::chrono::steady_clock::now() + wait;
    mu_.Lock();
    while (!shut_down_ && sender_cv_.WaitUntil(&mu_, until)) {
    }
    if (shut_down_) return false;
    mu_.Unlock();
  }
  const Status s = inner_->WriteAll(chunk.data.data(), chunk.data.size(),
                                    std::chrono::steady_clock::now() + options_.inner_write_timeout);

  mu_.Lock();
  queued_bytes_ -= chunk.data.size();
  writers_cv_.SignalAll();
  if (s.ok()) return true;
  if (!shut_down_) {
    error_ = s.WithContext("ShapedStream: delivering to the inner stream");
    // Nothing after a failed write can be delivered in order: drop it.
    for (const Chunk& c : queue_) queued_bytes_ -= c.data.size();
    queue_.clear();
  }
  return false;
}

}  // namespace net
}  // namespace stella
