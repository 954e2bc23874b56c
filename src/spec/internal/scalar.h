// Scalar text helpers shared by the StellaJob parser, emitter and validator:
// how a plain YAML scalar resolves (YAML 1.2 core schema), locale-independent
// number parsing and shortest round-trip number formatting, and quoting of
// values in error messages.
//
// Thread safety: pure functions.
#ifndef STELLA_SRC_SPEC_INTERNAL_SCALAR_H_
#define STELLA_SRC_SPEC_INTERNAL_SCALAR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stella::spec::internal {

enum class PlainKind { kNull, kBool, kInt, kFloat, kNonFinite, kString };

// What an unquoted scalar means under the YAML 1.2 core schema (decimal ints
// only; .inf/.nan are kNonFinite).
PlainKind ClassifyPlain(std::string_view text);

// True if a string must be double-quoted to read back as the same string, by
// this parser or by YAML 1.1 readers such as kubectl's (yes/no/on/off are
// bools there): text that resolves to another type, and text holding control
// characters or non-ASCII characters, which yaml-cpp may otherwise write
// plain, where a reader drops or folds them (a trailing "\r"; U+0085, U+2028
// and U+2029 are line breaks to YAML 1.1 readers).
bool NeedsQuotes(std::string_view text);

// Decimal integer with optional sign; nullopt if not one or out of range.
std::optional<int64_t> ParseInt64(std::string_view text);
std::optional<uint64_t> ParseUint64(std::string_view text);
// A finite decimal number (int or float syntax); nullopt otherwise.
std::optional<double> ParseDouble(std::string_view text);

// Shortest text that parses back to exactly `v` ("0.0005", "1e-08", "2").
std::string FormatDouble(double v);

// The byte offset of the first character of `text` that is not well-formed,
// interchangeable UTF-8, or npos if every character is. Rejected: ill-formed
// and truncated sequences, overlong forms, surrogates, code points past
// U+10FFFF and the Unicode noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF).
// YAML text is Unicode, and yaml-cpp's emitter replaces all of these with
// U+FFFD, so a manifest holding them would not read back equal.
size_t FindInvalidUtf8(std::string_view text);

// A JSON-style double-quoted string, shortened past 80 characters.
std::string Quote(std::string_view text);

}  // namespace stella::spec::internal

#endif  // STELLA_SRC_SPEC_INTERNAL_SCALAR_H_
