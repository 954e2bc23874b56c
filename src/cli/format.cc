#include "src/cli/format.h"

#include <cmath>
#include <cstdio>

namespace stella::cli {

std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 5) {
    value /= 1024.0;
    ++unit;
  }
  return Fixed(value, 1) + " " + kUnits[unit];
}

std::string HumanDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return Fixed(seconds, 1) + "s";
  auto total = static_cast<long long>(std::llround(seconds));
  long long h = total / 3600;
  long long m = (total % 3600) / 60;
  long long s = total % 60;
  char buf[64];
  if (h > 0) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm%02llds", h, m, s);
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", m, s);
  }
  return buf;
}

std::string Fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

double EventNumber(const nlohmann::json& event, const char* key, double fallback) {
  auto it = event.find(key);
  if (it == event.end() || !it->is_number()) return fallback;
  return it->get<double>();
}

int64_t EventInt(const nlohmann::json& event, const char* key, int64_t fallback) {
  auto it = event.find(key);
  if (it == event.end()) return fallback;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e18) return static_cast<int64_t>(v);
  }
  return fallback;
}

std::string EventString(const nlohmann::json& event, const char* key, const std::string& fallback) {
  auto it = event.find(key);
  if (it == event.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

}  // namespace stella::cli
