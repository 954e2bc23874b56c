#include "src/net/tcp.h"

#include "src/net/internal/tcp_info.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

namespace stella {
namespace net {
namespace {

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;  // a closed peer yields EPIPE, not SIGPIPE
#else
constexpr int kSendFlags = 0;
#endif

constexpr std::chrono::milliseconds kInitialBackoff(50);
constexpr std::chrono::milliseconds kMaxBackoff(1000);

// Milliseconds until `deadline` for poll(2), rounded up so that a poll that
// times out has really reached the deadline; 0 if it already passed.
int PollTimeoutMs(Clock::TimePoint deadline) {
  const auto now = std::chrono::steady_clock::now();
  if (deadline <= now) return 0;
  const auto remaining = deadline - now;
  // Cap first so that a far deadline (TimePoint::max()) cannot overflow.
  if (remaining > std::chrono::hours(1)) return 3600 * 1000;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

bool Expired(Clock::TimePoint deadline) { return std::chrono::steady_clock::now() >= deadline; }

Status SetNonBlockingCloexec(int fd) {
  const int fl = ::fcntl(fd, F_GETFL, 0);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return ErrnoError("fcntl(O_NONBLOCK)", errno);
  const int fdfl = ::fcntl(fd, F_GETFD, 0);
  if (fdfl < 0 || ::fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return ErrnoError("fcntl(FD_CLOEXEC)", errno);
  return Status::Ok();
}

// A pipe whose read end becomes readable when Shutdown writes a byte; it is
// never drained, so every later poll sees it too.
Status MakeWakePipe(int* read_end, int* write_end) {
  int fds[2];
  if (::pipe(fds) != 0) return ErrnoError("pipe for shutdown wake-up", errno);
  for (int fd : fds) {
    Status s = SetNonBlockingCloexec(fd);
    if (!s.ok()) {
      ::close(fds[0]);
      ::close(fds[1]);
      return s;
    }
  }
  *read_end = fds[0];
  *write_end = fds[1];
  return Status::Ok();
}

void Wake(int write_end) {
  const char byte = 1;
  ssize_t r;
  do {
    r = ::write(write_end, &byte, 1);
  } while (r < 0 && errno == EINTR);
  // EAGAIN means the pipe is already full, i.e. already readable: fine.
}

std::string FormatAddress(const sockaddr* addr, socklen_t len) {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(addr, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  if (addr->sa_family == AF_INET6) return "[" + std::string(host) + "]:" + serv;
  return std::string(host) + ":" + serv;
}

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// Outcome of one connect attempt to one address.
struct ConnectAttempt {
  int fd = -1;  // >= 0 on success
  int err = 0;  // errno on failure
  bool timed_out = false;
};

ConnectAttempt ConnectOne(const addrinfo* ai, Clock::TimePoint deadline) {
  ConnectAttempt out;
  const int fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) {
    out.err = errno;
    return out;
  }
  if (!SetNonBlockingCloexec(fd).ok()) {
    out.err = errno;
    ::close(fd);
    return out;
  }
  int rc;
  do {
    rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    out.err = errno;
    ::close(fd);
    return out;
  }
  if (rc != 0) {  // EINPROGRESS: wait for the handshake
    while (true) {
      pollfd p{fd, POLLOUT, 0};
      const int pr = ::poll(&p, 1, PollTimeoutMs(deadline));
      if (pr < 0 && errno == EINTR) continue;
      if (pr < 0) {
        out.err = errno;
        ::close(fd);
        return out;
      }
      if (pr == 0) {
        if (!Expired(deadline)) continue;
        out.timed_out = true;
        ::close(fd);
        return out;
      }
      break;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    if (so_error != 0) {
      out.err = so_error;
      ::close(fd);
      return out;
    }
  }
  out.fd = fd;
  return out;
}

}  // namespace

// ---------------------------------------------------------------- TcpStream

StatusOr<std::unique_ptr<TcpStream>> TcpStream::Adopt(int fd, std::string peer) {
  if (fd < 0) return InvalidArgumentError("TcpStream::Adopt: invalid fd " + std::to_string(fd));
  Status s = SetNonBlockingCloexec(fd);
  if (s.ok()) {
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 && errno != EOPNOTSUPP &&
        errno != ENOPROTOOPT) {  // not TCP (e.g. a socketpair): no Nagle
      s = ErrnoError("setsockopt(TCP_NODELAY)", errno);
    }
  }
  int wake_read = -1;
  int wake_write = -1;
  if (s.ok()) s = MakeWakePipe(&wake_read, &wake_write);
  if (!s.ok()) {
    ::close(fd);
    return s.WithContext("tcp " + peer);
  }
  return std::unique_ptr<TcpStream>(new TcpStream(fd, wake_read, wake_write, std::move(peer)));
}

TcpStream::TcpStream(int fd, int wake_read, int wake_write, std::string peer)
    : fd_(fd), wake_read_(wake_read), wake_write_(wake_write), peer_(std::move(peer)) {}

TcpStream::~TcpStream() {
  ::close(fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}

void TcpStream::Shutdown() {
  if (shut_down_.exchange(true)) return;
  ::shutdown(fd_, SHUT_RDWR);  // tells the peer; errors (not connected) are irrelevant
  Wake(wake_write_);
}

Status TcpStream::WaitFor(short events, Clock::TimePoint deadline, const char* op, size_t done, size_t total) {
  while (true) {
    if (shut_down_.load()) {
      return CancelledError("tcp " + peer_ + ": " + op + " cancelled by Shutdown after " + std::to_string(done) +
                            " of " + std::to_string(total) + " bytes");
    }
    if (Expired(deadline)) {
      return DeadlineExceededError("tcp " + peer_ + ": " + op + " deadline exceeded after " + std::to_string(done) +
                                   " of " + std::to_string(total) + " bytes");
    }
    pollfd fds[2] = {{fd_, events, 0}, {wake_read_, POLLIN, 0}};
    const int pr = ::poll(fds, 2, PollTimeoutMs(deadline));
    if (pr < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("tcp " + peer_ + ": poll", errno);
    }
    if (pr == 0) continue;              // loop re-checks the deadline
    if (fds[1].revents != 0) continue;  // loop reports Cancelled
    // Ready, or POLLERR/POLLHUP: the next send/recv reports the specific error.
    return Status::Ok();
  }
}

Status TcpStream::WriteAll(const void* data, size_t n, Clock::TimePoint deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    if (shut_down_.load()) {
      return CancelledError("tcp " + peer_ + ": write cancelled by Shutdown after " + std::to_string(done) + " of " +
                            std::to_string(n) + " bytes");
    }
    const ssize_t w = ::send(fd_, p + done, n - done, kSendFlags);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      STELLA_RETURN_IF_ERROR(WaitFor(POLLOUT, deadline, "write", done, n));
      continue;
    }
    const int err = (w < 0) ? errno : EPIPE;
    if (shut_down_.load()) continue;  // our own shutdown(2): report Cancelled above
    if (err == EPIPE || err == ECONNRESET) {
      return UnavailableError("tcp " + peer_ + ": peer closed connection after " + std::to_string(done) + " of " +
                              std::to_string(n) + " bytes written (" + std::strerror(err) + ")");
    }
    return ErrnoError("tcp " + peer_ + ": send", err);
  }
  return Status::Ok();
}

Status TcpStream::ReadAll(void* data, size_t n, Clock::TimePoint deadline) {
  size_t done = 0;
  return Read(static_cast<uint8_t*>(data), n, /*all=*/true, deadline, &done);
}

StatusOr<size_t> TcpStream::ReadSome(void* data, size_t max, Clock::TimePoint deadline) {
  if (max == 0) return InvalidArgumentError("tcp " + peer_ + ": ReadSome: max must be > 0");
  size_t done = 0;
  STELLA_RETURN_IF_ERROR(Read(static_cast<uint8_t*>(data), max, /*all=*/false, deadline, &done));
  return done;
}

Status TcpStream::Read(uint8_t* p, size_t n, bool all, Clock::TimePoint deadline, size_t* done_out) {
  size_t& done = *done_out;
  while (done < n) {
    if (shut_down_.load()) {
      return CancelledError("tcp " + peer_ + ": read cancelled by Shutdown after " + std::to_string(done) + " of " +
                            std::to_string(n) + " bytes");
    }
    const ssize_t r = ::recv(fd_, p + done, n - done, 0);
    if (r > 0) {
      done += static_cast<size_t>(r);
      if (!all) return Status::Ok();
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      STELLA_RETURN_IF_ERROR(WaitFor(POLLIN, deadline, "read", done, n));
      continue;
    }
    const int err = (r < 0) ? errno : 0;
    if (shut_down_.load()) continue;  // EOF caused by our own shutdown(2)
    if (r == 0 || err == ECONNRESET) {
      return UnavailableError("tcp " + peer_ + ": peer closed connection after " + std::to_string(done) + " of " +
                              std::to_string(n) + " bytes" + (r == 0 ? "" : " (connection reset)"));
    }
    return ErrnoError("tcp " + peer_ + ": recv", err);
  }
  return Status::Ok();
}

// --------------------------------------------------------------- TcpConnect

StatusOr<std::unique_ptr<Stream>> TcpConnect(const std::string& host, int port, Clock::TimePoint deadline) {
  const std::string target = HostPort(host, port);
  if (port <= 0 || port > 65535) {
    return InvalidArgumentError("connect to " + target + ": port must be in [1, 65535], got " + std::to_string(port));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port_str = std::to_string(port);
  Clock::Duration backoff = kInitialBackoff;
  int attempts = 0;
  std::string last_error;
  while (true) {
    ++attempts;
    addrinfo* res = nullptr;
    const int gai = ::getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res);
    if (gai != 0) {
      last_error = std::string("resolve: ") + ::gai_strerror(gai);
      if (gai != EAI_AGAIN) return UnavailableError("connect to " + target + ": " + last_error);
    } else {
      bool retryable = false;
      std::string hard_error;
      for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        const ConnectAttempt a = ConnectOne(ai, deadline);
        if (a.fd >= 0) {
          const std::string peer = FormatAddress(ai->ai_addr, ai->ai_addrlen);
          ::freeaddrinfo(res);
          STELLA_ASSIGN_OR_RETURN(std::unique_ptr<TcpStream> s, TcpStream::Adopt(a.fd, peer));
          return std::unique_ptr<Stream>(std::move(s));
        }
        if (a.timed_out) {
          ::freeaddrinfo(res);
          return DeadlineExceededError("connect to " + target + ": deadline exceeded during TCP " +
                                       "handshake (attempt " + std::to_string(attempts) + ")");
        }
        last_error = std::strerror(a.err);
        if (a.err == ECONNREFUSED) {
          retryable = true;
        } else {
          hard_error = last_error;
        }
      }
      ::freeaddrinfo(res);
      if (!retryable) {
        return UnavailableError("connect to " + target + ": " +
                                (hard_error.empty() ? std::string("no usable address") : hard_error));
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return DeadlineExceededError("connect to " + target + ": deadline exceeded after " + std::to_string(attempts) +
                                   " attempts; last error: " + last_error);
    }
    std::this_thread::sleep_until(std::min<Clock::TimePoint>(now + backoff, deadline));
    backoff = std::min<Clock::Duration>(backoff * 2, kMaxBackoff);
  }
}

// -------------------------------------------------------------- TcpListener

StatusOr<std::unique_ptr<TcpListener>> TcpListener::Create(const std::string& host, int port) {
  Options options;
  options.host = host;
  options.port = port;
  return Create(options);
}

StatusOr<std::unique_ptr<TcpListener>> TcpListener::Create(const Options& options) {
  const std::string target = HostPort(options.host.empty() ? "*" : options.host, options.port);
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgumentError("listen on " + target + ": port must be in [0, 65535], got " +
                                std::to_string(options.port));
  }
  if (options.backlog <= 0) {
    return InvalidArgumentError("listen on " + target + ": backlog must be > 0, got " +
                                std::to_string(options.backlog));
  }
  addrinfo hints{};
  hints.ai_family = options.host.empty() ? AF_INET : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  const std::string port_str = std::to_string(options.port);
  addrinfo* res = nullptr;
  const int gai = ::getaddrinfo(options.host.empty() ? nullptr : options.host.c_str(), port_str.c_str(), &hints, &res);
  if (gai != 0) {
    return UnavailableError("listen on " + target + ": resolve: " + ::gai_strerror(gai));
  }
  std::string last_error = "no address";
  int fd = -1;
  for (const addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    const int one = 1;
    // Lets a restarted gateway rebind its port while old connections linger
    // in TIME_WAIT.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const char* step = nullptr;
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      step = "bind";
    } else if (::listen(fd, options.backlog) != 0) {
      step = "listen";
    } else if (!SetNonBlockingCloexec(fd).ok()) {
      step = "fcntl";
    }
    if (step != nullptr) {
      last_error = std::string(step) + ": " + std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return UnavailableError("listen on " + target + ": " + last_error);

  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("listen on " + target + ": getsockname", err);
  }
  int bound_port = 0;
  if (addr.ss_family == AF_INET) {
    bound_port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    bound_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  int wake_read = -1;
  int wake_write = -1;
  Status s = MakeWakePipe(&wake_read, &wake_write);
  if (!s.ok()) {
    ::close(fd);
    return s.WithContext("listen on " + target);
  }
  return std::unique_ptr<TcpListener>(new TcpListener(fd, wake_read, wake_write, bound_port,
                                                      FormatAddress(reinterpret_cast<const sockaddr*>(&addr), len)));
}

TcpListener::TcpListener(int fd, int wake_read, int wake_write, int port, std::string address)
    : fd_(fd), wake_read_(wake_read), wake_write_(wake_write), port_(port), address_(std::move(address)) {}

TcpListener::~TcpListener() {
  ::close(fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}

void TcpListener::Shutdown() {
  if (shut_down_.exchange(true)) return;
  Wake(wake_write_);
}

StatusOr<std::unique_ptr<Stream>> TcpListener::Accept(Clock::TimePoint deadline) {
  while (true) {
    if (shut_down_.load()) return CancelledError("accept on " + address_ + ": listener shut down");
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    if (fd >= 0) {
      STELLA_ASSIGN_OR_RETURN(std::unique_ptr<TcpStream> s,
                              TcpStream::Adopt(fd, FormatAddress(reinterpret_cast<const sockaddr*>(&addr), len)));
      return std::unique_ptr<Stream>(std::move(s));
    }
    const int err = errno;
    // A client that gave up between SYN and accept is not our error.
    if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) return ErrnoError("accept on " + address_, err);
    if (Expired(deadline)) {
      return DeadlineExceededError("accept on " + address_ + ": deadline exceeded with no incoming connection");
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    const int pr = ::poll(fds, 2, PollTimeoutMs(deadline));
    if (pr < 0 && errno != EINTR) return ErrnoError("accept on " + address_ + ": poll", errno);
  }
}

double TcpStream::DeliveryRateBytesPerSecond() const { return internal::KernelDeliveryRate(fd_); }

}  // namespace net
}  // namespace stella
