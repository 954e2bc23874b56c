#include "src/base/token_bucket.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "src/base/testing/fake_clock.h"

namespace stella {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

std::unique_ptr<TokenBucket> MakeBucket(double rate, double burst, const Clock& clock) {
  TokenBucket::Options o;
  o.rate_bytes_per_s = rate;
  o.burst_bytes = burst;
  auto b = TokenBucket::Create(o, clock);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

TEST(TokenBucketTest, StartsFullThenPacesExactly) {
  FakeClock clock;
  auto b = MakeBucket(1000, 500, clock);          // 1000 B/s: 1 byte per ms
  EXPECT_EQ(b->Reserve(500), nanoseconds(0));     // the burst passes at once
  EXPECT_EQ(b->Reserve(100), milliseconds(100));  // then 100 B take 100 ms
  EXPECT_EQ(b->Reserve(100), milliseconds(200));  // queued behind the previous reservation
  clock.Advance(milliseconds(200));
  EXPECT_EQ(b->Reserve(0), nanoseconds(0));  // debt repaid exactly
  EXPECT_EQ(b->Reserve(1), milliseconds(1));
}

TEST(TokenBucketTest, IdleTimeRefillsOnlyUpToBurst) {
  FakeClock clock;
  auto b = MakeBucket(1000, 500, clock);
  EXPECT_EQ(b->Reserve(500), nanoseconds(0));
  clock.Advance(seconds(10));  // would be 10000 tokens without the cap
  EXPECT_EQ(b->Reserve(500), nanoseconds(0));
  EXPECT_EQ(b->Reserve(250), milliseconds(250));
  // Partial refill: 100 ms gives back 100 tokens of the 250 owed.
  clock.Advance(milliseconds(100));
  EXPECT_EQ(b->Reserve(0), milliseconds(150));
}

TEST(TokenBucketTest, ReservationLargerThanBurstGoesIntoDebt) {
  FakeClock clock;
  auto b = MakeBucket(2000, 100, clock);
  EXPECT_EQ(b->Reserve(2100), seconds(1));  // 100 from the bucket, 2000 at 2000 B/s
}

TEST(TokenBucketTest, LongRunRateIsExactWhenCallerSleepsAsTold) {
  FakeClock clock;
  const double rate = 5e6;  // 40 Mbit/s in bytes
  auto b = MakeBucket(rate, 16384, clock);
  const auto start = clock.Now();
  const size_t chunk = 16384;
  const int n = 1000;
  for (int i = 0; i < n; ++i) clock.SleepUntil(clock.Now() + b->Reserve(chunk));
  // The first chunk rides on the initial burst; the other 999 take chunk/rate each.
  const auto expected = nanoseconds(std::llround((n - 1) * chunk * 1e9 / rate));
  EXPECT_EQ(clock.Now() - start, expected);
}

TEST(TokenBucketTest, SetRateMidwayKeepsSavedTokens) {
  FakeClock clock;
  auto b = MakeBucket(1000, 1000, clock);
  EXPECT_EQ(b->Reserve(1000), nanoseconds(0));  // empty
  clock.Advance(milliseconds(500));             // 500 tokens saved
  ASSERT_TRUE(b->SetRate(2000).ok());
  EXPECT_DOUBLE_EQ(b->rate_bytes_per_s(), 2000);
  // 500 saved tokens cover 500 B; the other 1000 B take 500 ms at 2000 B/s.
  EXPECT_EQ(b->Reserve(1500), milliseconds(500));
}

TEST(TokenBucketTest, SetRateRepricesOutstandingDebt) {
  FakeClock clock;
  auto b = MakeBucket(1000, 100, clock);
  EXPECT_EQ(b->Reserve(1100), seconds(1));  // 1000 B of debt
  ASSERT_TRUE(b->SetRate(500).ok());
  EXPECT_EQ(b->Reserve(0), seconds(2));  // the same debt at half the rate
  ASSERT_TRUE(b->SetRate(4000, 200).ok());
  EXPECT_EQ(b->Reserve(0), milliseconds(250));
  EXPECT_DOUBLE_EQ(b->burst_bytes(), 200);
  clock.Advance(seconds(1));  // debt repaid, bucket refilled to the new burst
  EXPECT_EQ(b->Reserve(200), nanoseconds(0));
  EXPECT_EQ(b->Reserve(40), milliseconds(10));
}

TEST(TokenBucketTest, UnlimitedRateNeverWaitsAndSwitchingBackStartsFull) {
  FakeClock clock;
  auto b = MakeBucket(0, 100, clock);
  EXPECT_EQ(b->Reserve(size_t{1} << 40), nanoseconds(0));
  ASSERT_TRUE(b->SetRate(1000).ok());
  EXPECT_EQ(b->Reserve(100), nanoseconds(0));  // full bucket
  EXPECT_EQ(b->Reserve(100), milliseconds(100));
  ASSERT_TRUE(b->SetRate(0).ok());
  EXPECT_EQ(b->Reserve(1000000), nanoseconds(0));
}

TEST(TokenBucketTest, RejectsInvalidParameters) {
  FakeClock clock;
  TokenBucket::Options o;
  o.rate_bytes_per_s = -1;
  auto bad_rate = TokenBucket::Create(o, clock);
  ASSERT_FALSE(bad_rate.ok());
  EXPECT_EQ(bad_rate.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_rate.status().message().find("rate"), std::string::npos);

  o.rate_bytes_per_s = 1000;
  o.burst_bytes = 0;
  auto bad_burst = TokenBucket::Create(o, clock);
  ASSERT_FALSE(bad_burst.ok());
  EXPECT_NE(bad_burst.status().message().find("burst"), std::string::npos);

  auto b = MakeBucket(1000, 100, clock);
  EXPECT_EQ(b->SetRate(std::numeric_limits<double>::quiet_NaN()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(b->SetRate(1000, -5).code(), StatusCode::kInvalidArgument);
  EXPECT_DOUBLE_EQ(b->rate_bytes_per_s(), 1000);  // unchanged after rejected calls
}

}  // namespace
}  // namespace stella
