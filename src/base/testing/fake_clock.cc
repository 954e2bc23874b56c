#include "src/base/testing/fake_clock.h"

#include <algorithm>
#include <chrono>

namespace stella {

FakeClock::FakeClock() : now_(TimePoint(std::chrono::hours(1000))) {}

Clock::TimePoint FakeClock::Now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

void FakeClock::SleepUntil(TimePoint deadline) const {
  std::lock_guard<std::mutex> lock(mu_);
  now_ = std::max(now_, deadline);
}

void FakeClock::Advance(Duration d) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ += d;
}

}  // namespace stella
