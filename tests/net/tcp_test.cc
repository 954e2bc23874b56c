#include "src/net/tcp.h"
#include "src/net/memory_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace stella {
namespace net {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

Clock::TimePoint In(milliseconds ms) { return std::chrono::steady_clock::now() + ms; }
constexpr milliseconds kLong(10000);

// A connected {client, server} pair over 127.0.0.1.
std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> ConnectedPair() {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  auto client = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  auto server = (*listener)->Accept(In(kLong));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return {std::move(client).value(), std::move(server).value()};
}

// A port on which nothing listens (just released by an ephemeral listener).
int UnusedPort() {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  return (*listener)->port();
}

TEST(TcpTest, ListenerReportsEphemeralPortAndValidatesOptions) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  EXPECT_GT((*listener)->port(), 0);
  auto bad = TcpListener::Create("127.0.0.1", 70000);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("got 70000"));
  // The port is taken: binding it again fails with a message naming it.
  auto dup = TcpListener::Create("127.0.0.1", (*listener)->port());
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr(std::to_string((*listener)->port())));
}

TEST(TcpTest, ExchangesBytesBothWays) {
  auto [client, server] = ConnectedPair();
  const char hello[] = "hello";
  ASSERT_TRUE(client->WriteAll(hello, 5, In(kLong)).ok());
  char buf[5];
  ASSERT_TRUE(server->ReadAll(buf, 5, In(kLong)).ok());
  EXPECT_EQ(std::string(buf, 5), "hello");
  ASSERT_TRUE(server->WriteAll("yo", 2, In(kLong)).ok());
  ASSERT_TRUE(client->ReadAll(buf, 2, In(kLong)).ok());
  EXPECT_EQ(std::string(buf, 2), "yo");
}

// The kernel's delivery rate is what the tuner reads over real (or
// kernel-shaped) links. During a bulk transfer the sender is not
// application-limited, so path samples appear.
TEST(TcpTest, ReportsKernelDeliveryRateDuringABulkTransfer) {
  auto [client, server] = ConnectedPair();
  constexpr int kBlocks = 64;
  std::vector<char> block(1 << 20, 'x');
  std::thread reader([&server = server, &block] {
    std::vector<char> in(block.size());
    for (int i = 0; i < kBlocks; ++i) EXPECT_TRUE(server->ReadAll(in.data(), in.size(), In(kLong)).ok());
  });
  double best = 0;
  for (int i = 0; i < kBlocks; ++i) {
    ASSERT_TRUE(client->WriteAll(block.data(), block.size(), In(kLong)).ok());
    best = std::max(best, client->DeliveryRateBytesPerSecond());
  }
  reader.join();
  EXPECT_GT(best, 0.0);
  // A stream with no transport estimate reports 0.
  auto memory = CreateMemoryStreamPair();
  EXPECT_EQ(memory.first->DeliveryRateBytesPerSecond(), 0.0);
}

TEST(TcpTest, AcceptTimesOutWithoutClient) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  const auto start = std::chrono::steady_clock::now();
  auto s = (*listener)->Accept(In(milliseconds(100)));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
}

TEST(TcpTest, ConnectGivesUpAtDeadlineWhenNobodyListens) {
  const int port = UnusedPort();
  auto s = TcpConnect("127.0.0.1", port, In(milliseconds(300)));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.status().message(), HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(s.status().message(), HasSubstr("refused"));
  // 50 + 100 + 200 ms of backoff fit about 3-4 attempts into 300 ms.
  EXPECT_THAT(s.status().message(), HasSubstr("attempts"));
}

TEST(TcpTest, ConnectRetriesUntilListenerAppears) {
  const int port = UnusedPort();
  std::thread server([port] {
    std::this_thread::sleep_for(milliseconds(300));
    auto listener = TcpListener::Create("127.0.0.1", port);
    ASSERT_TRUE(listener.ok()) << listener.status().ToString();
    auto conn = (*listener)->Accept(In(kLong));
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE((*conn)->WriteAll("!", 1, In(kLong)).ok());
    char c;
    // Wait for the client to close so the byte is surely delivered.
    EXPECT_EQ((*conn)->ReadAll(&c, 1, In(kLong)).code(), StatusCode::kUnavailable);
  });
  auto client = TcpConnect("127.0.0.1", port, In(kLong));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  char c = 0;
  ASSERT_TRUE((*client)->ReadAll(&c, 1, In(kLong)).ok());
  EXPECT_EQ(c, '!');
  client->reset();
  server.join();
}

TEST(TcpTest, ConnectRejectsBadPort) {
  auto bad_port = TcpConnect("127.0.0.1", 0, In(kLong));
  EXPECT_EQ(bad_port.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_port.status().message(), HasSubstr("got 0"));
}

// "localhost" comes from /etc/hosts (no DNS) and may list ::1 before
// 127.0.0.1: every resolved address is tried.
TEST(TcpTest, ConnectByNameTriesEveryAddress) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  auto client = TcpConnect("localhost", (*listener)->port(), In(kLong));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = (*listener)->Accept(In(kLong));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_THAT(static_cast<TcpStream&>(**server).peer(), HasSubstr("127.0.0.1:"));
}

TEST(TcpTest, PeerCloseDuringReadReportsProgress) {
  auto [client, server] = ConnectedPair();
  ASSERT_TRUE(client->WriteAll("abc", 3, In(kLong)).ok());
  client.reset();
  char buf[10];
  Status s = server->ReadAll(buf, 10, In(kLong));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("peer closed connection after 3 of 10 bytes"));
}

// ReadSome returns what has arrived (at most `max`), times out without
// consuming anything, and reports a closed peer, on TCP and the in-memory pipe.
TEST(TcpTest, ReadSomeTakesWhatHasArrived) {
  auto [tcp_client, tcp_server] = ConnectedPair();
  auto [mem_a, mem_b] = CreateMemoryStreamPair();
  std::pair<Stream*, Stream*> pairs[] = {{tcp_client.get(), tcp_server.get()}, {mem_a.get(), mem_b.get()}};
  for (auto [writer, reader] : pairs) {
    char buf[16];
    auto early = reader->ReadSome(buf, sizeof(buf), In(milliseconds(20)));
    ASSERT_FALSE(early.ok());
    EXPECT_EQ(early.status().code(), StatusCode::kDeadlineExceeded);
    ASSERT_TRUE(writer->WriteAll("abcdef", 6, In(kLong)).ok());
    size_t total = 0;
    while (total < 6) {  // TCP may split it; it never merges beyond what was sent
      auto got = reader->ReadSome(buf + total, sizeof(buf) - total, In(kLong));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_GE(*got, 1u);
      total += *got;
    }
    EXPECT_EQ(total, 6u);
    EXPECT_EQ(std::string(buf, 6), "abcdef");
    ASSERT_TRUE(writer->WriteAll("xyz", 3, In(kLong)).ok());
    writer->Shutdown();
    auto first = reader->ReadSome(buf, 2, In(kLong));  // max bounds the read
    ASSERT_TRUE(first.ok());
    ASSERT_GE(*first, 1u);
    ASSERT_LE(*first, 2u);
    total = *first;
    while (total < 3) {
      auto got = reader->ReadSome(buf + total, sizeof(buf) - total, In(kLong));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      total += *got;
    }
    EXPECT_EQ(std::string(buf, total), "xyz");
    EXPECT_EQ(reader->ReadSome(buf, 0, In(kLong)).status().code(), StatusCode::kInvalidArgument);
    auto closed = reader->ReadSome(buf, sizeof(buf), In(kLong));
    EXPECT_EQ(closed.status().code(), StatusCode::kUnavailable) << closed.status().ToString();
    EXPECT_THAT(closed.status().message(), HasSubstr("peer closed connection"));
  }
}

TEST(TcpTest, ReadDeadlineExceeded) {
  auto [client, server] = ConnectedPair();
  ASSERT_TRUE(client->WriteAll("ab", 2, In(kLong)).ok());
  char buf[4];
  Status s = server->ReadAll(buf, 4, In(milliseconds(50)));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("after 2 of 4 bytes"));
}

TEST(TcpTest, WriteDeadlineExceededWhenPeerDoesNotRead) {
  auto [client, server] = ConnectedPair();
  std::vector<uint8_t> big(64 << 20);  // far more than both socket buffers
  Status s = client->WriteAll(big.data(), big.size(), In(milliseconds(200)));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("write deadline exceeded"));
}

TEST(TcpTest, WriteToClosedPeerFailsWithoutSignal) {
  auto [client, server] = ConnectedPair();
  server.reset();
  std::vector<uint8_t> chunk(64 << 10);
  Status s;
  // The first writes may land in the kernel buffer before the RST arrives.
  for (int i = 0; i < 1000 && s.ok(); ++i) s = client->WriteAll(chunk.data(), chunk.size(), In(kLong));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
}

TEST(TcpTest, ShutdownUnblocksBlockedRead) {
  auto [client, server] = ConnectedPair();
  Status read_status;
  std::thread reader([&, s = server.get()] {
    char buf[8];
    read_status = s->ReadAll(buf, sizeof(buf), In(kLong));
  });
  std::this_thread::sleep_for(milliseconds(100));  // let the reader block (not required)
  server->Shutdown();
  reader.join();
  EXPECT_EQ(read_status.code(), StatusCode::kCancelled) << read_status.ToString();
  // Later calls fail at once, and the peer sees the connection end.
  char c;
  EXPECT_EQ(server->ReadAll(&c, 1, In(kLong)).code(), StatusCode::kCancelled);
  EXPECT_EQ(server->WriteAll("x", 1, In(kLong)).code(), StatusCode::kCancelled);
  EXPECT_EQ(client->ReadAll(&c, 1, In(kLong)).code(), StatusCode::kUnavailable);
}

TEST(TcpTest, ShutdownUnblocksBlockedWrite) {
  auto [client, server] = ConnectedPair();
  Status write_status;
  std::thread writer([&, s = client.get()] {
    std::vector<uint8_t> big(64 << 20);
    write_status = s->WriteAll(big.data(), big.size(), In(kLong));
  });
  std::this_thread::sleep_for(milliseconds(100));
  client->Shutdown();
  writer.join();
  EXPECT_EQ(write_status.code(), StatusCode::kCancelled) << write_status.ToString();
}

TEST(TcpTest, ListenerShutdownUnblocksAccept) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  StatusOr<std::unique_ptr<Stream>> accepted = InternalError("Accept never returned");
  std::thread acceptor([&] { accepted = (*listener)->Accept(In(kLong)); });
  std::this_thread::sleep_for(milliseconds(100));
  (*listener)->Shutdown();
  acceptor.join();
  ASSERT_FALSE(accepted.ok());
  EXPECT_EQ(accepted.status().code(), StatusCode::kCancelled);
  EXPECT_THAT(accepted.status().message(), HasSubstr("shut down"));
}

}  // namespace
}  // namespace net
}  // namespace stella
