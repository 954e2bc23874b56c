#include "src/metrics/http_request.h"

#include <cctype>
#include <cstdio>
#include <cstring>

namespace stella {
namespace metrics {
namespace {

constexpr size_t kMaxShownChars = 64;

bool IsTchar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTchar(c)) return false;
  }
  return true;
}

// For error messages: a bounded, printable rendering of untrusted bytes.
std::string Shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxShownChars)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", u);
      out += hex;
    }
  }
  if (s.size() > kMaxShownChars) out += "...";
  return "\"" + out + "\"";
}

// Splits `head` into lines, dropping a trailing CR from each.
std::vector<std::string_view> SplitLines(std::string_view head) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < head.size()) {
    size_t end = head.find('\n', start);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

bool ParseVersion(std::string_view v, int* major, int* minor) {
  // HTTP-version = "HTTP/" DIGIT "." DIGIT
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.') return false;
  if (!std::isdigit(static_cast<unsigned char>(v[5])) || !std::isdigit(static_cast<unsigned char>(v[7]))) {
    return false;
  }
  *major = v[5] - '0';
  *minor = v[7] - '0';
  return true;
}

Status ParseRequestLine(std::string_view line, HttpRequest* request) {
  // request-line = method SP request-target SP HTTP-version, single spaces.
  const size_t first = line.find(' ');
  const size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos) {
    return InvalidArgumentError("request line " + Shown(line) + ": want \"METHOD SP target SP HTTP/x.y\"");
  }
  const std::string_view method = line.substr(0, first);
  const std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  if (!IsToken(method)) return InvalidArgumentError("method " + Shown(method) + " is not a token");
  if (target.empty()) return InvalidArgumentError("empty request target");
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return InvalidArgumentError("request target " + Shown(target) + " has a non-visible byte");
    }
  }
  if (!ParseVersion(version, &request->version_major, &request->version_minor)) {
    return InvalidArgumentError("version " + Shown(version) + ": want HTTP/<digit>.<digit>");
  }

  std::string_view path = target;
  // absolute-form (RFC 9112 3.2.2): servers must accept it; keep the path.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (path.size() >= scheme.size() && path.substr(0, scheme.size()) == scheme) {
      const size_t slash = path.find_first_of("/?", scheme.size());
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
      break;
    }
  }
  std::string_view query;
  const size_t question = path.find('?');
  if (question != std::string_view::npos) {
    query = path.substr(question + 1);
    path = path.substr(0, question);
  }
  if (path.empty()) path = "/";
  // origin-form must start with '/'; asterisk-form ("*") is only for OPTIONS.
  if (path.front() != '/' && !(path == "*" && method == "OPTIONS")) {
    return InvalidArgumentError("request target " + Shown(target) + ": want an absolute path");
  }
  request->method = std::string(method);
  request->target = std::string(target);
  request->path = std::string(path);
  request->query = std::string(query);
  return Status::Ok();
}

Status ParseHeaderField(std::string_view line, HttpRequest* request) {
  // field-line = field-name ":" OWS field-value OWS; no obs-fold.
  if (line.front() == ' ' || line.front() == '\t') {
    return InvalidArgumentError("header line " + Shown(line) + ": obsolete line folding");
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return InvalidArgumentError("header line " + Shown(line) + ": missing ':'");
  }
  const std::string_view name = line.substr(0, colon);
  if (!IsToken(name)) {
    return InvalidArgumentError("header name " + Shown(name) + " is not a token");
  }
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return InvalidArgumentError("header " + Shown(name) + " has a control byte in its value");
    }
  }
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  request->headers.emplace_back(std::move(lower), std::string(value));
  return Status::Ok();
}

}  // namespace

size_t FindRequestHeadEnd(std::string_view buffer) {
  bool seen_content = false;
  size_t start = 0;
  while (start < buffer.size()) {
    const size_t end = buffer.find('\n', start);
    if (end == std::string_view::npos) return std::string_view::npos;
    std::string_view line = buffer.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (seen_content) return end + 1;
    } else {
      seen_content = true;
    }
    start = end + 1;
  }
  return std::string_view::npos;
}

StatusOr<HttpRequest> ParseRequestHead(std::string_view head) {
  std::vector<std::string_view> lines = SplitLines(head);
  size_t i = 0;
  while (i < lines.size() && lines[i].empty()) ++i;  // tolerated leading CRLFs
  if (i == lines.size()) return InvalidArgumentError("empty request");
  HttpRequest request;
  STELLA_RETURN_IF_ERROR(ParseRequestLine(lines[i], &request));
  for (++i; i < lines.size(); ++i) {
    if (lines[i].empty()) break;  // end of head
    STELLA_RETURN_IF_ERROR(ParseHeaderField(lines[i], &request));
  }
  return request;
}

}  // namespace metrics
}  // namespace stella
