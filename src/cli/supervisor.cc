#include "src/cli/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>

extern char** environ;

namespace stella::cli {
namespace {

constexpr char kEventPrefix[] = "@stella ";
// Poll at least this often, so exits of children whose pipes are still held
// open by their own descendants are noticed promptly.
constexpr std::chrono::milliseconds kMaxPollInterval{50};
// How long to wait for SIGKILLed children to be reaped before giving up (a
// process stuck in uninterruptible I/O cannot be killed at once).
constexpr std::chrono::milliseconds kReapBound{5000};
// How long to wait for the pipes of exited children to reach EOF. Only a
// process that left the child's process group while keeping its output open
// can make this wait run out.
constexpr std::chrono::milliseconds kEofBound{2000};
// Longest line kept whole; longer output is split so memory stays bounded.
constexpr size_t kMaxLineBytes = 1 << 20;
// Bytes read from one stream per wake-up, so one chatty child cannot starve
// the others or the stop pipe.
constexpr size_t kMaxReadPerWake = 1 << 20;

Status MakeDirs(const std::string& path) {
  std::string prefix;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    prefix = path.substr(0, pos);
    if (prefix.empty()) continue;
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create log directory " + prefix, errno);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return FailedPreconditionError("log directory " + path + " is not a directory");
  }
  return Status::Ok();
}

// Resolves argv[0] as execvp would, but before fork() so the child does not
// allocate and so a missing program is reported with its name.
StatusOr<std::string> ResolveProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path_env = std::getenv("PATH");
  std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return NotFoundError("program '" + program + "' not found in $PATH");
}

std::vector<std::string> BuildEnvironment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& o : overrides) {
    std::string key = o.substr(0, o.find('=') + 1);  // includes '='
    auto it =
        std::find_if(env.begin(), env.end(), [&](const std::string& e) { return e.compare(0, key.size(), key) == 0; });
    if (it != env.end()) {
      *it = o;
    } else {
      env.push_back(o);
    }
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk must not stop supervision
    data += n;
    size -= static_cast<size_t>(n);
  }
}

std::string Truncate(const std::string& s, size_t max) { return s.size() <= max ? s : s.substr(0, max) + "..."; }

}  // namespace

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    const char* abbrev = sigabbrev_np(sig);
    const char* desc = strsignal(sig);
    std::string text = "was killed by signal " + std::to_string(sig) + " (";
    if (abbrev != nullptr) text += std::string("SIG") + abbrev + ": ";
    text += desc != nullptr ? desc : "unknown signal";
    text += ")";
    if (WCOREDUMP(wait_status)) text += ", core dumped";
    return text;
  }
  return "ended with wait status " + std::to_string(wait_status);
}

std::string LogFileName(const std::string& process_name) {
  std::string out;
  for (char c : process_name) {
    bool safe = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out += safe ? c : '-';
  }
  if (out.empty() || out[0] == '.') out.insert(0, "p");
  return out + ".log";
}

StatusOr<std::unique_ptr<Supervisor>> Supervisor::Create(const SupervisorOptions& options,
                                                         const std::vector<ProcessSpec>& processes) {
  if (options.log_dir.empty()) return InvalidArgumentError("SupervisorOptions.log_dir is empty");
  if (options.tail_lines < 1) {
    return InvalidArgumentError("SupervisorOptions.tail_lines must be >= 1, got " + std::to_string(options.tail_lines));
  }
  if (options.clock == nullptr) return InvalidArgumentError("SupervisorOptions.clock is null");
  if (processes.empty()) return InvalidArgumentError("no processes to supervise");
  std::set<std::string> names;
  std::set<std::string> log_names;
  std::vector<Child> children;
  for (size_t i = 0; i < processes.size(); ++i) {
    const ProcessSpec& p = processes[i];
    std::string where = "process[" + std::to_string(i) + "]";
    if (p.name.empty()) return InvalidArgumentError(where + ": name is empty");
    if (!names.insert(p.name).second) {
      return InvalidArgumentError(where + ": duplicate name '" + p.name + "'");
    }
    if (!log_names.insert(LogFileName(p.name)).second) {
      return InvalidArgumentError(where + ": name '" + p.name + "' maps to log file " + LogFileName(p.name) +
                                  ", which another process already uses");
    }
    if (p.argv.empty() || p.argv[0].empty()) {
      return InvalidArgumentError(where + " (" + p.name + "): argv is empty");
    }
    for (const std::string& e : p.env_overrides) {
      if (e.find('=') == std::string::npos || e[0] == '=') {
        return InvalidArgumentError(where + " (" + p.name + "): env override '" + e + "' is not KEY=VALUE");
      }
    }
    Child c;
    c.spec = p;
    c.log_path = options.log_dir + "/" + LogFileName(p.name);
    c.out.is_stdout = true;
    children.push_back(std::move(c));
  }
  STELLA_RETURN_IF_ERROR(MakeDirs(options.log_dir));
  return std::unique_ptr<Supervisor>(new Supervisor(options, std::move(children)));
}

Supervisor::Supervisor(SupervisorOptions options, std::vector<Child> children)
    : options_(std::move(options)), children_(std::move(children)) {}

Supervisor::~Supervisor() {
  for (Child& c : children_) {
    if (c.running) {
      kill(-c.pid, SIGKILL);
      int status = 0;
      while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
      }
      c.running = false;
    }
    CloseFd(c.out.fd);
    CloseFd(c.err.fd);
    CloseFd(c.log_fd);
  }
}

Status Supervisor::Spawn(Child& child) {
  child.log_fd = open(child.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (child.log_fd < 0) return ErrnoError("cannot open log file " + child.log_path, errno);
  STELLA_ASSIGN_OR_RETURN(std::string program, ResolveProgram(child.spec.argv[0]));
  std::vector<std::string> argv_strings = child.spec.argv;
  std::vector<std::string> env_strings = BuildEnvironment(child.spec.env_overrides);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    close(out_pipe[0]);
    close(out_pipe[1]);
    return ErrnoError("pipe", e);
  }
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return ErrnoError("pipe", e);
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], exec_pipe[0], exec_pipe[1]}) {
      close(fd);
    }
    return ErrnoError("fork for " + child.spec.name, e);
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to execve.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the CLI died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT}) signal(sig, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    execve(program.c_str(), argv.data(), envp.data());
    int e = errno;
    ssize_t ignored = write(exec_pipe[1], &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  // Parent. Setting the group here too closes the race where we signal the
  // group before the child has called setpgid.
  setpgid(pid, pid);
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(exec_pipe[1]);
  int exec_errno = 0;
  ssize_t n;
  // Returns 0 (EOF) as soon as execve succeeds and closes the CLOEXEC end.
  do {
    n = read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(out_pipe[0]);
    close(err_pipe[0]);
    return ErrnoError("cannot execute " + program + " for " + options_.noun + " " + child.spec.name, exec_errno);
  }
  child.pid = pid;
  child.running = true;
  child.out.fd = out_pipe[0];
  child.err.fd = err_pipe[0];
  fcntl(child.out.fd, F_SETFL, fcntl(child.out.fd, F_GETFL) | O_NONBLOCK);
  fcntl(child.err.fd, F_SETFL, fcntl(child.err.fd, F_GETFL) | O_NONBLOCK);
  return Status::Ok();
}

Status Supervisor::Start() {
  STELLA_CHECK(!started_);
  started_ = true;
  for (Child& c : children_) {
    Status s = Spawn(c);
    if (!s.ok()) {
      KillAndReapAll(kReapBound);
      for (Child& other : children_) DrainAndClose(other);
      return s;
    }
  }
  return Status::Ok();
}

void Supervisor::HandleLine(Child& child, bool is_stdout, std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  bool keep_in_tail = true;
  if (is_stdout && line.compare(0, sizeof(kEventPrefix) - 1, kEventPrefix) == 0) {
    nlohmann::json event =
        nlohmann::json::parse(line.substr(sizeof(kEventPrefix) - 1), nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object() || !event.contains("event") || !event["event"].is_string()) {
      if (options_.on_warning) {
        options_.on_warning("malformed event line from " + options_.noun + " " + child.spec.name +
                            " (expected a JSON object with a string \"event\"): " + Truncate(line, 200));
      }
    } else {
      // Progress events are rendered elsewhere; only errors help explain a
      // failure, so only they stay in the tail.
      keep_in_tail = event["event"] == "error";
      if (options_.on_event) {
        try {
          options_.on_event(child.spec.name, event);
        } catch (const std::exception& e) {
          if (options_.on_warning) {
            options_.on_warning("event from " + options_.noun + " " + child.spec.name + " could not be handled (" +
                                e.what() + "): " + Truncate(line, 200));
          }
        }
      }
    }
  }
  if (keep_in_tail) {
    child.tail.push_back(std::move(line));
    while (child.tail.size() > static_cast<size_t>(options_.tail_lines)) child.tail.pop_front();
  }
}

void Supervisor::ReadStream(Child& child, Stream& stream) {
  char buf[65536];
  size_t total = 0;
  while (stream.fd >= 0 && total < kMaxReadPerWake) {
    ssize_t n = read(stream.fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {  // EOF or a read error: this stream is finished
      CloseFd(stream.fd);
      break;
    }
    total += static_cast<size_t>(n);
    if (child.log_fd >= 0) WriteAll(child.log_fd, buf, static_cast<size_t>(n));
    stream.partial.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    size_t nl;
    while ((nl = stream.partial.find('\n', start)) != std::string::npos) {
      HandleLine(child, stream.is_stdout, stream.partial.substr(start, nl - start));
      start = nl + 1;
    }
    stream.partial.erase(0, start);
    if (stream.partial.size() > kMaxLineBytes) {
      HandleLine(child, stream.is_stdout, std::move(stream.partial));
      stream.partial.clear();
    }
  }
  if (stream.fd < 0 && !stream.partial.empty()) {
    HandleLine(child, stream.is_stdout, std::move(stream.partial));
    stream.partial.clear();
  }
}

void Supervisor::DrainAndClose(Child& child) {
  // Called once the child and its process group are gone: what is left in
  // the pipes is bounded, and reads never block (O_NONBLOCK).
  for (Stream* s : {&child.out, &child.err}) {
    if (s->fd >= 0) ReadStream(child, *s);
    CloseFd(s->fd);
    if (!s->partial.empty()) {
      HandleLine(child, s->is_stdout, std::move(s->partial));
      s->partial.clear();
    }
  }
  CloseFd(child.log_fd);
}

int Supervisor::ReapExited(std::vector<size_t>* newly_exited) {
  int running = 0;
  for (size_t i = 0; i < children_.size(); ++i) {
    Child& c = children_[i];
    if (!c.running) continue;
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    // WNOWAIT leaves the zombie in place, so its pid (and process group id)
    // cannot be reused while we kill what it left behind in its group.
    if (waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
      ++running;
      continue;
    }
    kill(-c.pid, SIGKILL);
    int status = 0;
    while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    c.running = false;
    c.wait_status = status;
    if (newly_exited != nullptr) newly_exited->push_back(i);
  }
  return running;
}

void Supervisor::SignalAll(int sig) {
  for (Child& c : children_) {
    if (c.running) kill(-c.pid, sig);
  }
}

void Supervisor::KillAndReapAll(std::chrono::milliseconds bound) {
  SignalAll(SIGKILL);
  const Clock& clock = *options_.clock;
  Clock::TimePoint give_up = clock.Now() + bound;
  while (ReapExited(nullptr) > 0 && clock.Now() < give_up) {
    usleep(10000);
  }
}

int Supervisor::ReadStopRequests() {
  char buf[64];
  ssize_t n;
  do {
    n = read(options_.stop_fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return -1;  // writer closed: no more requests can come
  return n > 0 ? static_cast<int>(n) : 0;
}

std::string Supervisor::FailureMessage(const Child& child) const {
  std::string msg = options_.noun + " " + child.spec.name + " " + DescribeWaitStatus(child.wait_status);
  if (child.tail.empty()) {
    msg += "; it printed nothing";
  } else {
    msg += "; last lines:";
    for (const std::string& line : child.tail) msg += "\n  " + line;
  }
  msg += "\n(full log: " + child.log_path + ")";
  return msg;
}

Status Supervisor::Run(Clock::TimePoint deadline) {
  STELLA_CHECK(!ran_);
  ran_ = true;
  if (!started_) STELLA_RETURN_IF_ERROR(Start());
  const Clock& clock = *options_.clock;

  Phase phase = Phase::kRunning;
  const Child* failed = nullptr;
  bool stop_requested = false;
  bool deadline_hit = false;
  bool stop_fd_open = options_.stop_fd >= 0;
  Clock::TimePoint escalate_at = Clock::TimePoint::max();  // SIGTERM -> SIGKILL
  Clock::TimePoint give_up_at = Clock::TimePoint::max();   // after SIGKILL
  std::vector<std::string> killed;                         // children still running at SIGKILL time

  auto kill_now = [&](Clock::TimePoint now) {
    for (const Child& c : children_) {
      if (c.running) killed.push_back(c.spec.name);
    }
    SignalAll(SIGKILL);
    phase = Phase::kKilled;
    give_up_at = now + kReapBound;
  };

  std::vector<pollfd> fds;
  std::vector<std::pair<Child*, Stream*>> owners;
  while (true) {
    fds.clear();
    owners.clear();
    if (stop_fd_open) fds.push_back({options_.stop_fd, POLLIN, 0});
    for (Child& c : children_) {
      for (Stream* s : {&c.out, &c.err}) {
        if (s->fd < 0) continue;
        fds.push_back({s->fd, POLLIN, 0});
        owners.emplace_back(&c, s);
      }
    }
    Clock::TimePoint now = clock.Now();
    Clock::TimePoint next = phase == Phase::kRunning ? deadline : phase == Phase::kKilled ? give_up_at : escalate_at;
    auto wait = kMaxPollInterval;
    if (next <= now) {
      wait = std::chrono::milliseconds(0);
    } else if (next - now < wait) {
      wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now) + std::chrono::milliseconds(1);
    }
    int ready = poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (ready < 0 && errno != EINTR) {
      Status err = ErrnoError("poll", errno);
      KillAndReapAll(kReapBound);
      for (Child& c : children_) DrainAndClose(c);
      return err;
    }
    int stop_requests = 0;
    if (ready > 0) {
      size_t first_stream = stop_fd_open ? 1 : 0;
      if (stop_fd_open && fds[0].revents != 0) {
        int n = ReadStopRequests();
        if (n < 0) {
          stop_fd_open = false;
        } else {
          stop_requests = n;
        }
      }
      for (size_t i = first_stream; i < fds.size(); ++i) {
        if (fds[i].revents != 0) {
          auto [child, stream] = owners[i - first_stream];
          ReadStream(*child, *stream);
        }
      }
    }

    now = clock.Now();
    std::vector<size_t> exited;
    int running = ReapExited(&exited);
    for (size_t i : exited) {
      const Child& c = children_[i];
      bool clean = WIFEXITED(c.wait_status) && WEXITSTATUS(c.wait_status) == 0;
      if (!clean && phase == Phase::kRunning) {
        failed = &c;
        phase = Phase::kFailing;
        escalate_at = now + options_.failure_grace;
        SignalAll(SIGTERM);
      }
    }
    if (running == 0) break;

    for (int r = 0; r < stop_requests; ++r) {
      stop_requested = true;
      if (phase == Phase::kRunning) {
        phase = Phase::kStopping;
        escalate_at = now + options_.stop_grace;
        SignalAll(SIGTERM);
      } else if (phase != Phase::kKilled) {
        kill_now(now);  // a second request, or one during a failure: no more waiting
      }
    }
    if (phase == Phase::kRunning && now >= deadline) {
      deadline_hit = true;
      phase = Phase::kStopping;
      escalate_at = now + options_.stop_grace;
      SignalAll(SIGTERM);
    }
    if ((phase == Phase::kFailing || phase == Phase::kStopping) && now >= escalate_at) {
      kill_now(now);
    }
    if (phase == Phase::kKilled && now >= give_up_at) break;
  }

  // Every process group has been SIGKILLed; wait (bounded) until the pipes
  // report EOF, which means no process is left holding them, so the output
  // is complete and nothing the children started is still running.
  Clock::TimePoint eof_deadline = clock.Now() + kEofBound;
  while (clock.Now() < eof_deadline) {
    fds.clear();
    owners.clear();
    for (Child& c : children_) {
      for (Stream* s : {&c.out, &c.err}) {
        if (s->fd < 0) continue;
        fds.push_back({s->fd, POLLIN, 0});
        owners.emplace_back(&c, s);
      }
    }
    if (fds.empty()) break;
    int ready = poll(fds.data(), fds.size(), static_cast<int>(kMaxPollInterval.count()));
    if (ready < 0 && errno != EINTR) break;
    for (size_t i = 0; ready > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) ReadStream(*owners[i].first, *owners[i].second);
    }
  }

  std::vector<std::string> unreaped;
  for (Child& c : children_) {
    if (c.running) unreaped.push_back(c.spec.name + " (pid " + std::to_string(c.pid) + ")");
    DrainAndClose(c);
  }
  auto join = [](const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  };
  std::string killed_note;
  if (!killed.empty()) killed_note = "; SIGKILLed: " + join(killed);
  if (!unreaped.empty()) killed_note += "; could not reap: " + join(unreaped);

  if (failed != nullptr) return InternalError(FailureMessage(*failed) + killed_note);
  if (stop_requested) {
    return CancelledError("stopped on request; all " + std::to_string(children_.size()) + " child processes ended" +
                          killed_note);
  }
  if (deadline_hit) {
    return DeadlineExceededError("run did not finish before its deadline; all " + std::to_string(children_.size()) +
                                 " child processes stopped" + killed_note);
  }
  if (!unreaped.empty()) return InternalError("could not reap: " + join(unreaped));
  return Status::Ok();
}

std::vector<pid_t> Supervisor::pids() const {
  std::vector<pid_t> out;
  for (const Child& c : children_) {
    if (c.pid > 0) out.push_back(c.pid);
  }
  return out;
}

const Supervisor::Child* Supervisor::Find(const std::string& name) const {
  for (const Child& c : children_) {
    if (c.spec.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> Supervisor::TailLines(const std::string& name) const {
  const Child* c = Find(name);
  if (c == nullptr) return {};
  return {c->tail.begin(), c->tail.end()};
}

std::string Supervisor::LogPath(const std::string& name) const {
  const Child* c = Find(name);
  return c == nullptr ? std::string() : c->log_path;
}

}  // namespace stella::cli
