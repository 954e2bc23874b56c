#include "src/base/clock.h"

#include <thread>

namespace stella {

const SystemClock& SystemClock::Get() {
  static const SystemClock clock;  // stateless: not mutable global state
  return clock;
}

Clock::TimePoint SystemClock::Now() const { return std::chrono::steady_clock::now(); }

void SystemClock::SleepUntil(TimePoint deadline) const { std::this_thread::sleep_until(deadline); }

}  // namespace stella
