// FakeClock: a manually advanced Clock for tests of time-dependent code
// (token buckets, backoff) that must not sleep.
//
// Thread safety: all methods are thread-safe.
#ifndef STELLA_SRC_BASE_TESTING_FAKE_CLOCK_H_
#define STELLA_SRC_BASE_TESTING_FAKE_CLOCK_H_

#include "src/base/clock.h"
#include "src/base/mutex.h"

namespace stella {

class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary, fixed, non-zero instant so that "now - burst"
  // arithmetic never goes below the epoch.
  FakeClock();

  TimePoint Now() const override;
  // Advances the time to `deadline` at once (never backwards).
  void SleepUntil(TimePoint deadline) const override;
  void Advance(Duration d);

 private:
  mutable Mutex mu_;
  mutable TimePoint now_ GUARDED_BY(mu_);  // mutable because SleepUntil is const
};

}  // namespace stella

#endif  // STELLA_SRC_BASE_TESTING_FAKE_CLOCK_H_
