// Clock: an injectable source of monotonic time, so that rate limiters,
// backoff and timeouts can be tested without sleeping.
//
// Thread safety: SystemClock is stateless and thread-safe. Implementations must
// be thread-safe.
#ifndef STELLA_SRC_BASE_CLOCK_H_
#define STELLA_SRC_BASE_CLOCK_H_

#include <chrono>

namespace stella {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  virtual void SleepUntil(TimePoint deadline) const = 0;
};

// The real steady clock. One process-wide instance is returned by
// SystemClock::Get(); it holds no state.
class SystemClock final : public Clock {
 public:
  static const SystemClock& Get();
  TimePoint Now() const override;
  void SleepUntil(TimePoint deadline) const override;
};

// Seconds between two time points as a double.
inline double SecondsBetween(Clock::TimePoint a, Clock::TimePoint b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace stella

#endif  // STELLA_SRC_BASE_CLOCK_H_
