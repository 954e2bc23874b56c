#include "tests/metrics/test_http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

namespace stella {
namespace metrics {
namespace testing {

StatusOr<int> ConnectLoopback(int port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("connect 127.0.0.1:" + std::to_string(port), err);
  }
  return fd;
}

StatusOr<std::string> ReadToEof(int fd) {
  std::string raw;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) return raw;
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("recv after " + std::to_string(raw.size()) + " bytes", errno);
    }
    raw.append(buffer, static_cast<size_t>(n));
  }
}

StatusOr<HttpResponse> ParseResponse(const std::string& raw) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    return DataLossError("response has no complete head: \"" + raw.substr(0, 200) + "\"");
  }
  HttpResponse response;
  size_t line_start = 0;
  size_t line_end = raw.find("\r\n");
  const std::string status_line = raw.substr(0, line_end);
  if (status_line.size() < 12 || status_line.compare(0, 7, "HTTP/1.") != 0 || status_line[8] != ' ') {
    return DataLossError("bad status line \"" + status_line + "\"");
  }
  response.status = std::stoi(status_line.substr(9, 3));
  line_start = line_end + 2;
  while (line_start < head_end) {
    line_end = raw.find("\r\n", line_start);
    const std::string line = raw.substr(line_start, line_end - line_start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return DataLossError("bad header line \"" + line + "\"");
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    response.headers[name] = value;
    line_start = line_end + 2;
  }
  response.body = raw.substr(head_end + 4);
  auto length = response.headers.find("content-length");
  if (length != response.headers.end() && std::to_string(response.body.size()) != length->second) {
    return DataLossError("body has " + std::to_string(response.body.size()) + " bytes, Content-Length says " +
                         length->second);
  }
  return response;
}

StatusOr<HttpResponse> SendRawRequest(int port, const std::string& raw_request, std::chrono::milliseconds timeout) {
  STELLA_ASSIGN_OR_RETURN(const int fd, ConnectLoopback(port, timeout));
  size_t sent = 0;
  while (sent < raw_request.size()) {
    const ssize_t n = ::send(fd, raw_request.data() + sent, raw_request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoError("send", err);
    }
    sent += static_cast<size_t>(n);
  }
  StatusOr<std::string> raw = ReadToEof(fd);
  ::close(fd);
  if (!raw.ok()) return raw.status();
  return ParseResponse(*raw);
}

StatusOr<HttpResponse> HttpGet(int port, const std::string& target, std::chrono::milliseconds timeout) {
  return SendRawRequest(
      port, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\nConnection: close\r\n\r\n",
      timeout);
}

StatusOr<int> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("bind/getsockname 127.0.0.1:0", err);
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

}  // namespace testing
}  // namespace metrics
}  // namespace stella
