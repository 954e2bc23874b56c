// Supervisor: starts a fixed set of child processes (the stella-runtime
// workers of one job), captures their output, and turns their lifetimes into
// one Status: ok when every child exits 0; an error naming the first child
// that failed (after stopping the others); Cancelled on a stop request;
// DeadlineExceeded when the run outlives its deadline.
//
// Each child runs in its own process group (so a terminal Ctrl-C reaches only
// the CLI, which then stops the workers deliberately at a step boundary with
// SIGTERM, and so that signals also reach anything the child itself spawned)
// and with PR_SET_PDEATHSIG=SIGKILL, so workers never outlive a crashed CLI.
// Every child's stdout+stderr goes to <log_dir>/<file name>.log; the last
// lines are kept in memory for error messages; stdout lines starting with
// "@stella " carry a JSON event object and are handed to the event callback.
//
// Stop requests arrive as bytes on a caller-provided file descriptor (the
// read end of the CLI's signal self-pipe); the first byte stops the children
// gracefully, a second one kills them at once.
//
// Thread safety: thread-compatible. Start() and Run() must be called from one
// thread; PDEATHSIG is tied to the thread that forked the children, so that
// thread must outlive them (Run reaps every child before it returns, and the
// destructor kills and reaps any child still alive). Callbacks run on the
// thread that calls Run().
#ifndef STELLA_SRC_CLI_SUPERVISOR_H_
#define STELLA_SRC_CLI_SUPERVISOR_H_

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella::cli {

// One child process to run.
struct ProcessSpec {
  // Unique display name, e.g. "cloud/0". Used in messages and (with '/'
  // replaced by '-') as the log file name.
  std::string name;
  // argv[0] is the program: a path, or a bare name searched in $PATH.
  std::vector<std::string> argv;
  // "KEY=VALUE" entries added to (or replacing those in) the CLI's own
  // environment.
  std::vector<std::string> env_overrides;
};

struct SupervisorOptions {
  // Directory for the per-child log files; created (with parents) if missing.
  // Required: no default.
  std::string log_dir;
  // Lines of output kept in memory per child, the tail quoted in failure
  // messages. Default 40.
  int tail_lines = 40;
  // After one child fails, how long the others get between SIGTERM and
  // SIGKILL. Default 3 s: a failed run should end promptly.
  std::chrono::milliseconds failure_grace{3000};
  // After a stop request (or the deadline), how long children get between
  // SIGTERM and SIGKILL to reach a step boundary and exit. Default 10 s.
  std::chrono::milliseconds stop_grace{10000};
  // Readable file descriptor; every byte read from it is one stop request.
  // The supervisor reads from it but never closes it. Default -1: none.
  int stop_fd = -1;
  // Called with (child name, event object) for every well-formed
  // "@stella {...}" stdout line. Default: none.
  std::function<void(const std::string&, const nlohmann::json&)> on_event;
  // Called with a human-readable warning, e.g. a malformed event line.
  // Default: none (the line is still in the child's log file).
  std::function<void(const std::string&)> on_warning;
  // Noun used for children in messages ("worker cloud/0 exited ...").
  // Default "process".
  std::string noun = "process";
  // Time source for the deadline and grace periods. Not owned; must outlive
  // the supervisor. Default: the system steady clock.
  const Clock* clock = &SystemClock::Get();
};

// Text for a waitpid() status: "exited with status 3",
// "was killed by signal 9 (SIGKILL: Killed)".
std::string DescribeWaitStatus(int wait_status);

// The log file name for a process name: '/' and other characters unsafe in
// file names become '-', plus ".log" ("cloud/0" -> "cloud-0.log").
std::string LogFileName(const std::string& process_name);

class Supervisor {
 public:
  // Validates the specs (non-empty, unique names, non-empty argv) and creates
  // the log directory. Starts nothing.
  static StatusOr<std::unique_ptr<Supervisor>> Create(const SupervisorOptions& options,
                                                      const std::vector<ProcessSpec>& processes);

  // Kills (SIGKILL) and reaps every child still running.
  ~Supervisor();

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts every child. On failure (a program that cannot be executed, a log
  // file that cannot be opened) the children already started are killed and
  // reaped, and the error names the child. Call at most once.
  Status Start();

  // Supervises until every child has exited, returning as described at the
  // top of this file. Calls Start() first if it has not been called. Returns
  // at most about deadline + stop_grace (+ a bounded reap) later; use
  // Clock::TimePoint::max() for no deadline. Call at most once.
  Status Run(Clock::TimePoint deadline);

  // The process id of every started child, in spec order (empty before
  // Start). When Run returns every one of them has been reaped.
  std::vector<pid_t> pids() const;

  // The last lines (at most tail_lines) that the named child printed, oldest
  // first. Well-formed event lines are left out except "error" events.
  std::vector<std::string> TailLines(const std::string& name) const;

  // Path of the named child's log file.
  std::string LogPath(const std::string& name) const;

 private:
  struct Stream {
    int fd = -1;  // non-blocking read end; -1 once at EOF
    bool is_stdout = false;
    std::string partial;  // bytes after the last newline
  };
  struct Child {
    ProcessSpec spec;
    std::string log_path;
    int log_fd = -1;
    pid_t pid = -1;
    bool running = false;
    int wait_status = 0;
    Stream out;
    Stream err;
    std::deque<std::string> tail;
  };
  enum class Phase { kRunning, kFailing, kStopping, kKilled };

  Supervisor(SupervisorOptions options, std::vector<Child> children);

  Status Spawn(Child& child);
  void ReadStream(Child& child, Stream& stream);
  void HandleLine(Child& child, bool is_stdout, std::string line);
  void DrainAndClose(Child& child);
  // Reaps children that have exited without blocking; returns how many are
  // still running.
  int ReapExited(std::vector<size_t>* newly_exited);
  void SignalAll(int sig);
  void KillAndReapAll(std::chrono::milliseconds bound);
  int ReadStopRequests();
  std::string FailureMessage(const Child& child) const;
  const Child* Find(const std::string& name) const;

  SupervisorOptions options_;
  std::vector<Child> children_;
  bool started_ = false;
  bool ran_ = false;
};

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_SUPERVISOR_H_
