#include "operator/controller/log.h"

#include <chrono>
#include <ctime>

namespace stella::op {

bool ParseLogLevel(const std::string& text, LogLevel* out) {
  if (text == "debug")
    *out = LogLevel::kDebug;
  else if (text == "info")
    *out = LogLevel::kInfo;
  else if (text == "warn")
    *out = LogLevel::kWarn;
  else if (text == "error")
    *out = LogLevel::kError;
  else
    return false;
  return true;
}

void Logger::Log(LogLevel level, const std::string& message) {
  if (!Enabled(level)) return;
  static constexpr const char* kNames[] = {"debug", "info ", "warn ", "error"};
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  int ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[40];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  MutexLock lock(&mu_);
  std::fprintf(out_, "%s.%03dZ %s %s\n", stamp, ms, kNames[static_cast<int>(level)], message.c_str());
  std::fflush(out_);
}

}  // namespace stella::op
