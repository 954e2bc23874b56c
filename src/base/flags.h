// Command-line flag helpers shared by the stella, stella-runtime and
// stella-operator mains: each keeps its own flag table, these do the
// tokenizing and value checks.
#ifndef STELLA_SRC_BASE_FLAGS_H_
#define STELLA_SRC_BASE_FLAGS_H_

#include <set>
#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella {

// One command-line argument: a flag with its value, or a positional one.
struct FlagArg {
  std::string flag;   // "--name" (or "-h"); "" for a positional argument
  std::string value;  // the flag's value ("" for a switch), or the argument
};

// Splits `args` (argv without the program name) into flags and positional
// arguments. An argument starting with '-' is a flag: one of `value_flags`,
// whose value follows '=' or is the next argument, or one of `switches`,
// which take none. InvalidArgument "unknown flag '--x'", "flag '--x' needs a
// value" or "--x takes no value, got '--x=v'".
StatusOr<std::vector<FlagArg>> SplitFlags(const std::vector<std::string>& args,
                                          const std::set<std::string>& value_flags,
                                          const std::set<std::string>& switches);

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> SplitCommas(const std::string& s);

// Parses `text` as a decimal integer in [lo, hi] into *out. Otherwise prints
// "<program>: <flag> must be an integer in lo..hi, got "<text>"" to stderr
// and returns false.
bool ParseIntFlag(const char* program, const std::string& flag, const std::string& text, int lo, int hi, int* out);

}  // namespace stella

#endif  // STELLA_SRC_BASE_FLAGS_H_
