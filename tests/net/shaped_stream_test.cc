#include "src/net/shaped_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "src/net/memory_stream.h"

namespace stella {
namespace net {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

Clock::TimePoint In(milliseconds ms) { return std::chrono::steady_clock::now() + ms; }
constexpr milliseconds kLong(10000);

std::vector<uint8_t> Bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  return v;
}

std::unique_ptr<ShapedStream> Shape(std::unique_ptr<Stream> inner, const ShapedStream::Options& o) {
  auto s = ShapedStream::Create(std::move(inner), o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

TEST(ShapedStreamTest, CreateValidatesOptions) {
  ShapedStream::Options o;
  EXPECT_EQ(ShapedStream::Create(nullptr, o).status().code(), StatusCode::kInvalidArgument);
  o.rate_bits_per_s = -1;
  auto bad_rate = ShapedStream::Create(CreateMemoryStreamPair().first, o);
  EXPECT_EQ(bad_rate.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_rate.status().message(), HasSubstr("rate_bits_per_s"));
  o.rate_bits_per_s = 0;
  o.latency = milliseconds(-1);
  auto bad_latency = ShapedStream::Create(CreateMemoryStreamPair().first, o);
  EXPECT_THAT(bad_latency.status().message(), HasSubstr("latency"));
  o.latency = milliseconds(0);
  o.chunk_bytes = 0;
  EXPECT_EQ(ShapedStream::Create(CreateMemoryStreamPair().first, o).status().code(), StatusCode::kInvalidArgument);
}

// Many writes of odd sizes (coalesced and split into chunks) arrive intact and
// in order, with and without shaping.
TEST(ShapedStreamTest, DeliversAllBytesInOrder) {
  for (double rate : {0.0, 400e6}) {
    auto [a, b] = CreateMemoryStreamPair();
    ShapedStream::Options o;
    o.rate_bits_per_s = rate;
    o.latency = milliseconds(2);
    auto shaped = Shape(std::move(a), o);
    const auto data = Bytes(3 << 20);
    std::vector<uint8_t> received(data.size());
    Status read_status;
    std::thread reader([&, r = b.get()] { read_status = r->ReadAll(received.data(), received.size(), In(kLong)); });
    size_t off = 0;
    for (size_t k = 1; off < data.size(); k = (k * 7 + 3) % 40000) {
      const size_t n = std::min(k, data.size() - off);
      ASSERT_TRUE(shaped->WriteAll(data.data() + off, n, In(kLong)).ok());
      off += n;
    }
    ASSERT_TRUE(shaped->Flush(In(kLong)).ok());
    EXPECT_EQ(shaped->queued_bytes(), 0u);
    reader.join();
    ASSERT_TRUE(read_status.ok()) << read_status.ToString();
    EXPECT_TRUE(received == data) << "rate " << rate;
  }
}

TEST(ShapedStreamTest, WriteReturnsBeforeDeliveryAndFlushWaitsForIt) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.latency = milliseconds(100);
  auto shaped = Shape(std::move(a), o);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(shaped->WriteAll("ping", 4, In(kLong)).ok());
  EXPECT_EQ(shaped->queued_bytes(), 4u);  // released only after the latency
  ASSERT_TRUE(shaped->Flush(In(kLong)).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
  EXPECT_EQ(shaped->queued_bytes(), 0u);
  char buf[4];
  ASSERT_TRUE(b->ReadAll(buf, 4, In(milliseconds(0))).ok());  // already there
  EXPECT_EQ(std::string(buf, 4), "ping");
}

TEST(ShapedStreamTest, FlushDeadlineExceededWhileDataIsInFlight) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.latency = milliseconds(5000);
  auto shaped = Shape(std::move(a), o);
  ASSERT_TRUE(shaped->WriteAll("x", 1, In(kLong)).ok());
  Status s = shaped->Flush(In(milliseconds(20)));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("1 bytes still queued"));
}

TEST(ShapedStreamTest, ReadsPassThrough) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.latency = milliseconds(5000);  // would be visible if reads were delayed
  auto shaped = Shape(std::move(a), o);
  ASSERT_TRUE(b->WriteAll("pong", 4, In(kLong)).ok());
  char buf[4];
  ASSERT_TRUE(shaped->ReadAll(buf, 4, In(milliseconds(0))).ok());
  EXPECT_EQ(std::string(buf, 4), "pong");
}

TEST(ShapedStreamTest, InnerErrorSurfacesOnNextFlushAndWrite) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  auto shaped = Shape(std::move(a), o);
  b.reset();  // the peer is gone: the inner write fails in the sender thread
  ASSERT_TRUE(shaped->WriteAll("data", 4, In(kLong)).ok());  // only queued
  Status flush = shaped->Flush(In(kLong));
  EXPECT_EQ(flush.code(), StatusCode::kUnavailable) << flush.ToString();
  EXPECT_THAT(flush.message(), HasSubstr("delivering to the inner stream"));
  EXPECT_THAT(flush.message(), HasSubstr("peer closed connection"));
  Status write = shaped->WriteAll("more", 4, In(kLong));
  EXPECT_EQ(write.code(), StatusCode::kUnavailable);
  EXPECT_EQ(write.message(), flush.message());  // sticky
}

TEST(ShapedStreamTest, BackPressureBoundsTheQueue) {
  MemoryStreamOptions mo;
  mo.capacity_bytes = 64 << 10;
  auto [a, b] = CreateMemoryStreamPair(mo);  // b never reads: the link stalls
  ShapedStream::Options o;
  o.queue_headroom_bytes = 256 << 10;
  auto shaped = Shape(std::move(a), o);
  EXPECT_EQ(shaped->queue_limit_bytes(), size_t{256} << 10);
  const auto data = Bytes(8 << 20);
  Status s = shaped->WriteAll(data.data(), data.size(), In(milliseconds(300)));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("emulated link full"));
  // At most one chunk beyond the bound.
  EXPECT_LE(shaped->queued_bytes(), shaped->queue_limit_bytes() + o.chunk_bytes);
  EXPECT_GE(shaped->queued_bytes(), shaped->queue_limit_bytes());
}

TEST(ShapedStreamTest, QueueLimitFollowsBandwidthDelayProductAndRate) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.rate_bits_per_s = 8e6;  // 1 MB/s
  o.latency = milliseconds(500);
  auto shaped = Shape(std::move(a), o);
  EXPECT_EQ(shaped->queue_limit_bytes(), (size_t{1} << 20) + 500000);
  ASSERT_TRUE(shaped->SetRateBitsPerSec(16e6).ok());
  EXPECT_EQ(shaped->queue_limit_bytes(), (size_t{1} << 20) + 1000000);
  EXPECT_EQ(shaped->SetRateBitsPerSec(-5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(shaped->queue_limit_bytes(), (size_t{1} << 20) + 1000000);
}

TEST(ShapedStreamTest, ShutdownUnblocksWriterBlockedByBackPressure) {
  MemoryStreamOptions mo;
  mo.capacity_bytes = 64 << 10;
  auto [a, b] = CreateMemoryStreamPair(mo);
  ShapedStream::Options o;
  o.queue_headroom_bytes = 128 << 10;
  auto shaped = Shape(std::move(a), o);
  Status write_status;
  std::thread writer([&] {
    const auto data = Bytes(8 << 20);
    write_status = shaped->WriteAll(data.data(), data.size(), In(kLong));
  });
  std::this_thread::sleep_for(milliseconds(100));
  shaped->Shutdown();
  writer.join();
  EXPECT_EQ(write_status.code(), StatusCode::kCancelled) << write_status.ToString();
  EXPECT_EQ(shaped->Flush(In(kLong)).code(), StatusCode::kCancelled);
}

TEST(ShapedStreamTest, DestructorDoesNotWaitForQueuedData) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.latency = std::chrono::seconds(60);
  const auto start = std::chrono::steady_clock::now();
  {
    auto shaped = Shape(std::move(a), o);
    ASSERT_TRUE(shaped->WriteAll("late", 4, In(kLong)).ok());
  }
  // Generous bound: the point is "not 60 s".
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  char c;
  EXPECT_EQ(b->ReadAll(&c, 1, In(kLong)).code(), StatusCode::kUnavailable);  // dropped, closed
}

}  // namespace
}  // namespace net
}  // namespace stella
