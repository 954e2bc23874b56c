// TCP transport: a Stream over a non-blocking socket, a connect helper that
// waits for a peer that is still starting, and a listener.
//
// Every blocking call polls with a deadline, so a dead WAN peer never hangs a
// gateway; Shutdown wakes blocked calls through a self-pipe, which works for
// connected and listening sockets alike.
//
// Thread safety: TcpStream follows the Stream contract (one reader and one
// writer concurrently, Shutdown from any thread). TcpListener: Accept from one
// thread at a time, Shutdown from any thread. TcpConnect is reentrant.
#ifndef STELLA_SRC_NET_TCP_H_
#define STELLA_SRC_NET_TCP_H_

#include <atomic>
#include <memory>
#include <string>

#include "src/base/clock.h"
#include "src/base/status.h"
#include "src/net/stream.h"

namespace stella {
namespace net {

class TcpStream final : public Stream {
 public:
  // Takes ownership of `fd`, a connected stream socket (closed even on
  // error). Makes it non-blocking and, for TCP, sets TCP_NODELAY so small
  // control frames are not held back by Nagle's algorithm. `peer` is used
  // only in error messages (e.g. "10.0.0.2:7000").
  static StatusOr<std::unique_ptr<TcpStream>> Adopt(int fd, std::string peer);

  ~TcpStream() override;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override;
  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override;
  // One recv(2) of what the kernel holds, waiting (poll) only while it holds
  // nothing.
  StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) override;
  // Also sends FIN to the peer (shutdown(2) SHUT_RDWR). The fd itself is
  // closed only by the destructor, so a concurrent call never sees a reused fd.
  void Shutdown() override;
  // tcpi_delivery_rate of the connection (Linux >= 4.9); 0 if unavailable.
  double DeliveryRateBytesPerSecond() const override;

  const std::string& peer() const { return peer_; }

 private:
  TcpStream(int fd, int wake_read, int wake_write, std::string peer);
  // Polls fd for `events` (POLLIN/POLLOUT) or the wake pipe until deadline.
  Status WaitFor(short events, Clock::TimePoint deadline, const char* op, size_t done, size_t total);
  // Reads into p[0, n): until n bytes (all) or until at least one (!all).
  Status Read(uint8_t* p, size_t n, bool all, Clock::TimePoint deadline, size_t* done);

  const int fd_;
  const int wake_read_;  // self-pipe: readable once Shutdown was called
  const int wake_write_;
  const std::string peer_;
  std::atomic<bool> shut_down_{false};
};

// Connects to host:port (resolved with getaddrinfo; every returned address is
// tried). While the peer refuses (ECONNREFUSED: not listening yet) or name
// resolution fails temporarily, retries with backoff 50 ms doubling to 1 s
// until `deadline`, then returns kDeadlineExceeded naming the last error.
// Other errors (unknown host, unreachable network) return at once. Caveat:
// getaddrinfo itself cannot be interrupted, so a hung DNS server can delay
// the return past `deadline` by the resolver's own timeout; pass numeric
// addresses where that matters.
StatusOr<std::unique_ptr<Stream>> TcpConnect(const std::string& host, int port, Clock::TimePoint deadline);

class TcpListener {
 public:
  struct Options {
    // Address to bind; "" or "0.0.0.0" listens on all IPv4 interfaces, "::"
    // on all IPv6 ones. Default: loopback only.
    std::string host = "127.0.0.1";
    // 0 picks an ephemeral port; port() reports it. Default 0.
    int port = 0;
    // listen(2) backlog. Default 128.
    int backlog = 128;
  };

  static StatusOr<std::unique_ptr<TcpListener>> Create(const Options& options);
  static StatusOr<std::unique_ptr<TcpListener>> Create(const std::string& host, int port);

  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // The bound port (the ephemeral one if Options.port was 0).
  int port() const { return port_; }

  // Waits for one connection. kDeadlineExceeded if none arrives in time,
  // kCancelled after Shutdown.
  StatusOr<std::unique_ptr<Stream>> Accept(Clock::TimePoint deadline);

  // Makes blocked and future Accept calls return kCancelled. Idempotent.
  void Shutdown();

 private:
  TcpListener(int fd, int wake_read, int wake_write, int port, std::string address);

  const int fd_;
  const int wake_read_;
  const int wake_write_;
  const int port_;
  const std::string address_;  // "host:port", for error messages
  std::atomic<bool> shut_down_{false};
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_TCP_H_
