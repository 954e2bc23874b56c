#include "src/base/flags.h"

#include <cstdio>
#include <cstdlib>

namespace stella {

StatusOr<std::vector<FlagArg>> SplitFlags(const std::vector<std::string>& args,
                                          const std::set<std::string>& value_flags,
                                          const std::set<std::string>& switches) {
  std::vector<FlagArg> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      out.push_back({"", arg});
      continue;
    }
    const size_t eq = arg.find('=');
    FlagArg f{arg.substr(0, eq), eq == std::string::npos ? "" : arg.substr(eq + 1)};
    if (switches.count(f.flag) > 0) {
      if (eq != std::string::npos) return InvalidArgumentError(f.flag + " takes no value, got '" + arg + "'");
    } else if (value_flags.count(f.flag) == 0) {
      return InvalidArgumentError("unknown flag '" + f.flag + "'");
    } else if (eq == std::string::npos) {
      if (i + 1 >= args.size()) return InvalidArgumentError("flag '" + f.flag + "' needs a value");
      f.value = args[++i];
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool ParseIntFlag(const char* program, const std::string& flag, const std::string& text, int lo, int hi, int* out) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "%s: %s must be an integer in %d..%d, got \"%s\"\n", program, flag.c_str(), lo, hi,
                 text.c_str());
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

}  // namespace stella
