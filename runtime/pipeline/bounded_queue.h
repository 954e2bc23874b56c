// BoundedQueue: a fixed-capacity FIFO between two threads (the compute thread
// produces step gradients, the communication thread consumes them). A full
// queue blocks the producer, so a slow link pushes back on compute instead of
// piling up gradients in memory (the prototype's queues were unbounded).
//
// Thread safety: every member is thread-safe.
#ifndef STELLA_RUNTIME_PIPELINE_BOUNDED_QUEUE_H_
#define STELLA_RUNTIME_PIPELINE_BOUNDED_QUEUE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <utility>

#include "src/base/status.h"

namespace stella::pipeline {

template <typename T>
class BoundedQueue {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // capacity >= 1.
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) { STELLA_CHECK(capacity_ >= 1); }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Appends `item`, waiting while the queue is full. Cancelled once the queue
  // is closed (the item is dropped); DeadlineExceeded if still full at
  // `deadline`.
  Status Push(T item, TimePoint deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!not_full_.wait_until(lock, deadline, [&] { return closed_ || items_.size() < capacity_; })) {
      return DeadlineExceededError("queue still full (capacity " + std::to_string(capacity_) +
                                   ") at the deadline");
    }
    if (closed_) return CancelledError("queue is closed");
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return Status::Ok();
  }

  // Takes the oldest item, waiting while the queue is empty and open. After
  // Close, the items already queued are still returned, then Cancelled;
  // DeadlineExceeded if nothing arrived by `deadline`.
  StatusOr<T> Pop(TimePoint deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!not_empty_.wait_until(lock, deadline, [&] { return closed_ || !items_.empty(); })) {
      return DeadlineExceededError("queue empty at the deadline");
    }
    if (items_.empty()) return CancelledError("queue is closed");
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

  // Refuses further Pushes and wakes every waiter. With discard, the queued
  // items are dropped too (an error or an agreed stop makes them useless).
  void Close(bool discard) {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    if (discard) items_.clear();
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;  // guarded by mu_
  bool closed_ = false;  // guarded by mu_
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_BOUNDED_QUEUE_H_
