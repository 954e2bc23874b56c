// A minimal HTTP/1.x request-head parser for the metrics Exposer.
//
// Pure functions over bytes, kept apart from the socket code so the grammar
// (RFC 9112 request-line and header fields) can be tested without a network.
// Only what a scrape endpoint needs: no bodies, no chunked encoding, no
// percent-decoding (paths are compared verbatim).
//
// Thread safety: pure functions; safe from any thread.
#ifndef STELLA_SRC_METRICS_HTTP_REQUEST_H_
#define STELLA_SRC_METRICS_HTTP_REQUEST_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/base/status.h"

namespace stella {
namespace metrics {

struct HttpRequest {
  std::string method;  // case-sensitive token, e.g. "GET"
  std::string target;  // the request-target as sent
  std::string path;    // target without query; absolute-form reduced to its path
  std::string query;   // after '?', without it; empty when absent
  int version_major = 0;
  int version_minor = 0;
  // Header fields in order; names lower-cased, values without surrounding
  // whitespace.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Returns the offset just past the blank line that ends the request head in
// `buffer` (CRLF or bare LF line endings; empty lines before the request line
// are skipped, as RFC 9112 suggests), or std::string_view::npos if the head is
// not complete yet.
size_t FindRequestHeadEnd(std::string_view buffer);

// Parses a complete request head (as delimited by FindRequestHeadEnd).
// InvalidArgument, with the offending part in the message, when the request
// line or a header field is malformed. Any HTTP/<digit>.<digit> version is
// accepted here; the caller decides which majors it serves.
StatusOr<HttpRequest> ParseRequestHead(std::string_view head);

}  // namespace metrics
}  // namespace stella

#endif  // STELLA_SRC_METRICS_HTTP_REQUEST_H_
