#include "src/base/testing/fake_clock.h"

#include <algorithm>
#include <chrono>

namespace stella {

FakeClock::FakeClock() : now_(TimePoint(std::chrono::hours(1000))) {}

Clock::TimePoint FakeClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepUntil(TimePoint deadline) const {
  MutexLock lock(&mu_);
  now_ = std::max(now_, deadline);
}

void FakeClock::Advance(Duration d) {
  MutexLock lock(&mu_);
  now_ += d;
}

}  // namespace stella
