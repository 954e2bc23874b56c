#include "tests/metrics/test_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace stella {
namespace metrics {
namespace testing {

StatusOr<std::unique_ptr<TempDir>> TempDir::Create(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + prefix + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return ErrnoError("mkdtemp " + pattern, errno);
  return std::unique_ptr<TempDir>(new TempDir(pattern));
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return IoError("cannot write " + path);
  return Status::Ok();
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::vector<std::string>& argv,
                                                            const std::string& stdin_path,
                                                            const std::string& output_path) {
  if (argv.empty()) return InvalidArgumentError("ChildProcess: empty argv");
  if (::access(argv[0].c_str(), X_OK) != 0) {
    return ErrnoError("ChildProcess: " + argv[0] + " is not executable", errno);
  }
  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string in_path = stdin_path.empty() ? "/dev/null" : stdin_path;
  const int in_fd = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_fd < 0) return ErrnoError("ChildProcess: open " + in_path, errno);
  const int out_fd = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    const int err = errno;
    ::close(in_fd);
    return ErrnoError("ChildProcess: open " + output_path, err);
  }
  // exec failures come back through this close-on-exec pipe.
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(in_fd);
    ::close(out_fd);
    return ErrnoError("ChildProcess: pipe2", err);
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(in_fd);
    ::close(out_fd);
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return ErrnoError("ChildProcess: fork", err);
  }
  if (pid == 0) {
    ::dup2(in_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    ::execv(args[0], args.data());
    const int err = errno;
    ssize_t ignored = ::write(status_pipe[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  ::close(in_fd);
  ::close(out_fd);
  ::close(status_pipe[1]);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  auto child = std::unique_ptr<ChildProcess>(new ChildProcess(pid));
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    child->Wait(std::chrono::seconds(5)).status().IgnoreError();
    return ErrnoError("ChildProcess: execv " + argv[0], exec_errno);
  }
  return child;
}

bool ChildProcess::Running() {
  if (exit_code_.has_value()) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return r == 0;
}

StatusOr<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return DeadlineExceededError("pid " + std::to_string(pid_) + " still running after " +
                                   std::to_string(timeout.count()) + "ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exit_code_.has_value()) return InternalError("waitpid failed for pid " + std::to_string(pid_));
  return *exit_code_;
}

ChildProcess::~ChildProcess() {
  if (!Running()) return;
  ::kill(pid_, SIGTERM);
  if (Wait(std::chrono::seconds(10)).ok()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace testing
}  // namespace metrics
}  // namespace stella
