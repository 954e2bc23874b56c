#include "src/spec/internal/scalar.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace stella::spec::internal {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool OneOf(std::string_view text, std::initializer_list<std::string_view> words) {
  for (std::string_view w : words) {
    if (text == w) return true;
  }
  return false;
}

// [-+]?[0-9]+
bool IsDecimalInt(std::string_view t) {
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
  if (i == t.size()) return false;
  for (; i < t.size(); ++i) {
    if (!IsDigit(t[i])) return false;
  }
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsDecimalFloat(std::string_view t) {
  size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
  size_t int_digits = 0;
  while (i < t.size() && IsDigit(t[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && IsDigit(t[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < t.size() && IsDigit(t[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == t.size();
}

std::string_view StripPlus(std::string_view t) {
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  return t;
}

}  // namespace

PlainKind ClassifyPlain(std::string_view text) {
  if (OneOf(text, {"", "~", "null", "Null", "NULL"})) return PlainKind::kNull;
  if (OneOf(text, {"true", "True", "TRUE", "false", "False", "FALSE"})) return PlainKind::kBool;
  if (IsDecimalInt(text)) return PlainKind::kInt;
  if (IsDecimalFloat(text)) return PlainKind::kFloat;
  if (OneOf(text,
            {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"})) {
    return PlainKind::kNonFinite;
  }
  return PlainKind::kString;
}

bool NeedsQuotes(std::string_view text) {
  if (ClassifyPlain(text) != PlainKind::kString) return true;
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7F) return true;
  }
  // YAML 1.1 booleans and number forms that 1.1 readers (kubectl) resolve.
  if (OneOf(text, {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"})) {
    return true;
  }
  // Number-like text (0x1F, 1_000, 1:30, +.5) is a number to some reader.
  if (IsDigit(text[0])) return true;
  return text.size() > 1 && (text[0] == '+' || text[0] == '-' || text[0] == '.') &&
         (IsDigit(text[1]) || text[1] == '.');
}

std::optional<int64_t> ParseInt64(std::string_view text) {
  if (!IsDecimalInt(text)) return std::nullopt;
  text = StripPlus(text);
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<uint64_t> ParseUint64(std::string_view text) {
  if (!IsDecimalInt(text) || text[0] == '-') return std::nullopt;
  text = StripPlus(text);
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<double> ParseDouble(std::string_view text) {
  if (!IsDecimalInt(text) && !IsDecimalFloat(text)) return std::nullopt;
  text = StripPlus(text);
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Whole numbers as integers; otherwise the shortest %g-style text (fixed
  // notation down to 1e-4, as people write 0.0005) that reads back exactly.
  // to_chars/from_chars ignore the locale.
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general, precision);
    if (ec != std::errc()) break;
    double back = 0;
    auto [end, ec2] = std::from_chars(buf, ptr, back);
    if (ec2 == std::errc() && end == ptr && back == v) return std::string(buf, ptr);
  }
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

size_t FindInvalidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    // Length and smallest code point of the sequence (to reject overlongs).
    size_t len = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((lead & 0xE0) == 0xC0) {
      len = 2, cp = lead & 0x1Fu, min = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      len = 3, cp = lead & 0x0Fu, min = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      len = 4, cp = lead & 0x07u, min = 0x10000;
    } else {
      return i;  // a continuation byte or 0xF8..0xFF
    }
    if (text.size() - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    const bool noncharacter = (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFEu) == 0xFFFEu;
    if (cp < min || cp > 0x10FFFF || surrogate || noncharacter) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string Quote(std::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string out = "\"";
  size_t n = text.size() > kMaxShown ? kMaxShown : text.size();
  for (size_t i = 0; i < n; ++i) {
    char c = text[i];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", static_cast<unsigned>(c));
          out += esc;
        } else {
          out += c;
        }
    }
  }
  if (n < text.size()) out += "...";
  out += '"';
  return out;
}

}  // namespace stella::spec::internal
