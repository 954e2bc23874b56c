// Small text helpers shared by the CLI's progress view, summary and banner,
// plus typed, non-throwing access to fields of stella-runtime event objects
// (an event with a missing or mistyped field must never crash the CLI).
//
// Thread safety: pure functions; safe from any thread.
#ifndef STELLA_SRC_CLI_FORMAT_H_
#define STELLA_SRC_CLI_FORMAT_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace stella::cli {

// Binary units with one decimal: 0 -> "0 B", 1536 -> "1.5 KiB",
// 12345678 -> "11.8 MiB".
std::string HumanBytes(uint64_t bytes);

// A duration for people: 4.25 -> "4.2s", 75 -> "1m15s", 3725 -> "1h02m05s".
// Negative or non-finite values give "?".
std::string HumanDuration(double seconds);

// printf-style "%.<digits>f".
std::string Fixed(double value, int digits);

// event[key] if it is a number, else fallback.
double EventNumber(const nlohmann::json& event, const char* key, double fallback);
// event[key] if it is an integer (or an integral number), else fallback.
int64_t EventInt(const nlohmann::json& event, const char* key, int64_t fallback);
// event[key] if it is a string, else fallback.
std::string EventString(const nlohmann::json& event, const char* key, const std::string& fallback);

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_FORMAT_H_
