// Real-socket checks that ShapedStream delivers the configured bandwidth and
// latency. Slow (several seconds of paced traffic) and timing-based by design:
// the spec requires measured throughput within 10% of the setting.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "src/net/framed_connection.h"
#include "src/net/shaped_stream.h"
#include "src/net/tcp.h"

namespace stella {
namespace net {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

Clock::TimePoint In(milliseconds ms) { return Steady::now() + ms; }
constexpr milliseconds kLong(30000);

struct Link {
  std::unique_ptr<FramedConnection> client;  // dials
  std::unique_ptr<FramedConnection> server;  // accepts
};

// Connects over 127.0.0.1; each end's egress is shaped with its options
// (rate 0 and latency 0 leave that end unshaped).
Link Connect(const ShapedStream::Options& client_egress, const ShapedStream::Options& server_egress) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  auto client = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  auto server = (*listener)->Accept(In(kLong));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  auto shaped_client = ShapedStream::Create(std::move(client).value(), client_egress);
  auto shaped_server = ShapedStream::Create(std::move(server).value(), server_egress);
  EXPECT_TRUE(shaped_client.ok() && shaped_server.ok());
  return {std::make_unique<FramedConnection>(std::move(shaped_client).value()),
          std::make_unique<FramedConnection>(std::move(shaped_server).value())};
}

// Sends ~3 s worth of frames at `bits_per_s`; returns the rate the receiver
// measured (wire bytes/s) after skipping the first 0.5 s (initial burst,
// thread start-up).
double MeasureThroughput(double bits_per_s) {
  ShapedStream::Options shaped;
  shaped.rate_bits_per_s = bits_per_s;
  Link link = Connect(shaped, ShapedStream::Options{});
  const double bytes_per_s = bits_per_s / 8;
  const size_t frame_payload = 32 << 10;
  const int frames = static_cast<int>(3.0 * bytes_per_s / frame_payload);

  std::vector<Steady::time_point> arrival(frames);
  std::thread receiver([&] {
    for (int i = 0; i < frames; ++i) {
      auto f = link.server->Receive(In(kLong));
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      arrival[i] = Steady::now();
    }
  });
  const std::vector<uint8_t> payload(frame_payload, 0xA5);
  for (int i = 0; i < frames; ++i) {
    Status s = link.client->Send(FrameType::kDense, i, payload.data(), payload.size(), In(kLong));
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) break;
  }
  EXPECT_TRUE(link.client->Flush(In(kLong)).ok());
  receiver.join();

  const auto skip_until = arrival[0] + milliseconds(500);
  int first = 0;
  while (first < frames - 1 && arrival[first] < skip_until) ++first;
  const double seconds = std::chrono::duration<double>(arrival[frames - 1] - arrival[first]).count();
  // Bytes of frames first+1..last arrived between the two time stamps.
  const double bytes = static_cast<double>(frames - 1 - first) * (frame_payload + kFrameOverheadBytes);
  const double measured = bytes / seconds;
  std::printf("setting %.1f Mbit/s: measured %.2f Mbit/s over %.2f s (%d frames); goodput EWMA %.2f Mbit/s\n",
              bits_per_s / 1e6, measured * 8 / 1e6, seconds, frames - 1 - first,
              link.client->stats().Snapshot().goodput_bytes_per_s * 8 / 1e6);
  return measured;
}

TEST(ShaperRateTest, FortyMegabitsWithinTenPercent) {
  const double measured = MeasureThroughput(40e6);
  EXPECT_NEAR(measured, 40e6 / 8, 0.10 * 40e6 / 8);
}

TEST(ShaperRateTest, EightMegabitsWithinTenPercent) {
  const double measured = MeasureThroughput(8e6);
  EXPECT_NEAR(measured, 8e6 / 8, 0.10 * 8e6 / 8);
}

TEST(ShaperRateTest, PingPongRoundTripIncludesBothLatencies) {
  ShapedStream::Options shaped;
  shaped.rate_bits_per_s = 40e6;
  shaped.latency = milliseconds(50);
  Link link = Connect(shaped, shaped);
  std::thread echo([&] {
    for (int i = 0; i < 3; ++i) {
      auto f = link.server->Receive(In(kLong));
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      ASSERT_TRUE(
          link.server->Send(FrameType::kControl, f->header.tag, f->payload.data(), f->payload.size(), In(kLong)).ok());
    }
  });
  for (uint32_t i = 0; i < 3; ++i) {
    const auto start = Steady::now();
    ASSERT_TRUE(link.client->Send(FrameType::kControl, i, "ping", 4, In(kLong)).ok());
    auto reply = link.client->Receive(In(kLong));
    const auto rtt = Steady::now() - start;
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->header.tag, i);
    std::printf("ping %u: rtt %.1f ms\n", i, std::chrono::duration<double, std::milli>(rtt).count());
    EXPECT_GE(rtt, milliseconds(100));
    EXPECT_LT(rtt, milliseconds(400));
  }
  echo.join();
}

}  // namespace
}  // namespace net
}  // namespace stella
