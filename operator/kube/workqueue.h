// WorkQueue: the controller work queue, with client-go semantics.
//
//  - Keys are de-duplicated: a key added while it waits in the queue is queued
//    once. A key being processed (between Get and Done) and added again is not
//    handed to a second worker; it is queued again when Done is called. So no
//    key is ever processed by two workers at once.
//  - AddAfter(key, d) queues the key once d has passed on the queue's clock
//    (an earlier pending deadline for the same key wins).
//  - AddRateLimited(key) = AddAfter(key, max(per-key backoff, global bucket)):
//    the per-key backoff is base_delay * 2^n (n = the key's requeues so far)
//    capped at max_delay; the global token bucket (qps, burst) bounds the
//    overall retry rate. Forget(key) resets the key's n (call it when the key
//    was processed successfully).
//  - Get blocks until a key is ready or the queue shuts down; keys already
//    queued are still handed out after ShutDown, then Get returns nullopt.
//
// Time is read from the injected Clock; one owned thread ("kube-wq-delay")
// moves delayed keys into the queue when due and is joined by ShutDown.
//
// Thread safety: all methods are thread-safe. One internal mutex; no callbacks
// run under it.
#ifndef STELLA_OPERATOR_KUBE_WORKQUEUE_H_
#define STELLA_OPERATOR_KUBE_WORKQUEUE_H_

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/status.h"

namespace stella {
class TokenBucket;
}

namespace stella::kube {

struct WorkQueueOptions {
  // The time source for delays and backoff; must outlive the queue. nullptr =
  // the system steady clock.
  const Clock* clock = nullptr;
  // Per-key exponential backoff of AddRateLimited. Defaults 5 ms .. 300 s.
  std::chrono::milliseconds base_delay{5};
  std::chrono::milliseconds max_delay{300000};
  // Global retry rate of AddRateLimited (token bucket). Defaults 50/s, burst 300.
  double qps = 50;
  double burst = 300;
  // Longest single real-time wait of the delay thread. With the system clock
  // it never matters (the thread wakes exactly when due); with a manually
  // advanced clock it bounds how late an advance is noticed. Default 1 s.
  std::chrono::milliseconds max_wait{1000};
};

class WorkQueue {
 public:
  static StatusOr<std::unique_ptr<WorkQueue>> Create(WorkQueueOptions options = {});
  ~WorkQueue();  // ShutDown()
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Add(const std::string& key);
  void AddAfter(const std::string& key, Clock::Duration delay);
  void AddRateLimited(const std::string& key);
  void Forget(const std::string& key);
  int NumRequeues(const std::string& key) const;

  // Blocks until a key is ready (and marks it processing) or the queue is shut
  // down and drained (nullopt).
  std::optional<std::string> Get();
  // Same, giving up after `timeout` (nullopt; check ShuttingDown()).
  std::optional<std::string> GetFor(std::chrono::milliseconds timeout);
  // Must follow every successful Get.
  void Done(const std::string& key);

  size_t Len() const;         // keys ready in the queue (the queue-depth metric)
  size_t NumWaiting() const;  // keys waiting for their AddAfter deadline
  void ShutDown();            // wakes every Get, stops accepting keys, joins the thread
  bool ShuttingDown() const;

 private:
  WorkQueue(WorkQueueOptions options, std::unique_ptr<TokenBucket> bucket);
  void AddLocked(const std::string& key) REQUIRES(mu_);
  std::optional<std::string> PopLocked() REQUIRES(mu_);
  void DelayLoop();

  const WorkQueueOptions options_;
  const Clock& clock_;                   // options_.clock or the system clock; outlives this
  std::unique_ptr<TokenBucket> bucket_;  // thread-safe on its own

  mutable Mutex mu_;
  CondVar ready_cv_;  // a key was queued, or shutdown
  CondVar delay_cv_;  // a new deadline, or shutdown
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::unordered_set<std::string> dirty_ GUARDED_BY(mu_);  // needs processing
  std::unordered_set<std::string> processing_ GUARDED_BY(mu_);
  std::multimap<Clock::TimePoint, std::string> waiting_ GUARDED_BY(mu_);  // by deadline
  std::unordered_map<std::string, Clock::TimePoint> waiting_at_ GUARDED_BY(mu_);
  std::unordered_map<std::string, int> failures_ GUARDED_BY(mu_);
  bool shutting_down_ GUARDED_BY(mu_) = false;
  std::thread delay_thread_;
};

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_WORKQUEUE_H_
