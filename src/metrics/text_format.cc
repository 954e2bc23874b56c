#include "src/metrics/text_format.h"

#include <charconv>
#include <cmath>

#include "src/base/status.h"

namespace stella {
namespace metrics {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Largest magnitude below which every integer is exactly representable.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAlpha(c) || c == '_' || c == ':' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty()) return false;
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAlpha(c) || c == '_' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0.0) return "0";  // also folds -0 into "0"
  char buffer[64];
  std::to_chars_result result;
  if (std::fabs(value) < kMaxExactInteger && value == std::trunc(value)) {
    result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed, 0);
  } else {
    // Shortest round-trip form; may use an exponent ("1e-07"), which
    // Prometheus (Go's ParseFloat) accepts.
    result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  }
  STELLA_CHECK(result.ec == std::errc());
  return std::string(buffer, result.ptr);
}

}  // namespace metrics
}  // namespace stella
