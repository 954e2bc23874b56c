// Test helpers for the slow metrics tests: a scoped temporary directory and a
// child process that is always killed and reaped.
//
// Thread safety: none; each object belongs to one test.
#ifndef STELLA_TESTS_METRICS_TEST_PROCESS_H_
#define STELLA_TESTS_METRICS_TEST_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella {
namespace metrics {
namespace testing {

// A fresh directory under $TMPDIR (or /tmp), removed recursively on
// destruction.
class TempDir {
 public:
  static StatusOr<std::unique_ptr<TempDir>> Create(const std::string& prefix);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Writes `contents` to `path`, replacing it.
Status WriteFile(const std::string& path, const std::string& contents);
// The whole file, or an error naming it.
StatusOr<std::string> ReadFile(const std::string& path);

// A child started with fork/exec. The destructor sends SIGTERM, waits up to
// 10 s, then SIGKILLs and reaps, so a failing test never leaks a process.
class ChildProcess {
 public:
  // Runs argv[0] (an absolute path) with stdin from `stdin_path` (or
  // /dev/null when empty) and stdout+stderr appended to `output_path`.
  // Fails if the binary cannot be executed.
  static StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                       const std::string& stdin_path, const std::string& output_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits for exit; returns the exit code (128+signal when killed by a
  // signal) or DeadlineExceeded.
  StatusOr<int> Wait(std::chrono::milliseconds timeout);
  // True while the child has not exited (reaps it if it has).
  bool Running();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> exit_code_;
};

}  // namespace testing
}  // namespace metrics
}  // namespace stella

#endif  // STELLA_TESTS_METRICS_TEST_PROCESS_H_
