#include "src/net/framed_connection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "src/net/link_stats.h"
#include "src/net/memory_stream.h"
#include "src/net/shaped_stream.h"

namespace stella {
namespace net {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

Clock::TimePoint In(milliseconds ms) { return std::chrono::steady_clock::now() + ms; }
constexpr milliseconds kLong(10000);

TEST(LinkStatsTest, CountersAndGoodputEwma) {
  LinkStats stats;
  EXPECT_EQ(stats.Snapshot().goodput_bytes_per_s, 0);
  stats.RecordFrameSent(120);
  stats.RecordFrameSent(30);
  stats.RecordFrameReceived(50);
  stats.RecordGoodputSample(100, 1.0);  // first sample taken as is
  EXPECT_DOUBLE_EQ(stats.Snapshot().goodput_bytes_per_s, 100);
  stats.RecordGoodputSample(400, 2.0);  // 200 B/s: 0.2 * 200 + 0.8 * 100
  EXPECT_DOUBLE_EQ(stats.Snapshot().goodput_bytes_per_s, 120);
  stats.RecordGoodputSample(0, 1.0);    // no information: ignored
  stats.RecordGoodputSample(100, 0.0);  // likewise
  const LinkStatsSnapshot s = stats.Snapshot();
  EXPECT_DOUBLE_EQ(s.goodput_bytes_per_s, 120);
  EXPECT_EQ(s.bytes_sent, 150u);
  EXPECT_EQ(s.frames_sent, 2u);
  EXPECT_EQ(s.bytes_received, 50u);
  EXPECT_EQ(s.frames_received, 1u);
}

TEST(FramedConnectionTest, SendReceiveUpdatesBothEndsStats) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection sender(std::move(a));
  FramedConnection receiver(std::move(b));
  const std::vector<uint8_t> payload(1000, 0x5A);
  ASSERT_TRUE(sender.Send(FrameType::kHeartbeat, 1, nullptr, 0, In(kLong)).ok());
  ASSERT_TRUE(sender.Send(FrameType::kControl, 2, payload.data(), 10, In(kLong)).ok());
  ASSERT_TRUE(sender.Send(FrameType::kDense, 3, payload.data(), payload.size(), In(kLong)).ok());
  for (uint32_t tag = 1; tag <= 3; ++tag) {
    auto f = receiver.Receive(In(kLong));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->header.tag, tag);
  }
  const auto sent = sender.stats().Snapshot();
  const auto received = receiver.stats().Snapshot();
  EXPECT_EQ(sent.frames_sent, 3u);
  EXPECT_EQ(sent.bytes_sent, 1010u + 3 * kFrameOverheadBytes);
  EXPECT_EQ(sent.frames_received, 0u);
  EXPECT_EQ(received.frames_received, 3u);
  EXPECT_EQ(received.bytes_received, sent.bytes_sent);
}

TEST(FramedConnectionTest, FlushRecordsGoodputNotAboveTheShapedRate) {
  auto [a, b] = CreateMemoryStreamPair();
  ShapedStream::Options o;
  o.rate_bits_per_s = 80e6;  // 10 MB/s
  auto shaped = ShapedStream::Create(std::move(a), o);
  ASSERT_TRUE(shaped.ok());
  FramedConnection sender(std::move(shaped).value());
  FramedConnection receiver(std::move(b));
  std::thread drain([&] {
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(receiver.Receive(In(kLong)).ok());
  });
  const std::vector<uint8_t> payload(64 << 10, 1);
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(sender.Send(FrameType::kDense, i, payload.data(), payload.size(), In(kLong)).ok());
  }
  EXPECT_EQ(sender.stats().Snapshot().goodput_bytes_per_s, 0);  // no Flush yet
  ASSERT_TRUE(sender.Flush(In(kLong)).ok());
  drain.join();
  const double goodput = sender.stats().Snapshot().goodput_bytes_per_s;
  EXPECT_GT(goodput, 0);
  // 1 MiB at 10 MB/s minus one burst: the link can be slower, never faster.
  EXPECT_LT(goodput, 10e6 * 1.15);
}

TEST(FramedConnectionTest, ReceiveDeadlineOnIdleLinkIsRetryable) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection sender(std::move(a));
  FramedConnection receiver(std::move(b));
  auto idle = receiver.Receive(In(milliseconds(20)));
  EXPECT_EQ(idle.status().code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(sender.Send(FrameType::kControl, 5, "go", 2, In(kLong)).ok());
  auto f = receiver.Receive(In(kLong));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->header.tag, 5u);
}

TEST(FramedConnectionTest, ReceiveErrorIsSticky) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection receiver(std::move(b));
  const char garbage[32] = "definitely not a stella frame";
  ASSERT_TRUE(a->WriteAll(garbage, sizeof(garbage), In(kLong)).ok());
  auto first = receiver.Receive(In(kLong));
  EXPECT_EQ(first.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(first.status().message(), HasSubstr("bad magic"));
  auto second = receiver.Receive(In(kLong));
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("bad magic"));
  EXPECT_EQ(receiver.stats().Snapshot().frames_received, 0u);
}

TEST(FramedConnectionTest, SendErrorsAfterShutdownAndBadArgumentsAreNot) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection::Options options;
  options.limits.max_payload_bytes = 8;
  FramedConnection sender(std::move(a), options);
  const char big[9] = {};
  EXPECT_EQ(sender.Send(FrameType::kDense, 1, big, 9, In(kLong)).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(sender.Send(FrameType::kDense, 2, big, 8, In(kLong)).ok());  // still usable
  sender.Shutdown();
  EXPECT_EQ(sender.Send(FrameType::kDense, 3, big, 8, In(kLong)).code(), StatusCode::kCancelled);
  Status again = sender.Send(FrameType::kDense, 4, big, 8, In(kLong));
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sender.Flush(In(kLong)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sender.stats().Snapshot().frames_sent, 1u);
}

TEST(FramedConnectionTest, ShutdownUnblocksReceive) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection receiver(std::move(b));
  Status status;
  std::thread t([&] { status = receiver.Receive(In(kLong)).status(); });
  std::this_thread::sleep_for(milliseconds(50));
  receiver.Shutdown();
  t.join();
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
}

TEST(FramedConnectionTest, HelloHandshake) {
  auto [a, b] = CreateMemoryStreamPair();
  FramedConnection client(std::move(a));
  FramedConnection server(std::move(b));
  auto hello = EncodeHello(Hello{"job-a", 1});
  ASSERT_TRUE(hello.ok());
  ASSERT_TRUE(client.Send(FrameType::kHello, 0, hello->data(), hello->size(), In(kLong)).ok());
  auto f = server.Receive(In(kLong));
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->header.type, FrameType::kHello);
  auto decoded = DecodeHello(f->payload.data(), f->payload.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->job_id, "job-a");
  EXPECT_EQ(decoded->cluster_index, 1u);
}

}  // namespace
}  // namespace net
}  // namespace stella
