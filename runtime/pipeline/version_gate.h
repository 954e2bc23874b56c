// VersionGate: how far the parameter updates have come, and the wait that
// enforces bounded staleness. Version v means "the master parameters include
// the updates of steps 0 .. v-1". The communication thread publishes each new
// version; the compute thread, before the forward pass of step t, waits for
// version >= t - s (s = staleness), i.e. for the update of step t-1-s.
//
// The gate also carries the end of the stream: Finish (no version will follow,
// e.g. all workers agreed to stop) and Fail (the producer hit an error, which
// every waiter then receives), so a waiting compute thread never hangs on a
// dead communication thread.
//
// Thread safety: every member is thread-safe.
#ifndef STELLA_RUNTIME_PIPELINE_VERSION_GATE_H_
#define STELLA_RUNTIME_PIPELINE_VERSION_GATE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "src/base/status.h"

namespace stella::pipeline {

class VersionGate {
 public:
  struct Reached {
    int64_t version = 0;    // the version published when the wait ended
    bool finished = false;  // Finish was called: no later version will come
  };

  // Starts at `initial_version` (0: the initial parameters).
  explicit VersionGate(int64_t initial_version = 0) : version_(initial_version) {}
  VersionGate(const VersionGate&) = delete;
  VersionGate& operator=(const VersionGate&) = delete;

  // Publishes `version`, which must be larger than the current one (a broken
  // invariant otherwise), and wakes the waiters.
  void Publish(int64_t version);

  // No version after the current one will be published.
  void Finish();

  // The producer failed: every current and later wait returns `status`
  // (which must not be ok). The first failure wins.
  void Fail(const Status& status);

  // Blocks until version >= min_version, Finish, or Fail. The timeout is on
  // progress, not on the whole wait: DeadlineExceeded only when no new
  // version was published for `progress_timeout` — a wait may legitimately
  // span several steps, each bounded by the collective timeout.
  StatusOr<Reached> WaitAtLeast(int64_t min_version, std::chrono::milliseconds progress_timeout) const;

  int64_t version() const;
  bool finished() const;
  // Ok, or the status passed to the first Fail.
  Status status() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  int64_t version_;        // guarded by mu_
  bool finished_ = false;  // guarded by mu_
  Status error_;           // guarded by mu_; ok until Fail
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_VERSION_GATE_H_
