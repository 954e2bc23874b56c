#include "src/metrics/exposer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <utility>

#include "src/metrics/http_request.h"

namespace stella {
namespace metrics {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";
// After responding, how long to keep reading what the client still sends so
// that closing with unread input does not reset the connection (and destroy
// the response in flight). Bounded so a client that never closes costs little.
constexpr std::chrono::milliseconds kMaxLingerTime{1000};
constexpr size_t kMaxLingerBytes = 64 * 1024;

bool IsBuiltinPath(const std::string& path) { return path == "/metrics" || path == "/healthz" || path == "/readyz"; }

const char* ReasonPhrase(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

// Closes a file descriptor on scope exit unless released.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace

struct Exposer::Response {
  int code = 200;
  std::string content_type = kTextContentType;
  std::string body;
  bool allow_get_header = false;  // for 405

  std::string Format() const {
    std::string out = "HTTP/1.1 " + std::to_string(code) + " " + ReasonPhrase(code) + "\r\n";
    out += "Content-Type: " + content_type + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (allow_get_header) out += "Allow: GET\r\n";
    out += "Connection: close\r\n\r\n";
    out += body;
    return out;
  }
};

StatusOr<std::unique_ptr<Exposer>> Exposer::Create(const ExposerOptions& options, const Registry* registry) {
  if (registry == nullptr) return InvalidArgumentError("Exposer: registry must not be null");
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgumentError("Exposer: port must be in [0, 65535], got " + std::to_string(options.port));
  }
  if (options.read_timeout.count() <= 0 || options.write_timeout.count() <= 0) {
    return InvalidArgumentError("Exposer: read_timeout and write_timeout must be > 0, got " +
                                std::to_string(options.read_timeout.count()) + "ms and " +
                                std::to_string(options.write_timeout.count()) + "ms");
  }
  if (options.max_request_head_bytes == 0 || options.backlog <= 0) {
    return InvalidArgumentError("Exposer: max_request_head_bytes and backlog must be > 0");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* resolved = nullptr;
  const std::string port_text = std::to_string(options.port);
  const int gai = ::getaddrinfo(options.bind_address.c_str(), port_text.c_str(), &hints, &resolved);
  if (gai != 0 || resolved == nullptr) {
    return InvalidArgumentError("Exposer: bind_address \"" + options.bind_address +
                                "\" is not a numeric IPv4/IPv6 address: " + ::gai_strerror(gai));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> resolved_owner(resolved, &::freeaddrinfo);
  const std::string where = options.bind_address + ":" + port_text;

  // Non-blocking so that accept() after a poll() never blocks when the
  // client has already given up.
  ScopedFd listen_fd(::socket(resolved->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (listen_fd.get() < 0) return ErrnoError("Exposer: socket() for " + where, errno);
  const int one = 1;
  if (::setsockopt(listen_fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return ErrnoError("Exposer: setsockopt(SO_REUSEADDR) for " + where, errno);
  }
  if (::bind(listen_fd.get(), resolved->ai_addr, resolved->ai_addrlen) != 0) {
    return ErrnoError("Exposer: bind " + where, errno);
  }
  if (::listen(listen_fd.get(), options.backlog) != 0) {
    return ErrnoError("Exposer: listen on " + where, errno);
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(listen_fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return ErrnoError("Exposer: getsockname for " + where, errno);
  }
  const int port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
                                               : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return ErrnoError("Exposer: pipe2 for the wake-up pipe", errno);
  }
  return std::unique_ptr<Exposer>(new Exposer(options, registry, listen_fd.release(), pipe_fds[0], pipe_fds[1], port));
}

Exposer::Exposer(const ExposerOptions& options, const Registry* registry, int listen_fd, int wake_read_fd,
                 int wake_write_fd, int port)
    : options_(options),
      registry_(registry),
      listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

Exposer::~Exposer() {
  stopping_.store(true);
  // The pipe is never drained, so every later poll() in the acceptor thread
  // returns at once as well.
  const char byte = 'x';
  while (::write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
}

void Exposer::Handle(const std::string& path, std::function<std::string()> body) {
  STELLA_CHECK(!path.empty() && path[0] == '/');
  STELLA_CHECK(!IsBuiltinPath(path));
  STELLA_CHECK(body != nullptr);
  MutexLock lock(&handlers_mutex_);
  handlers_[path] = std::move(body);
}

void Exposer::AcceptLoop() {
  ::pthread_setname_np(::pthread_self(), "stella-exposer");
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    // No timeout needed: the destructor wakes this poll through the pipe.
    const int ready = ::poll(fds, 2, -1);
    if (ready < 0 && errno != EINTR) break;  // only EFAULT/EINVAL/ENOMEM: unrecoverable
    if (stopping_.load() || fds[1].revents != 0) break;
    if (ready <= 0 || fds[0].revents == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      // Out of descriptors or memory: back off instead of spinning on a
      // listening socket that stays readable.
      pollfd wake{wake_read_fd_, POLLIN, 0};
      ::poll(&wake, 1, 50);
      continue;
    }
    ServeConnection(fd);
    ::close(fd);
  }
}

bool Exposer::WaitFor(int fd, short events, SteadyClock::time_point deadline) {
  while (true) {
    const auto now = SteadyClock::now();
    if (now >= deadline || stopping_.load()) return false;
    const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    pollfd fds[2] = {{fd, events, 0}, {wake_read_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(remaining.count(), 60000)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (fds[1].revents != 0) return false;
    // Errors and hang-ups count as ready: the next recv/send reports them.
    if (fds[0].revents != 0) return true;
  }
}

bool Exposer::WriteAll(int fd, const std::string& data, SteadyClock::time_point deadline) {
  size_t offset = 0;
  while (offset < data.size()) {
    const ssize_t n = ::send(fd, data.data() + offset, data.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      offset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return false;
      continue;
    }
    return false;  // peer reset or closed
  }
  return true;
}

void Exposer::ServeConnection(int fd) {
  const auto read_deadline = SteadyClock::now() + options_.read_timeout;
  auto respond = [&](const Response& response) {
    if (!WriteAll(fd, response.Format(), SteadyClock::now() + options_.write_timeout)) return;
    ::shutdown(fd, SHUT_WR);
    // Lingering close: read (and drop) whatever the client still sends until
    // it closes, so unread input does not turn our close into a reset.
    const auto linger_deadline =
        SteadyClock::now() + std::min<std::chrono::milliseconds>(options_.read_timeout, kMaxLingerTime);
    size_t drained = 0;
    char sink[4096];
    while (drained < kMaxLingerBytes && WaitFor(fd, POLLIN, linger_deadline)) {
      const ssize_t n = ::recv(fd, sink, sizeof(sink), 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) break;
      if (n > 0) drained += static_cast<size_t>(n);
    }
  };
  auto error = [](int code, std::string body) {
    Response response;
    response.code = code;
    response.body = std::move(body);
    return response;
  };

  std::string buffer;
  char chunk[4096];
  size_t head_end = std::string::npos;
  while ((head_end = FindRequestHeadEnd(buffer)) == std::string::npos) {
    if (buffer.size() > options_.max_request_head_bytes) {
      return respond(
          error(431, "request head exceeds " + std::to_string(options_.max_request_head_bytes) + " bytes\n"));
    }
    if (!WaitFor(fd, POLLIN, read_deadline)) {
      if (stopping_.load()) return;
      return respond(
          error(408, "request head not received within " + std::to_string(options_.read_timeout.count()) + "ms\n"));
    }
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0) {
      // The client finished sending without completing a head. Nothing at
      // all (a port probe) gets no answer; a fragment gets 400.
      if (buffer.find_first_not_of("\r\n") == std::string::npos) return;
      return respond(error(400, "incomplete request head\n"));
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return;  // reset by peer: nobody to answer
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
  if (head_end > options_.max_request_head_bytes) {
    return respond(error(431, "request head exceeds " + std::to_string(options_.max_request_head_bytes) + " bytes\n"));
  }
  respond(Route(buffer.substr(0, head_end)));
}

Exposer::Response Exposer::Route(const std::string& head) {
  Response response;
  StatusOr<HttpRequest> request = ParseRequestHead(head);
  if (!request.ok()) {
    response.code = 400;
    response.body = "bad request: " + request.status().message() + "\n";
    return response;
  }
  if (request->version_major != 1) {
    response.code = 505;
    response.body = "only HTTP/1.x is served\n";
    return response;
  }
  if (request->method != "GET") {
    response.code = 405;
    response.allow_get_header = true;
    response.body = "method " + request->method + " not allowed; use GET\n";
    return response;
  }
  const std::string& path = request->path;
  try {
    if (path == "/metrics") {
      response.content_type = kMetricsContentType;
      response.body = registry_->Serialize();
    } else if (path == "/healthz") {
      response.body = "ok";
    } else if (path == "/readyz") {
      const bool ready = ready_.load(std::memory_order_relaxed);
      response.code = ready ? 200 : 503;
      response.body = ready ? "ok" : "not ready";
    } else {
      std::function<std::string()> handler;
      {
        MutexLock lock(&handlers_mutex_);
        auto it = handlers_.find(path);
        if (it != handlers_.end()) handler = it->second;
      }
      if (handler) {
        response.body = handler();
      } else {
        response.code = 404;
        response.body = "not found\n";
      }
    }
  } catch (const std::exception& e) {
    response = Response();
    response.code = 500;
    response.body = std::string("handler failed: ") + e.what() + "\n";
  } catch (...) {
    response = Response();
    response.code = 500;
    response.body = "handler failed\n";
  }
  return response;
}

}  // namespace metrics
}  // namespace stella
