#include "src/net/frame.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "src/base/crc32c.h"
#include "src/net/memory_stream.h"
#include "src/net/tcp.h"

namespace stella {
namespace net {
namespace {

using ::testing::HasSubstr;

Clock::TimePoint In(std::chrono::milliseconds ms) { return std::chrono::steady_clock::now() + ms; }
constexpr std::chrono::milliseconds kShort(50);
constexpr std::chrono::milliseconds kLong(10000);

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31 + (i >> 8));
  return v;
}

std::vector<uint8_t> RawHeader(const FrameHeader& h) {
  std::vector<uint8_t> out(kFrameHeaderSize);
  EncodeFrameHeader(h, out.data());
  return out;
}

// A complete frame as WriteFrame would produce it.
std::vector<uint8_t> RawFrame(FrameType type, uint32_t tag, const std::vector<uint8_t>& payload) {
  FrameHeader h;
  h.type = type;
  h.tag = tag;
  h.payload_length = static_cast<uint32_t>(payload.size());
  std::vector<uint8_t> out = RawHeader(h);
  out.insert(out.end(), payload.begin(), payload.end());
  const uint32_t crc = Crc32c(payload.data(), payload.size(), Crc32c(out.data(), kFrameHeaderSize));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  return out;
}

TEST(FrameHeaderTest, EncodeDecodeRoundTripIsLittleEndian) {
  FrameHeader h;
  h.type = FrameType::kSparse;
  h.tag = 0x01020304;
  h.payload_length = 0x0A0B0C0D;
  const auto raw = RawHeader(h);
  const std::vector<uint8_t> expected = {'S',  'T',  'L',  'A',  1,    3,    0,    0,
                                         0x04, 0x03, 0x02, 0x01, 0x0D, 0x0C, 0x0B, 0x0A};
  EXPECT_EQ(raw, expected);
  FrameLimits limits;
  limits.max_payload_bytes = 0xFFFFFFFF;
  auto decoded = DecodeFrameHeader(raw.data(), raw.size(), limits);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->version, 1);
  EXPECT_EQ(decoded->type, FrameType::kSparse);
  EXPECT_EQ(decoded->flags, 0);
  EXPECT_EQ(decoded->tag, 0x01020304u);
  EXPECT_EQ(decoded->payload_length, 0x0A0B0C0Du);
}

TEST(FrameHeaderTest, RejectsEachMalformedField) {
  FrameHeader good;
  good.type = FrameType::kDense;
  good.payload_length = 10;
  const FrameLimits limits;
  struct Case {
    const char* name;
    size_t offset;
    uint8_t value;
    StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"bad magic", 0, 'X', StatusCode::kDataLoss, "bad magic"},
      {"version 2", 4, 2, StatusCode::kFailedPrecondition, "unsupported version 2"},
      {"version 0", 4, 0, StatusCode::kFailedPrecondition, "unsupported version 0"},
      {"type 0", 5, 0, StatusCode::kDataLoss, "unknown type 0"},
      {"type 7", 5, 7, StatusCode::kDataLoss, "unknown type 7"},
      {"type 255", 5, 255, StatusCode::kDataLoss, "unknown type 255"},
      {"flags", 7, 0x80, StatusCode::kDataLoss, "flags 0x8000"},
  };
  for (const Case& c : cases) {
    auto raw = RawHeader(good);
    raw[c.offset] = c.value;
    auto decoded = DecodeFrameHeader(raw.data(), raw.size(), limits);
    ASSERT_FALSE(decoded.ok()) << c.name;
    EXPECT_EQ(decoded.status().code(), c.code) << c.name << ": " << decoded.status().ToString();
    EXPECT_THAT(decoded.status().message(), HasSubstr(c.message)) << c.name;
  }
  auto raw = RawHeader(good);
  auto short_buf = DecodeFrameHeader(raw.data(), 15, limits);
  ASSERT_FALSE(short_buf.ok());
  EXPECT_EQ(short_buf.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(short_buf.status().message(), HasSubstr("need 16 bytes, got 15"));
}

TEST(FrameHeaderTest, RejectsPayloadLengthOverLimit) {
  FrameHeader h;
  h.type = FrameType::kDense;
  h.payload_length = 1025;
  FrameLimits limits;
  limits.max_payload_bytes = 1024;
  const auto raw = RawHeader(h);
  auto decoded = DecodeFrameHeader(raw.data(), raw.size(), limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kOutOfRange);
  EXPECT_THAT(decoded.status().message(), HasSubstr("payload length 1025 exceeds limit of 1024"));
  h.payload_length = 1024;  // exactly at the limit is fine
  const auto ok_raw = RawHeader(h);
  EXPECT_TRUE(DecodeFrameHeader(ok_raw.data(), ok_raw.size(), limits).ok());
}

TEST(FrameStreamTest, RoundTripOverMemoryStream) {
  MemoryStreamOptions mo;
  mo.capacity_bytes = 4 << 20;  // whole test fits: no reader thread needed
  auto [a, b] = CreateMemoryStreamPair(mo);
  const auto small = Bytes(100, 1);
  const auto large = Bytes(200000, 2);  // > 64 KiB: written as three pieces
  ASSERT_TRUE(WriteFrame(*a, FrameType::kDense, 7, small.data(), small.size(), In(kLong)).ok());
  ASSERT_TRUE(WriteFrame(*a, FrameType::kHeartbeat, 8, nullptr, 0, In(kLong)).ok());
  ASSERT_TRUE(WriteFrame(*a, FrameType::kSparse, 0xFFFFFFFF, large.data(), large.size(), In(kLong)).ok());

  auto f1 = ReadFrame(*b, FrameLimits{}, In(kLong));
  ASSERT_TRUE(f1.ok()) << f1.status().ToString();
  EXPECT_EQ(f1->header.type, FrameType::kDense);
  EXPECT_EQ(f1->header.tag, 7u);
  EXPECT_EQ(f1->payload, small);
  auto f2 = ReadFrame(*b, FrameLimits{}, In(kLong));
  ASSERT_TRUE(f2.ok()) << f2.status().ToString();
  EXPECT_EQ(f2->header.type, FrameType::kHeartbeat);
  EXPECT_TRUE(f2->payload.empty());
  auto f3 = ReadFrame(*b, FrameLimits{}, In(kLong));
  ASSERT_TRUE(f3.ok()) << f3.status().ToString();
  EXPECT_EQ(f3->header.type, FrameType::kSparse);
  EXPECT_EQ(f3->header.tag, 0xFFFFFFFFu);
  EXPECT_EQ(f3->payload, large);
}

TEST(FrameStreamTest, WriteFrameRejectsOversizedPayloadBeforeWriting) {
  auto [a, b] = CreateMemoryStreamPair();
  FrameLimits limits;
  limits.max_payload_bytes = 16;
  const auto payload = Bytes(17, 3);
  Status s = WriteFrame(*a, FrameType::kDense, 1, payload.data(), payload.size(), In(kLong), limits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("payload of 17 bytes exceeds limit of 16"));
  uint8_t byte;
  EXPECT_EQ(b->ReadAll(&byte, 1, In(kShort)).code(), StatusCode::kDeadlineExceeded);
}

TEST(FrameStreamTest, PeerClosingMidHeaderIsAnError) {
  auto [a, b] = CreateMemoryStreamPair();
  const auto raw = RawFrame(FrameType::kDense, 1, Bytes(10, 4));
  ASSERT_TRUE(a->WriteAll(raw.data(), 7, In(kLong)).ok());
  a.reset();  // the peer goes away mid-header
  bool started = false;
  auto f = ReadFrame(*b, FrameLimits{}, In(kLong), &started);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(started);
  EXPECT_EQ(f.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(f.status().message(), HasSubstr("reading frame header"));
  EXPECT_THAT(f.status().message(), HasSubstr("peer closed connection after 6 of 15 bytes"));
}

TEST(FrameStreamTest, PeerClosingMidPayloadIsAnError) {
  auto [a, b] = CreateMemoryStreamPair();
  const auto raw = RawFrame(FrameType::kDense, 9, Bytes(100, 5));
  ASSERT_TRUE(a->WriteAll(raw.data(), kFrameHeaderSize + 40, In(kLong)).ok());
  a->Shutdown();
  auto f = ReadFrame(*b, FrameLimits{}, In(kLong));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(f.status().message(), HasSubstr("payload of Dense frame (tag 9, 100 payload bytes)"));
  EXPECT_THAT(f.status().message(), HasSubstr("after 40 of 100 bytes"));
}

TEST(FrameStreamTest, PeerClosingBeforeChecksumIsAnError) {
  auto [a, b] = CreateMemoryStreamPair();
  const auto raw = RawFrame(FrameType::kControl, 2, Bytes(8, 6));
  ASSERT_TRUE(a->WriteAll(raw.data(), raw.size() - 1, In(kLong)).ok());
  a->Shutdown();
  auto f = ReadFrame(*b, FrameLimits{}, In(kLong));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(f.status().message(), HasSubstr("checksum"));
}

TEST(FrameStreamTest, IdleDeadlineConsumesNothing) {
  auto [a, b] = CreateMemoryStreamPair();
  bool started = true;
  auto f = ReadFrame(*b, FrameLimits{}, In(kShort), &started);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(started);
  const auto payload = Bytes(5, 1);
  ASSERT_TRUE(WriteFrame(*a, FrameType::kControl, 3, payload.data(), payload.size(), In(kLong)).ok());
  auto g = ReadFrame(*b, FrameLimits{}, In(kLong), &started);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(started);
  EXPECT_EQ(g->payload, payload);
}

TEST(FrameStreamTest, CorruptionIsDataLoss) {
  const auto payload = Bytes(300, 8);
  const auto good = RawFrame(FrameType::kDense, 42, payload);
  // Payload byte, checksum byte, and a tag byte (the checksum covers the header).
  for (size_t offset : {kFrameHeaderSize + 150, good.size() - 1, size_t{9}}) {
    auto bad = good;
    bad[offset] ^= 0x10;
    auto [a, b] = CreateMemoryStreamPair();
    ASSERT_TRUE(a->WriteAll(bad.data(), bad.size(), In(kLong)).ok());
    auto f = ReadFrame(*b, FrameLimits{}, In(kLong));
    ASSERT_FALSE(f.ok()) << "corrupted offset " << offset;
    EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << f.status().ToString();
    EXPECT_THAT(f.status().message(), HasSubstr("checksum mismatch"));
  }
}

TEST(FrameStreamTest, HugeLengthRejectedBeforeAllocationOrRead) {
  auto [a, b] = CreateMemoryStreamPair();
  FrameHeader h;
  h.type = FrameType::kDense;
  h.payload_length = 0xFFFFFFFF;
  const auto raw = RawHeader(h);
  ASSERT_TRUE(a->WriteAll(raw.data(), raw.size(), In(kLong)).ok());
  const uint8_t marker[3] = {0xAB, 0xCD, 0xEF};
  ASSERT_TRUE(a->WriteAll(marker, sizeof(marker), In(kLong)).ok());
  FrameLimits limits;
  limits.max_payload_bytes = 1024;
  auto f = ReadFrame(*b, limits, In(kLong));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kOutOfRange);
  EXPECT_THAT(f.status().message(), HasSubstr("payload length 4294967295 exceeds limit of 1024"));
  // Nothing after the header was consumed: the reader stopped at the header.
  uint8_t after[3] = {};
  ASSERT_TRUE(b->ReadAll(after, sizeof(after), In(kLong)).ok());
  EXPECT_EQ(std::memcmp(after, marker, sizeof(marker)), 0);
}

TEST(FrameStreamTest, RoundTripOverLoopbackTcp) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  const auto big = Bytes(3 << 20, 9);  // larger than socket buffers: needs concurrency
  std::thread client([&] {
    auto conn = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    for (uint32_t tag = 0; tag < 3; ++tag) {
      ASSERT_TRUE(WriteFrame(**conn, FrameType::kDense, tag, big.data(), big.size(), In(kLong)).ok());
    }
    auto reply = ReadFrame(**conn, FrameLimits{}, In(kLong));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->header.type, FrameType::kBye);
  });
  auto server = (*listener)->Accept(In(kLong));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  for (uint32_t tag = 0; tag < 3; ++tag) {
    auto f = ReadFrame(**server, FrameLimits{}, In(kLong));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->header.tag, tag);
    EXPECT_TRUE(f->payload == big);
  }
  ASSERT_TRUE(WriteFrame(**server, FrameType::kBye, 0, nullptr, 0, In(kLong)).ok());
  client.join();
}

TEST(HelloTest, RoundTripAndRejections) {
  Hello hello;
  hello.job_id = "resnet-wan-7";
  hello.cluster_index = 3;
  auto encoded = EncodeHello(hello);
  ASSERT_TRUE(encoded.ok());
  auto decoded = DecodeHello(encoded->data(), encoded->size());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->job_id, "resnet-wan-7");
  EXPECT_EQ(decoded->cluster_index, 3u);

  auto truncated = DecodeHello(encoded->data(), encoded->size() - 1);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(truncated.status().message(), HasSubstr("implies 18 bytes, got 17"));
  EXPECT_EQ(DecodeHello(encoded->data(), 3).status().code(), StatusCode::kDataLoss);

  hello.job_id = "";
  EXPECT_EQ(EncodeHello(hello).status().code(), StatusCode::kInvalidArgument);
  hello.job_id = std::string(kMaxHelloJobIdBytes + 1, 'x');
  EXPECT_EQ(EncodeHello(hello).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace net
}  // namespace stella
