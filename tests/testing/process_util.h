// Helpers for tests that start real processes and sockets: free loopback
// ports, temporary directories, files, and child processes with a bounded
// wait. A test-only library (stella_testing), shared by the end-to-end suites.
//
// Thread safety: free functions are reentrant; a TempDir is owned by one test.
#ifndef STELLA_TESTS_TESTING_PROCESS_UTIL_H_
#define STELLA_TESTS_TESTING_PROCESS_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace stella::testing {

// The build tree, from ctest's STELLA_BUILD_DIR (default "build").
std::string BuildDir();

// A loopback TCP port that was free a moment ago (bind to :0, read it, close).
int FreePort();

// The first of `count` consecutive loopback ports that are all free now, taken
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range) so that no
// other process's outgoing connection or bind(:0) lands on them while a job
// started with "metrics.port: <first>" comes up.
int FreePortRun(int count);

// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& text);
// The whole file; "" if it cannot be read.
std::string ReadFile(const std::string& path);

// Starts argv[0] (a path) with stdout and stderr written to `log`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log);

// Waits up to `timeout` for pid; kills and reaps it on timeout. Returns the
// wait status, or -1 on timeout.
int WaitFor(pid_t pid, std::chrono::seconds timeout);

}  // namespace stella::testing

#endif  // STELLA_TESTS_TESTING_PROCESS_UTIL_H_
