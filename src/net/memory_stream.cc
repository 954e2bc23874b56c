#include "src/net/memory_stream.h"

#include <algorithm>
#include <deque>
#include <string>

#include "src/base/mutex.h"
#include "src/base/status.h"

namespace stella {
namespace net {
namespace {

// One direction of the pair. Shared by the writing end and the reading end
// (shared_ptr: either end may be destroyed first).
struct Pipe {
  explicit Pipe(size_t capacity) : capacity(capacity) {}
  const size_t capacity;
  Mutex mu;
  CondVar cv;  // signalled on every state change
  std::deque<uint8_t> bytes GUARDED_BY(mu);
  bool writer_closed GUARDED_BY(mu) = false;  // reader drains, then sees EOF
  bool reader_closed GUARDED_BY(mu) = false;  // writer fails at once
};

class MemoryStream final : public Stream {
 public:
  MemoryStream(std::shared_ptr<Pipe> in, std::shared_ptr<Pipe> out) : in_(std::move(in)), out_(std::move(out)) {}
  ~MemoryStream() override { Shutdown(); }

  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override {
    const auto* p = static_cast<const uint8_t*>(data);
    size_t done = 0;
    MutexLock lock(&out_->mu);
    while (done < n) {
      if (out_->writer_closed) {  // only our own Shutdown sets this
        return CancelledError("memory stream: write cancelled by Shutdown after " + std::to_string(done) + " of " +
                              std::to_string(n) + " bytes");
      }
      if (out_->reader_closed) {
        return UnavailableError("memory stream: peer closed connection after " + std::to_string(done) + " of " +
                                std::to_string(n) + " bytes written");
      }
      const size_t room = out_->capacity - std::min(out_->capacity, out_->bytes.size());
      if (room == 0) {
        if (!out_->cv.WaitUntil(&out_->mu, deadline) && out_->bytes.size() >= out_->capacity && !out_->writer_closed &&
            !out_->reader_closed) {
          return DeadlineExceededError("memory stream: write deadline exceeded after " + std::to_string(done) + " of " +
                                       std::to_string(n) + " bytes (buffer full)");
        }
        continue;
      }
      const size_t k = std::min(room, n - done);
      out_->bytes.insert(out_->bytes.end(), p + done, p + done + k);
      done += k;
      out_->cv.SignalAll();
    }
    return Status::Ok();
  }

  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override {
    size_t done = 0;
    return Read(static_cast<uint8_t*>(data), n, /*all=*/true, deadline, &done);
  }

  StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) override {
    if (max == 0) return InvalidArgumentError("memory stream: ReadSome: max must be > 0");
    size_t done = 0;
    STELLA_RETURN_IF_ERROR(Read(static_cast<uint8_t*>(data), max, /*all=*/false, deadline, &done));
    return done;
  }

  void Shutdown() override {
    for (Pipe* pipe : {in_.get(), out_.get()}) {
      MutexLock lock(&pipe->mu);
      if (pipe == in_.get()) pipe->reader_closed = true;
      if (pipe == out_.get()) pipe->writer_closed = true;
      pipe->cv.SignalAll();
    }
  }

 private:
  // Reads into p[0, n): until n bytes (all) or until at least one (!all).
  Status Read(uint8_t* p, size_t n, bool all, Clock::TimePoint deadline, size_t* done_out) {
    size_t& done = *done_out;
    MutexLock lock(&in_->mu);
    while (done < n) {
      if (in_->reader_closed) {  // only our own Shutdown sets this
        return CancelledError("memory stream: read cancelled by Shutdown after " + std::to_string(done) + " of " +
                              std::to_string(n) + " bytes");
      }
      if (in_->bytes.empty()) {
        if (in_->writer_closed) {
          return UnavailableError("memory stream: peer closed connection after " + std::to_string(done) + " of " +
                                  std::to_string(n) + " bytes");
        }
        if (!in_->cv.WaitUntil(&in_->mu, deadline) && in_->bytes.empty() && !in_->writer_closed &&
            !in_->reader_closed) {
          return DeadlineExceededError("memory stream: read deadline exceeded after " + std::to_string(done) + " of " +
                                       std::to_string(n) + " bytes");
        }
        continue;
      }
      const size_t k = std::min(in_->bytes.size(), n - done);
      std::copy_n(in_->bytes.begin(), k, p + done);
      in_->bytes.erase(in_->bytes.begin(), in_->bytes.begin() + static_cast<std::ptrdiff_t>(k));
      done += k;
      in_->cv.SignalAll();
      if (!all) break;
    }
    return Status::Ok();
  }

  const std::shared_ptr<Pipe> in_;
  const std::shared_ptr<Pipe> out_;
};

}  // namespace

std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> CreateMemoryStreamPair(const MemoryStreamOptions& options) {
  STELLA_CHECK(options.capacity_bytes > 0);
  auto a_to_b = std::make_shared<Pipe>(options.capacity_bytes);
  auto b_to_a = std::make_shared<Pipe>(options.capacity_bytes);
  return {std::make_unique<MemoryStream>(b_to_a, a_to_b), std::make_unique<MemoryStream>(a_to_b, b_to_a)};
}

}  // namespace net
}  // namespace stella
