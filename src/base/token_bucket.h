// TokenBucket: a byte-rate limiter that tells the caller how long to wait,
// used by ShapedStream to emulate a WAN link's bandwidth.
//
// Reservation semantics: Reserve(n) always succeeds and takes n tokens, going
// into debt if needed; the returned duration is how long the caller must wait
// before sending so that the long-run rate never exceeds `rate` while bursts
// of up to `burst` bytes pass immediately. Time is read only from the injected
// Clock and kept as an integer-nanosecond "time at which the bucket is empty",
// so results are exact under a fake clock (bytes->time conversions round to
// the nearest nanosecond).
//
// Thread safety: all methods are thread-safe (one internal Mutex); SetRate may
// be called while another thread reserves.
#ifndef STELLA_SRC_BASE_TOKEN_BUCKET_H_
#define STELLA_SRC_BASE_TOKEN_BUCKET_H_

#include <cstddef>
#include <memory>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/status.h"

namespace stella {

class TokenBucket {
 public:
  struct Options {
    // Sustained rate in bytes per second; 0 means unlimited (Reserve always
    // returns 0). Default 0.
    double rate_bytes_per_s = 0;
    // Bucket depth in bytes: how much may be sent back-to-back after an idle
    // period. Must be > 0. Default 16 KiB.
    double burst_bytes = 16 * 1024;
  };

  // `clock` must outlive the bucket. The bucket starts full.
  static StatusOr<std::unique_ptr<TokenBucket>> Create(const Options& options, const Clock& clock);

  // Takes `bytes` tokens and returns how long the caller must wait (from
  // clock.Now()) before sending them; 0 if they are covered by saved tokens.
  Clock::Duration Reserve(size_t bytes);

  // Changes the rate from now on. Tokens saved so far are kept (capped at the
  // burst); outstanding debt is repaid at the new rate. Going from unlimited to
  // limited starts with a full bucket. Rejects negative or non-finite rates.
  Status SetRate(double bytes_per_s);
  // Same, also changing the burst (must be > 0).
  Status SetRate(double bytes_per_s, double burst_bytes);

  double rate_bytes_per_s() const;
  double burst_bytes() const;

 private:
  TokenBucket(const Options& options, const Clock& clock);
  void SetRateLocked(double bytes_per_s) REQUIRES(mu_);
  // Time to accumulate `bytes` tokens at rate_; requires rate_ > 0.
  Clock::Duration BytesToDurationLocked(double bytes) const REQUIRES(mu_);

  const Clock& clock_;  // outlives this object (documented on Create)
  mutable Mutex mu_;
  double rate_ GUARDED_BY(mu_);
  double burst_ GUARDED_BY(mu_);
  // The instant at which the bucket held (or will hold) zero tokens; tokens
  // at time t are min(burst, (t - empty_at_) * rate).
  Clock::TimePoint empty_at_ GUARDED_BY(mu_);
};

}  // namespace stella

#endif  // STELLA_SRC_BASE_TOKEN_BUCKET_H_
