// A tiny blocking HTTP/1.1 client for the metrics tests: one request per
// connection over loopback, read until the server closes.
//
// Thread safety: free functions without shared state.
#ifndef STELLA_TESTS_METRICS_TEST_HTTP_CLIENT_H_
#define STELLA_TESTS_METRICS_TEST_HTTP_CLIENT_H_

#include <chrono>
#include <map>
#include <string>

#include "src/base/status.h"

namespace stella {
namespace metrics {
namespace testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// Connects to 127.0.0.1:`port`, sends `raw_request` verbatim, reads until EOF
// and parses the response. Each socket operation is bounded by `timeout`.
StatusOr<HttpResponse> SendRawRequest(int port, const std::string& raw_request,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

// GET `target` (e.g. "/metrics") with Host and Connection: close headers.
StatusOr<HttpResponse> HttpGet(int port, const std::string& target,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Opens a blocking TCP connection to 127.0.0.1:`port` with send/receive
// timeouts set; the caller closes the returned fd.
StatusOr<int> ConnectLoopback(int port, std::chrono::milliseconds timeout);

// Reads from `fd` until EOF (or timeout/error, reported as a Status).
StatusOr<std::string> ReadToEof(int fd);

// Parses a raw HTTP/1.x response; checks Content-Length when present.
StatusOr<HttpResponse> ParseResponse(const std::string& raw);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, close).
StatusOr<int> PickFreePort();

}  // namespace testing
}  // namespace metrics
}  // namespace stella

#endif  // STELLA_TESTS_METRICS_TEST_HTTP_CLIENT_H_
