#include "src/net/frame.h"

#include <cstdio>
#include <cstring>
#include <limits>

#include "src/base/crc32c.h"

namespace stella {
namespace net {
namespace {

// Frames up to this size are assembled in one buffer so they reach the
// stream as a single write (one TCP segment for small control frames); larger
// ones are written in three pieces to avoid copying the payload.
constexpr size_t kCoalesceLimit = 64 * 1024;

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

bool IsKnownType(uint8_t t) {
  return t >= static_cast<uint8_t>(FrameType::kHello) && t <= static_cast<uint8_t>(FrameType::kHeartbeat);
}

std::string Hex(uint32_t v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%0*X", width, v);
  return buf;
}

std::string Describe(const FrameHeader& h) {
  return FrameTypeName(h.type) + " frame (tag " + std::to_string(h.tag) + ", " + std::to_string(h.payload_length) +
         " payload bytes)";
}

}  // namespace

std::string FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHello: return "Hello";
    case FrameType::kDense: return "Dense";
    case FrameType::kSparse: return "Sparse";
    case FrameType::kControl: return "Control";
    case FrameType::kBye: return "Bye";
    case FrameType::kHeartbeat: return "Heartbeat";
  }
  return "Unknown(" + std::to_string(static_cast<unsigned>(type)) + ")";
}

void EncodeFrameHeader(const FrameHeader& header, uint8_t out[kFrameHeaderSize]) {
  std::memcpy(out, kFrameMagic, 4);
  out[4] = header.version;
  out[5] = static_cast<uint8_t>(header.type);
  PutU16(out + 6, header.flags);
  PutU32(out + 8, header.tag);
  PutU32(out + 12, header.payload_length);
}

StatusOr<FrameHeader> DecodeFrameHeader(const uint8_t* data, size_t n, const FrameLimits& limits) {
  if (n < kFrameHeaderSize) {
    return InvalidArgumentError("frame header: need " + std::to_string(kFrameHeaderSize) + " bytes, got " +
                                std::to_string(n));
  }
  if (std::memcmp(data, kFrameMagic, 4) != 0) {
    return DataLossError("frame header: bad magic " + Hex(GetU32(data), 8) +
                         " (expected \"STLA\"); not a Stella peer or stream out of sync");
  }
  FrameHeader h;
  h.version = data[4];
  if (h.version != kFrameVersion) {
    return FailedPreconditionError("frame header: unsupported version " + std::to_string(h.version) +
                                   " (this build speaks version " + std::to_string(kFrameVersion) + ")");
  }
  if (!IsKnownType(data[5])) {
    return DataLossError("frame header: unknown type " + std::to_string(data[5]) +
                         " (expected 1..6: Hello, Dense, Sparse, Control, Bye, Heartbeat)");
  }
  h.type = static_cast<FrameType>(data[5]);
  h.flags = GetU16(data + 6);
  if (h.flags != 0) {
    return DataLossError("frame header: flags " + Hex(h.flags, 4) + " set, but version 1 defines no flags (must be 0)");
  }
  h.tag = GetU32(data + 8);
  h.payload_length = GetU32(data + 12);
  if (h.payload_length > limits.max_payload_bytes) {
    return OutOfRangeError("frame header: payload length " + std::to_string(h.payload_length) + " exceeds limit of " +
                           std::to_string(limits.max_payload_bytes) + " bytes (FrameLimits.max_payload_bytes)");
  }
  return h;
}

Status WriteFrame(Stream& stream, FrameType type, uint32_t tag, const void* payload, size_t n,
                  Clock::TimePoint deadline, const FrameLimits& limits) {
  if (n > limits.max_payload_bytes || n > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgumentError("WriteFrame: payload of " + std::to_string(n) + " bytes exceeds limit of " +
                                std::to_string(limits.max_payload_bytes) + " bytes (FrameLimits.max_payload_bytes)");
  }
  if (!IsKnownType(static_cast<uint8_t>(type))) {
    return InvalidArgumentError("WriteFrame: unknown frame type " + FrameTypeName(type));
  }
  if (n > 0 && payload == nullptr) return InvalidArgumentError("WriteFrame: null payload");
  FrameHeader h;
  h.type = type;
  h.tag = tag;
  h.payload_length = static_cast<uint32_t>(n);
  uint8_t header[kFrameHeaderSize];
  EncodeFrameHeader(h, header);
  uint8_t trailer[kFrameTrailerSize];
  PutU32(trailer, Crc32c(payload, n, Crc32c(header, sizeof(header))));

  if (n <= kCoalesceLimit) {
    std::vector<uint8_t> buf(kFrameOverheadBytes + n);
    std::memcpy(buf.data(), header, kFrameHeaderSize);
    if (n > 0) std::memcpy(buf.data() + kFrameHeaderSize, payload, n);
    std::memcpy(buf.data() + kFrameHeaderSize + n, trailer, kFrameTrailerSize);
    return stream.WriteAll(buf.data(), buf.size(), deadline).WithContext("writing " + Describe(h));
  }
  STELLA_RETURN_IF_ERROR(
      stream.WriteAll(header, sizeof(header), deadline).WithContext("writing header of " + Describe(h)));
  STELLA_RETURN_IF_ERROR(stream.WriteAll(payload, n, deadline).WithContext("writing payload of " + Describe(h)));
  return stream.WriteAll(trailer, sizeof(trailer), deadline).WithContext("writing checksum of " + Describe(h));
}

StatusOr<Frame> ReadFrame(Stream& stream, const FrameLimits& limits, Clock::TimePoint deadline, bool* frame_started) {
  if (frame_started != nullptr) *frame_started = false;
  uint8_t header[kFrameHeaderSize];
  // The first byte alone, so that an idle link's deadline consumes nothing.
  STELLA_RETURN_IF_ERROR(stream.ReadAll(header, 1, deadline).WithContext("waiting for a frame header"));
  if (frame_started != nullptr) *frame_started = true;
  STELLA_RETURN_IF_ERROR(stream.ReadAll(header + 1, sizeof(header) - 1, deadline).WithContext("reading frame header"));
  Frame frame;
  STELLA_ASSIGN_OR_RETURN(frame.header, DecodeFrameHeader(header, sizeof(header), limits));
  // Allocation happens only now, after the length passed the limit check.
  frame.payload.resize(frame.header.payload_length);
  if (!frame.payload.empty()) {
    STELLA_RETURN_IF_ERROR(stream.ReadAll(frame.payload.data(), frame.payload.size(), deadline)
                               .WithContext("reading payload of " + Describe(frame.header)));
  }
  uint8_t trailer[kFrameTrailerSize];
  STELLA_RETURN_IF_ERROR(
      stream.ReadAll(trailer, sizeof(trailer), deadline).WithContext("reading checksum of " + Describe(frame.header)));
  const uint32_t expected = GetU32(trailer);
  const uint32_t actual = Crc32c(frame.payload.data(), frame.payload.size(), Crc32c(header, sizeof(header)));
  if (actual != expected) {
    return DataLossError("checksum mismatch in " + Describe(frame.header) + ": trailer says " + Hex(expected, 8) +
                         ", computed " + Hex(actual, 8));
  }
  return frame;
}

StatusOr<std::vector<uint8_t>> EncodeHello(const Hello& hello) {
  if (hello.job_id.empty() || hello.job_id.size() > kMaxHelloJobIdBytes) {
    return InvalidArgumentError("Hello.job_id: length must be in [1, " + std::to_string(kMaxHelloJobIdBytes) +
                                "], got " + std::to_string(hello.job_id.size()));
  }
  std::vector<uint8_t> out(6 + hello.job_id.size());
  PutU32(out.data(), hello.cluster_index);
  PutU16(out.data() + 4, static_cast<uint16_t>(hello.job_id.size()));
  std::memcpy(out.data() + 6, hello.job_id.data(), hello.job_id.size());
  return out;
}

StatusOr<Hello> DecodeHello(const uint8_t* data, size_t n) {
  if (n < 6) {
    return DataLossError("Hello payload: need at least 6 bytes, got " + std::to_string(n));
  }
  Hello hello;
  hello.cluster_index = GetU32(data);
  const size_t len = GetU16(data + 4);
  if (len == 0 || len > kMaxHelloJobIdBytes) {
    return DataLossError("Hello payload: job id length " + std::to_string(len) + " outside [1, " +
                         std::to_string(kMaxHelloJobIdBytes) + "]");
  }
  if (n != 6 + len) {
    return DataLossError("Hello payload: job id length " + std::to_string(len) + " implies " + std::to_string(6 + len) +
                         " bytes, got " + std::to_string(n));
  }
  hello.job_id.assign(reinterpret_cast<const char*>(data + 6), len);
  return hello;
}

}  // namespace net
}  // namespace stella
