// MemoryStreamPair: two connected in-process Streams, a loopback transport
// for tests that run every peer as a thread (no sockets, no ports).
//
// Each direction is a bounded byte buffer, so a writer feels back-pressure
// like a socket's send buffer. Destroying or shutting down one end makes the
// other end's reads fail with "peer closed connection after X of Y bytes"
// once buffered bytes are consumed, exactly like TCP.
//
// Thread safety: each end follows the Stream contract (one reader and one
// writer concurrently, Shutdown from any thread); the two ends may be used
// from different threads.
#ifndef STELLA_SRC_NET_MEMORY_STREAM_H_
#define STELLA_SRC_NET_MEMORY_STREAM_H_

#include <cstddef>
#include <memory>
#include <utility>

#include "src/net/stream.h"

namespace stella {
namespace net {

struct MemoryStreamOptions {
  // Bytes each direction buffers before WriteAll blocks; must be > 0.
  // Default 1 MiB.
  size_t capacity_bytes = 1 << 20;
};

// Returns {a, b}: bytes written to a are read from b and vice versa.
std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>> CreateMemoryStreamPair(
    const MemoryStreamOptions& options = {});

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_MEMORY_STREAM_H_
