#include "runtime/pipeline/version_gate.h"

#include <string>

namespace stella::pipeline {

void VersionGate::Publish(int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  STELLA_CHECK(version > version_);
  STELLA_CHECK(!finished_);
  version_ = version;
  changed_.notify_all();
}

void VersionGate::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  changed_.notify_all();
}

void VersionGate::Fail(const Status& status) {
  STELLA_CHECK(!status.ok());
  std::lock_guard<std::mutex> lock(mu_);
  if (error_.ok()) error_ = status;
  changed_.notify_all();
}

StatusOr<VersionGate::Reached> VersionGate::WaitAtLeast(int64_t min_version,
                                                        std::chrono::milliseconds progress_timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!error_.ok()) return error_;
    if (version_ >= min_version || finished_) return Reached{version_, finished_};
    const int64_t seen = version_;
    // Waits until anything changes; restarts the progress timeout only when
    // a new version arrived.
    if (!changed_.wait_for(lock, progress_timeout,
                           [&] { return !error_.ok() || finished_ || version_ != seen; })) {
      return DeadlineExceededError("no parameter update for " + std::to_string(progress_timeout.count()) +
                                   " ms while waiting for version " + std::to_string(min_version) +
                                   " (have " + std::to_string(version_) + ")");
    }
  }
}

int64_t VersionGate::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

bool VersionGate::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

Status VersionGate::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace stella::pipeline
