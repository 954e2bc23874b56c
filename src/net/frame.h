// Wire framing for the WAN transport: a fixed 16-byte little-endian header,
// the payload, and a 4-byte CRC32C trailer.
//
//   offset size field
//        0    4 magic "STLA"
//        4    1 version (kFrameVersion = 1)
//        5    1 type (FrameType)
//        6    2 flags (reserved: must be 0 in version 1)
//        8    4 tag (caller-defined: step number, tensor id, ...)
//       12    4 payload length in bytes
//       16    n payload
//     16+n    4 CRC32C over the 16 header bytes and the payload
//
// The header is validated (magic, version, type, flags, length against
// FrameLimits) before the payload buffer is allocated, so a corrupt or hostile
// length cannot make the receiver allocate gigabytes. The trailer covers the
// header too, so a flipped tag or type bit is caught as well as payload damage.
//
// Thread safety: the functions are reentrant; a Stream passed to
// WriteFrame/ReadFrame follows the Stream contract (one writer, one reader).
#ifndef STELLA_SRC_NET_FRAME_H_
#define STELLA_SRC_NET_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "src/base/clock.h"
#include "src/base/status.h"
#include "src/net/stream.h"

namespace stella {
namespace net {

inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr size_t kFrameTrailerSize = 4;
inline constexpr size_t kFrameOverheadBytes = kFrameHeaderSize + kFrameTrailerSize;
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr char kFrameMagic[4] = {'S', 'T', 'L', 'A'};

enum class FrameType : uint8_t {
  kHello = 1,      // handshake; payload from EncodeHello
  kDense = 2,      // dense gradient bytes
  kSparse = 3,     // sparse (indices + values) gradient bytes
  kControl = 4,    // control message (tuner decisions, step barriers)
  kBye = 5,        // orderly end of the connection
  kHeartbeat = 6,  // liveness probe; usually empty
};

// "Hello", "Dense", ...; "Unknown(9)" for values outside the enum.
std::string FrameTypeName(FrameType type);

struct FrameHeader {
  uint8_t version = kFrameVersion;
  FrameType type = FrameType::kControl;
  uint16_t flags = 0;
  uint32_t tag = 0;
  uint32_t payload_length = 0;
};

struct FrameLimits {
  // Largest payload accepted on read or write. Default 256 MiB: one large
  // gradient bucket; bigger tensors must be split by the caller.
  size_t max_payload_bytes = size_t{256} << 20;
};

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

// Writes the 16 header bytes (no validation: encoding is total).
void EncodeFrameHeader(const FrameHeader& header, uint8_t out[kFrameHeaderSize]);

// Parses and validates a header from data[0..n). Errors name the field and
// the values: n < 16 -> kInvalidArgument; bad magic, unknown type, non-zero
// flags -> kDataLoss; a version other than 1 -> kFailedPrecondition; payload
// length above limits.max_payload_bytes -> kOutOfRange.
StatusOr<FrameHeader> DecodeFrameHeader(const uint8_t* data, size_t n, const FrameLimits& limits);

// Writes one frame. n above limits.max_payload_bytes (or 2^32-1) ->
// kInvalidArgument before anything is written. Small frames go out in one
// WriteAll; large ones as header, payload and trailer without copying the
// payload. On error the stream is mid-frame and must be abandoned.
Status WriteFrame(Stream& stream, FrameType type, uint32_t tag, const void* payload, size_t n,
                  Clock::TimePoint deadline, const FrameLimits& limits = {});

// Reads one frame: header errors as DecodeFrameHeader, stream errors as
// Stream::ReadAll (with context naming the frame part), checksum mismatch ->
// kDataLoss. If `frame_started` is given it is set to whether any byte of the
// frame was consumed: an error with *frame_started == false (e.g. a deadline
// with no traffic) leaves the stream aligned, so reading may be retried.
StatusOr<Frame> ReadFrame(Stream& stream, const FrameLimits& limits, Clock::TimePoint deadline,
                          bool* frame_started = nullptr);

// The kHello payload: who is on the other end of a gateway link.
struct Hello {
  std::string job_id;          // the StellaJob's name; at most 1024 bytes
  uint32_t cluster_index = 0;  // index into spec.clusters
};
inline constexpr size_t kMaxHelloJobIdBytes = 1024;

// Layout: u32 cluster_index, u16 job_id length, job_id bytes (little-endian).
StatusOr<std::vector<uint8_t>> EncodeHello(const Hello& hello);
StatusOr<Hello> DecodeHello(const uint8_t* data, size_t n);

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_FRAME_H_
