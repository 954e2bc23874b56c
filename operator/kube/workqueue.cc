#include "operator/kube/workqueue.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>

#include "src/base/token_bucket.h"

namespace stella::kube {

StatusOr<std::unique_ptr<WorkQueue>> WorkQueue::Create(WorkQueueOptions options) {
  if (options.base_delay <= std::chrono::milliseconds::zero() || options.max_delay < options.base_delay) {
    return InvalidArgumentError("work queue: need 0 < base_delay <= max_delay, got " +
                                std::to_string(options.base_delay.count()) + " ms and " +
                                std::to_string(options.max_delay.count()) + " ms");
  }
  if (options.max_wait <= std::chrono::milliseconds::zero()) {
    return InvalidArgumentError("work queue: max_wait must be > 0");
  }
  const Clock& clock = options.clock ? *options.clock : SystemClock::Get();
  StatusOr<std::unique_ptr<TokenBucket>> bucket = TokenBucket::Create({options.qps, options.burst}, clock);
  if (!bucket.ok()) return bucket.status().WithContext("work queue: qps/burst");
  return std::unique_ptr<WorkQueue>(new WorkQueue(options, std::move(*bucket)));
}

WorkQueue::WorkQueue(WorkQueueOptions options, std::unique_ptr<TokenBucket> bucket)
    : options_(options), clock_(options.clock ? *options.clock : SystemClock::Get()), bucket_(std::move(bucket)) {
  delay_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kube-wq-delay");
    DelayLoop();
  });
}

WorkQueue::~WorkQueue() { ShutDown(); }

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_ || dirty_.count(key)) return;
  dirty_.insert(key);
  if (processing_.count(key)) return;  // re-queued by Done
  queue_.push_back(key);
  ready_cv_.Signal();
}

void WorkQueue::Add(const std::string& key) {
  MutexLock lock(&mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, Clock::Duration delay) {
  MutexLock lock(&mu_);
  if (shutting_down_) return;
  if (delay <= Clock::Duration::zero()) {
    AddLocked(key);
    return;
  }
  const Clock::TimePoint at = clock_.Now() + delay;
  auto it = waiting_at_.find(key);
  if (it != waiting_at_.end()) {
    if (it->second <= at) return;  // the earlier deadline wins
    auto range = waiting_.equal_range(it->second);
    for (auto w = range.first; w != range.second; ++w) {
      if (w->second == key) {
        waiting_.erase(w);
        break;
      }
    }
  }
  waiting_.emplace(at, key);
  waiting_at_[key] = at;
  delay_cv_.Signal();
}

void WorkQueue::AddRateLimited(const std::string& key) {
  Clock::Duration item;
  {
    MutexLock lock(&mu_);
    const int n = failures_[key]++;
    const double ms = std::min(static_cast<double>(options_.base_delay.count()) * std::pow(2.0, n),
                               static_cast<double>(options_.max_delay.count()));
    item = std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double, std::milli>(ms));
  }
  const Clock::Duration global = bucket_->Reserve(1);
  AddAfter(key, std::max(item, global));
}

void WorkQueue::Forget(const std::string& key) {
  MutexLock lock(&mu_);
  failures_.erase(key);
}

int WorkQueue::NumRequeues(const std::string& key) const {
  MutexLock lock(&mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

std::optional<std::string> WorkQueue::PopLocked() {
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return key;
}

std::optional<std::string> WorkQueue::Get() {
  MutexLock lock(&mu_);
  while (queue_.empty() && !shutting_down_) ready_cv_.Wait(&mu_);
  if (queue_.empty()) return std::nullopt;
  return PopLocked();
}

std::optional<std::string> WorkQueue::GetFor(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (queue_.empty() && !shutting_down_ && ready_cv_.WaitUntil(&mu_, deadline)) {
  }
  if (queue_.empty()) return std::nullopt;
  return PopLocked();
}

void WorkQueue::Done(const std::string& key) {
  MutexLock lock(&mu_);
  processing_.erase(key);
  if (dirty_.count(key)) {
    queue_.push_back(key);
    ready_cv_.Signal();
  }
}

size_t WorkQueue::Len() const {
  MutexLock lock(&mu_);
  return queue_.size();
}

size_t WorkQueue::NumWaiting() const {
  MutexLock lock(&mu_);
  return waiting_.size();
}

void WorkQueue::ShutDown() {
  {
    MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  ready_cv_.SignalAll();
  delay_cv_.SignalAll();
  if (delay_thread_.joinable() && delay_thread_.get_id() != std::this_thread::get_id()) {
    delay_thread_.join();
  }
}

bool WorkQueue::ShuttingDown() const {
  MutexLock lock(&mu_);
  return shutting_down_;
}

void WorkQueue::DelayLoop() {
  MutexLock lock(&mu_);
  while (!shutting_down_) {
    const Clock::TimePoint now = clock_.Now();
    while (!waiting_.empty() && waiting_.begin()->first <= now) {
      const std::string key = waiting_.begin()->second;
      waiting_.erase(waiting_.begin());
      waiting_at_.erase(key);
      AddLocked(key);
    }
    if (waiting_.empty()) {
      delay_cv_.Wait(&mu_);
    } else {
      // Clock time until due, slept in real time; capped so that a manually
      // advanced clock is noticed.
      const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(waiting_.begin()->first - now) +
                       std::chrono::milliseconds(1);
      delay_cv_.WaitFor(&mu_, std::min(due, options_.max_wait));
    }
  }
}

}  // namespace stella::kube
