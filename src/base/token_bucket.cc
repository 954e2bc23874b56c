#include "src/base/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace stella {
namespace {

Status ValidateRate(double rate) {
  if (!std::isfinite(rate) || rate < 0) {
    return InvalidArgumentError("token bucket: rate must be finite and >= 0 bytes/s, got " + std::to_string(rate));
  }
  return Status::Ok();
}

Status ValidateBurst(double burst) {
  if (!std::isfinite(burst) || burst <= 0) {
    return InvalidArgumentError("token bucket: burst must be finite and > 0 bytes, got " + std::to_string(burst));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<TokenBucket>> TokenBucket::Create(const Options& options, const Clock& clock) {
  STELLA_RETURN_IF_ERROR(ValidateRate(options.rate_bytes_per_s));
  STELLA_RETURN_IF_ERROR(ValidateBurst(options.burst_bytes));
  return std::unique_ptr<TokenBucket>(new TokenBucket(options, clock));
}

TokenBucket::TokenBucket(const Options& options, const Clock& clock)
    : clock_(clock), rate_(options.rate_bytes_per_s), burst_(options.burst_bytes) {
  MutexLock lock(&mu_);  // for the analysis: nothing else sees the bucket yet
  if (rate_ > 0) empty_at_ = clock_.Now() - BytesToDurationLocked(burst_);
}

Clock::Duration TokenBucket::BytesToDurationLocked(double bytes) const {
  // Clamp so that absurd inputs (1 TiB at 1 byte/s) cannot overflow int64 ns.
  const double ns = std::min(bytes * 1e9 / rate_, 1e18);
  return Clock::Duration(std::llround(ns));
}

Clock::Duration TokenBucket::Reserve(size_t bytes) {
  MutexLock lock(&mu_);
  if (rate_ == 0) return Clock::Duration::zero();
  const Clock::TimePoint now = clock_.Now();
  // Idle time beyond what fills the bucket is not saved up.
  empty_at_ = std::max(empty_at_, now - BytesToDurationLocked(burst_));
  empty_at_ += BytesToDurationLocked(static_cast<double>(bytes));
  return std::max(empty_at_ - now, Clock::Duration::zero());
}

Status TokenBucket::SetRate(double bytes_per_s) {
  STELLA_RETURN_IF_ERROR(ValidateRate(bytes_per_s));
  MutexLock lock(&mu_);
  SetRateLocked(bytes_per_s);
  return Status::Ok();
}

Status TokenBucket::SetRate(double bytes_per_s, double burst_bytes) {
  STELLA_RETURN_IF_ERROR(ValidateRate(bytes_per_s));
  STELLA_RETURN_IF_ERROR(ValidateBurst(burst_bytes));
  MutexLock lock(&mu_);
  burst_ = burst_bytes;
  SetRateLocked(bytes_per_s);
  return Status::Ok();
}

void TokenBucket::SetRateLocked(double bytes_per_s) {
  const Clock::TimePoint now = clock_.Now();
  if (bytes_per_s == 0) {
    rate_ = 0;
    return;
  }
  if (rate_ == 0) {  // unlimited -> limited: start full
    rate_ = bytes_per_s;
    empty_at_ = now - BytesToDurationLocked(burst_);
    return;
  }
  // Keep the token balance (negative: debt), re-expressed at the new rate.
  const double tokens = std::min(burst_, std::chrono::duration<double>(now - empty_at_).count() * rate_);
  rate_ = bytes_per_s;
  empty_at_ = now - BytesToDurationLocked(tokens);
}

double TokenBucket::rate_bytes_per_s() const {
  MutexLock lock(&mu_);
  return rate_;
}

double TokenBucket::burst_bytes() const {
  MutexLock lock(&mu_);
  return burst_;
}

}  // namespace stella
