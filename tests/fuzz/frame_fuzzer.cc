// Fuzzes the WAN frame decoder (src/net/frame.h): DecodeFrameHeader on the raw
// bytes, ReadFrame over an in-memory stream that carries the bytes and then
// closes, and DecodeHello on both the raw bytes and every Hello payload read.
//
// Invariants (abort on violation):
//  - a decoded header re-encodes to exactly the 16 bytes it came from and
//    respects FrameLimits;
//  - every frame ReadFrame accepts, written again with WriteFrame, is byte for
//    byte the slice of the input it was read from (so the checksum, length and
//    header fields were all honoured), and frames tile the input in order;
//  - ReadFrame fails only with the documented codes; an error before any byte
//    of a frame was consumed happens only at the end of the input;
//  - a decoded Hello re-encodes to exactly its payload.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "src/net/frame.h"
#include "src/net/memory_stream.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::net {
namespace {

// Far above libFuzzer's default max_len (4096), so every frame the input can
// hold is readable, yet small enough that a hostile length costs little.
constexpr size_t kMaxPayload = 64 * 1024;

std::string CodeName(const Status& s) { return StatusCodeName(s.code()); }

void CheckHello(const uint8_t* data, size_t n) {
  StatusOr<Hello> hello = DecodeHello(data, n);
  if (!hello.ok()) {
    FUZZ_CHECK(hello.status().code() == StatusCode::kDataLoss, hello.status().ToString());
    return;
  }
  FUZZ_CHECK(!hello->job_id.empty() && hello->job_id.size() <= kMaxHelloJobIdBytes,
             "job id of " + std::to_string(hello->job_id.size()) + " bytes");
  StatusOr<std::vector<uint8_t>> again = EncodeHello(*hello);
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->size() == n && std::memcmp(again->data(), data, n) == 0,
             "EncodeHello(DecodeHello(x)) != x for a " + std::to_string(n) + "-byte payload");
}

void CheckHeader(const uint8_t* data, size_t size, const FrameLimits& limits) {
  StatusOr<FrameHeader> h = DecodeFrameHeader(data, size, limits);
  if (!h.ok()) {
    const StatusCode c = h.status().code();
    FUZZ_CHECK(c == StatusCode::kInvalidArgument || c == StatusCode::kDataLoss ||
                   c == StatusCode::kFailedPrecondition || c == StatusCode::kOutOfRange,
               "unexpected DecodeFrameHeader error " + h.status().ToString());
    FUZZ_CHECK((c == StatusCode::kInvalidArgument) == (size < kFrameHeaderSize),
               h.status().ToString() + " for " + std::to_string(size) + " bytes");
    return;
  }
  FUZZ_CHECK(h->payload_length <= limits.max_payload_bytes,
             "accepted payload length " + std::to_string(h->payload_length));
  FUZZ_CHECK(h->version == kFrameVersion && h->flags == 0, "accepted version/flags");
  uint8_t again[kFrameHeaderSize];
  EncodeFrameHeader(*h, again);
  FUZZ_CHECK(std::memcmp(again, data, kFrameHeaderSize) == 0, "EncodeFrameHeader(DecodeFrameHeader(x)) != x");
}

// WriteFrame's bytes for `frame`, read back through a second memory stream.
std::vector<uint8_t> Reencode(const Frame& frame, Clock::TimePoint deadline, const FrameLimits& limits) {
  const size_t total = kFrameOverheadBytes + frame.payload.size();
  MemoryStreamOptions options;
  options.capacity_bytes = total;
  auto [writer, reader] = CreateMemoryStreamPair(options);
  Status written = WriteFrame(*writer, frame.header.type, frame.header.tag, frame.payload.data(), frame.payload.size(),
                              deadline, limits);
  FUZZ_CHECK(written.ok(), "WriteFrame of a frame ReadFrame accepted: " + written.ToString());
  std::vector<uint8_t> bytes(total);
  Status read = reader->ReadAll(bytes.data(), bytes.size(), deadline);
  FUZZ_CHECK(read.ok(), read.ToString());
  return bytes;
}

void CheckStream(const uint8_t* data, size_t size, const FrameLimits& limits) {
  // The deadline is never reached: the writer closes before reading starts,
  // so every read either finds its bytes or fails at once with end of stream.
  const Clock::TimePoint deadline = SystemClock::Get().Now() + std::chrono::seconds(30);
  MemoryStreamOptions options;
  options.capacity_bytes = size + 1;
  auto [writer, reader] = CreateMemoryStreamPair(options);
  if (size > 0) {
    Status w = writer->WriteAll(data, size, deadline);
    FUZZ_CHECK(w.ok(), w.ToString());
  }
  writer.reset();  // end of stream after the input

  size_t offset = 0;
  for (;;) {
    bool started = true;
    StatusOr<Frame> frame = ReadFrame(*reader, limits, deadline, &started);
    if (!frame.ok()) {
      const StatusCode c = frame.status().code();
      FUZZ_CHECK(c == StatusCode::kUnavailable || c == StatusCode::kDataLoss || c == StatusCode::kFailedPrecondition ||
                     c == StatusCode::kOutOfRange,
                 "unexpected ReadFrame error " + frame.status().ToString());
      if (!started) {
        FUZZ_CHECK(offset == size && c == StatusCode::kUnavailable,
                   "ReadFrame consumed nothing but failed with " + CodeName(frame.status()) + " at offset " +
                       std::to_string(offset) + " of " + std::to_string(size));
      } else {
        FUZZ_CHECK(offset < size, "ReadFrame reported a started frame past the input");
      }
      return;
    }
    FUZZ_CHECK(started, "ReadFrame returned a frame but said none was started");
    const size_t total = kFrameOverheadBytes + frame->payload.size();
    FUZZ_CHECK(frame->header.payload_length == frame->payload.size(),
               "header says " + std::to_string(frame->header.payload_length) + " bytes, payload " +
                   std::to_string(frame->payload.size()));
    FUZZ_CHECK(offset + total <= size, "ReadFrame returned more bytes than the input holds");
    const std::vector<uint8_t> again = Reencode(*frame, deadline, limits);
    FUZZ_CHECK(std::memcmp(again.data(), data + offset, total) == 0, "WriteFrame(ReadFrame(x)) != x for the " +
                                                                         FrameTypeName(frame->header.type) +
                                                                         " frame at offset " + std::to_string(offset));
    if (frame->header.type == FrameType::kHello) {
      CheckHello(frame->payload.data(), frame->payload.size());
    }
    offset += total;
  }
}

}  // namespace
}  // namespace stella::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stella::net::FrameLimits limits;
  limits.max_payload_bytes = stella::net::kMaxPayload;
  stella::net::CheckHeader(data, size, limits);
  stella::net::CheckHello(data, size);
  stella::net::CheckStream(data, size, limits);
  return 0;
}
