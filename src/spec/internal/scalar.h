// Scalar text helpers shared by the StellaJob parser, emitter and validator:
// how a plain YAML scalar resolves (YAML 1.2 core schema), locale-independent
// number parsing and shortest round-trip number formatting, and quoting of
// values in error messages.
//
// Thread safety: pure functions.
#ifndef STELLA_SRC_SPEC_INTERNAL_SCALAR_H_
#define STELLA_SRC_SPEC_INTERNAL_SCALAR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stella::spec::internal {

enum class PlainKind { kNull, kBool, kInt, kFloat, kNonFinite, kString };

// What an unquoted scalar means under the YAML 1.2 core schema (decimal ints
// only; .inf/.nan are kNonFinite).
PlainKind ClassifyPlain(std::string_view text);

// True if a string must be quoted to stay a string when read back, by this
// parser or by YAML 1.1 readers such as kubectl's (yes/no/on/off are bools
// there).
bool NeedsQuotes(std::string_view text);

// Decimal integer with optional sign; nullopt if not one or out of range.
std::optional<int64_t> ParseInt64(std::string_view text);
std::optional<uint64_t> ParseUint64(std::string_view text);
// A finite decimal number (int or float syntax); nullopt otherwise.
std::optional<double> ParseDouble(std::string_view text);

// Shortest text that parses back to exactly `v` ("0.0005", "1e-08", "2").
std::string FormatDouble(double v);

// A JSON-style double-quoted string, shortened past 80 characters.
std::string Quote(std::string_view text);

}  // namespace stella::spec::internal

#endif  // STELLA_SRC_SPEC_INTERNAL_SCALAR_H_
