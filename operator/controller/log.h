// A small leveled logger for the operator: one line per record on stderr,
// "2026-11-23T10:00:00.123Z info  reconcile job=ns/a took=12ms". Owned by the
// Operator and passed down by pointer; thread-safe (one write per record).
// Callers never pass credentials: kubeconfigs, tokens and keys are not logged.
#ifndef STELLA_OPERATOR_CONTROLLER_LOG_H_
#define STELLA_OPERATOR_CONTROLLER_LOG_H_

#include <cstdio>
#include <string>

#include "src/base/mutex.h"
#include "src/base/thread_annotations.h"

namespace stella::op {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Accepts debug, info, warn, error.
bool ParseLogLevel(const std::string& text, LogLevel* out);

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, FILE* out = stderr) : level_(level), out_(out) {}
  bool Enabled(LogLevel level) const { return level >= level_; }
  void Log(LogLevel level, const std::string& message);
  void Debug(const std::string& m) { Log(LogLevel::kDebug, m); }
  void Info(const std::string& m) { Log(LogLevel::kInfo, m); }
  void Warn(const std::string& m) { Log(LogLevel::kWarn, m); }
  void Error(const std::string& m) { Log(LogLevel::kError, m); }

 private:
  LogLevel level_;
  FILE* out_ PT_GUARDED_BY(mu_);  // written under mu_
  Mutex mu_;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_LOG_H_
