// Exposer: a small HTTP/1.1 server that lets Prometheus scrape a Registry.
//
// Routes (GET only; other methods get 405, malformed requests 400):
//   /metrics  -> 200, Registry::Serialize(), Content-Type
//                "text/plain; version=0.0.4; charset=utf-8"
//   /healthz  -> 200 "ok" while the process serves at all (liveness)
//   /readyz   -> 200 "ok" when ready, 503 "not ready" otherwise (SetReady)
//   paths registered with Handle() -> 200 with the handler's text
//   anything else -> 404
// Every response carries "Connection: close".
//
// One owned acceptor thread serves connections one at a time, which is
// plenty for a scrape endpoint; per-connection read and write deadlines keep a
// slow or silent client from wedging it. Plain POSIX sockets.
//
// Thread safety: all public methods are thread-safe. Handle() and SetReady()
// may be called at any time, before or while serving. The destructor stops
// and joins the acceptor thread; it must not run concurrently with other
// calls on the same Exposer.
#ifndef STELLA_SRC_METRICS_EXPOSER_H_
#define STELLA_SRC_METRICS_EXPOSER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/metrics/registry.h"

namespace stella {
namespace metrics {

struct ExposerOptions {
  // Numeric IPv4 or IPv6 address to bind. Default "127.0.0.1" (local only);
  // "0.0.0.0" (or "::") to be scraped from other hosts.
  std::string bind_address = "127.0.0.1";
  // TCP port; default 0 picks a free ephemeral port (see Exposer::port()).
  int port = 0;
  // How long a connection may take to deliver its complete request head.
  // Default 5 s: generous for a scraper, short enough that a stuck client
  // delays others only briefly. Must be > 0.
  std::chrono::milliseconds read_timeout{5000};
  // How long writing one response may take. Default 5 s. Must be > 0.
  std::chrono::milliseconds write_timeout{5000};
  // Requests whose head exceeds this many bytes get 431. Default 16 KiB.
  size_t max_request_head_bytes = 16 * 1024;
  // listen(2) backlog. Default 16.
  int backlog = 16;
};

class Exposer {
 public:
  // Binds, listens and starts serving `registry`, which must outlive the
  // Exposer (it is only read, through Serialize()). InvalidArgument for bad
  // options or a null registry; IoError when the address cannot be bound.
  static StatusOr<std::unique_ptr<Exposer>> Create(const ExposerOptions& options, const Registry* registry);
  ~Exposer();
  Exposer(const Exposer&) = delete;
  Exposer& operator=(const Exposer&) = delete;

  // The bound TCP port (the ephemeral one when options.port was 0).
  int port() const { return port_; }

  // Readiness reported on /readyz. Starts ready.
  void SetReady(bool ready) { ready_.store(ready, std::memory_order_relaxed); }

  // Serves GET `path` with 200 and the text `body()` returns (Content-Type
  // "text/plain; charset=utf-8"); re-registering a path replaces its handler.
  // `path` must start with '/' and not be one of the built-in routes
  // (STELLA_CHECK). `body` runs on the acceptor thread, without Exposer locks
  // held; if it throws, the client gets 500.
  void Handle(const std::string& path, std::function<std::string()> body);

 private:
  struct Response;

  Exposer(const ExposerOptions& options, const Registry* registry, int listen_fd, int wake_read_fd, int wake_write_fd,
          int port);
  void AcceptLoop();
  void ServeConnection(int fd);
  Response Route(const std::string& head);
  // Waits for `events` on `fd` until `deadline`; false on timeout, shutdown
  // or error.
  bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline);
  bool WriteAll(int fd, const std::string& data, std::chrono::steady_clock::time_point deadline);

  const ExposerOptions options_;
  // Not owned; the caller guarantees it outlives this Exposer (see Create).
  const Registry* const registry_;
  const int listen_fd_;
  // Self-pipe: the destructor writes a byte so that every poll() in the
  // acceptor thread (accept, reads, writes) wakes up at once.
  const int wake_read_fd_;
  const int wake_write_fd_;
  const int port_;
  std::atomic<bool> ready_{true};
  std::atomic<bool> stopping_{false};

  Mutex handlers_mutex_;
  std::map<std::string, std::function<std::string()>> handlers_ GUARDED_BY(handlers_mutex_);

  // Started last in the constructor, joined in the destructor.
  std::thread acceptor_;
};

}  // namespace metrics
}  // namespace stella

#endif  // STELLA_SRC_METRICS_EXPOSER_H_
