#include "src/cli/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/cli/test_util.h"

namespace stella::cli {
namespace {

using ::stella::cli::testing::FileExists;
using ::stella::cli::testing::IsRunning;
using ::stella::cli::testing::ReadFile;
using ::stella::cli::testing::TempDir;
using ::stella::cli::testing::WriteScript;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Every Run in these tests must end well before this; a hang fails the test
// instead of blocking ctest.
constexpr auto kRunBound = std::chrono::seconds(30);

Clock::TimePoint Deadline() { return SystemClock::Get().Now() + kRunBound; }

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A pipe standing in for the CLI's signal self-pipe.
class StopPipe {
 public:
  StopPipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~StopPipe() {
    close(read_fd_);
    close(write_fd_);
  }
  int read_fd() const { return read_fd_; }
  void Request(int times = 1) {
    for (int i = 0; i < times; ++i) ASSERT_EQ(write(write_fd_, "s", 1), 1);
  }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

class SupervisorTest : public ::testing::Test {
 protected:
  SupervisorOptions Options() {
    SupervisorOptions o;
    o.log_dir = dir_.Join("logs");
    o.noun = "worker";
    o.on_warning = [this](const std::string& w) { warnings_.push_back(w); };
    return o;
  }
  ProcessSpec Script(const std::string& name, const std::string& body) {
    std::string file = dir_.Join(LogFileName(name) + ".sh");
    return ProcessSpec{name, {WriteScript(file, body)}, {}};
  }
  std::unique_ptr<Supervisor> Make(SupervisorOptions options, std::vector<ProcessSpec> specs) {
    auto made = Supervisor::Create(options, specs);
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? std::move(made).value() : nullptr;
  }
  // Reads the pid a script wrote for one of its own background children.
  pid_t ReadPid(const std::string& file) {
    for (int i = 0; i < 200 && !FileExists(file); ++i) usleep(10000);
    return static_cast<pid_t>(std::atoi(ReadFile(file).c_str()));
  }
  bool GoneWithin(pid_t pid, std::chrono::seconds bound) {
    auto give_up = std::chrono::steady_clock::now() + bound;
    while (IsRunning(pid)) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      usleep(10000);
    }
    return true;
  }
  void ExpectNoneRunning(const Supervisor& s) {
    for (pid_t pid : s.pids()) {
      EXPECT_FALSE(IsRunning(pid)) << "pid " << pid;
      EXPECT_NE(waitpid(pid, nullptr, WNOHANG), 0) << "pid " << pid << " was not reaped";
    }
  }

  TempDir dir_;
  std::vector<std::string> warnings_;
};

TEST_F(SupervisorTest, AllSucceedWritesLogsAndKeepsTails) {
  std::vector<ProcessSpec> specs = {
      Script("onprem/0", "echo out-a; echo err-a >&2; exit 0"),
      Script("onprem/1", "echo out-b; exit 0"),
      Script("cloud/0", "i=0; while [ $i -lt 50 ]; do echo line-$i; i=$((i+1)); done"),
  };
  SupervisorOptions options = Options();
  auto s = Make(options, specs);
  ASSERT_NE(s, nullptr);
  Status status = s->Run(Deadline());
  ASSERT_TRUE(status.ok()) << status.ToString();

  EXPECT_EQ(s->pids().size(), 3u);
  ExpectNoneRunning(*s);
  EXPECT_EQ(s->LogPath("onprem/0"), options.log_dir + "/onprem-0.log");
  std::string log_a = ReadFile(s->LogPath("onprem/0"));
  EXPECT_THAT(log_a, HasSubstr("out-a\n"));
  EXPECT_THAT(log_a, HasSubstr("err-a\n"));
  EXPECT_EQ(ReadFile(options.log_dir + "/onprem-1.log"), "out-b\n");
  EXPECT_THAT(s->TailLines("onprem/1"), ElementsAre("out-b"));

  // The full output is in the log; only the last 40 lines are kept in memory.
  std::string log_c = ReadFile(options.log_dir + "/cloud-0.log");
  EXPECT_THAT(log_c, HasSubstr("line-0\n"));
  EXPECT_THAT(log_c, HasSubstr("line-49\n"));
  std::vector<std::string> tail = s->TailLines("cloud/0");
  ASSERT_EQ(tail.size(), 40u);
  EXPECT_EQ(tail.front(), "line-10");
  EXPECT_EQ(tail.back(), "line-49");
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(SupervisorTest, FailingChildStopsTheOthersPromptly) {
  std::string sleeper = "sleep 60 & echo $! > " + dir_.Join("%s.pid") + "; wait";
  auto sleeper_for = [&](const std::string& tag) {
    std::string body = sleeper;
    body.replace(body.find("%s"), 2, tag);
    return body;
  };
  std::vector<ProcessSpec> specs = {
      Script("onprem/0", sleeper_for("a")),
      Script("cloud/0", "echo loading data; echo 'bad shape (3, 4)' >&2; sleep 0.2; exit 3"),
      Script("cloud/1", sleeper_for("b")),
  };
  auto s = Make(Options(), specs);
  ASSERT_NE(s, nullptr);
  auto start = std::chrono::steady_clock::now();
  Status status = s->Run(Deadline());
  double elapsed = SecondsSince(start);

  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("worker cloud/0 exited with status 3; last lines:"));
  EXPECT_THAT(status.message(), HasSubstr("loading data"));
  EXPECT_THAT(status.message(), HasSubstr("bad shape (3, 4)"));
  EXPECT_THAT(status.message(), HasSubstr("cloud-0.log"));
  // SIGTERM ends the sleepers at once; the 3 s grace is an upper bound.
  EXPECT_LT(elapsed, 5.0);
  ExpectNoneRunning(*s);
  // The scripts' own children went down with their process groups (SIGKILL
  // takes effect asynchronously, hence the bounded wait; without the group
  // kill they would live for 60 s).
  EXPECT_TRUE(GoneWithin(ReadPid(dir_.Join("a.pid")), std::chrono::seconds(5)));
  EXPECT_TRUE(GoneWithin(ReadPid(dir_.Join("b.pid")), std::chrono::seconds(5)));
}

TEST_F(SupervisorTest, ChildKilledBySignalIsNamed) {
  std::vector<ProcessSpec> specs = {
      Script("onprem/0", "echo about to die; kill -9 $$"),
      Script("cloud/0", "sleep 60"),
  };
  auto s = Make(Options(), specs);
  ASSERT_NE(s, nullptr);
  Status status = s->Run(Deadline());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("worker onprem/0 was killed by signal 9 (SIGKILL"));
  EXPECT_THAT(status.message(), HasSubstr("about to die"));
  EXPECT_THAT(status.message(), Not(HasSubstr("cloud/0 ")));
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, StopRequestSendsSigtermAndReturnsCancelled) {
  StopPipe stop;
  auto body = [&](const std::string& tag) {
    return "trap 'echo term > " + dir_.Join(tag + ".term") +
           "; exit 0' TERM\n"
           "echo '@stella {\"event\":\"start\",\"global_rank\":0}'\n"
           "sleep 60 & wait";
  };
  SupervisorOptions options = Options();
  options.stop_fd = stop.read_fd();
  int started = 0;
  // Request the stop only once every child has installed its trap.
  options.on_event = [&](const std::string&, const nlohmann::json&) {
    if (++started == 2) stop.Request();
  };
  auto s = Make(options, {Script("onprem/0", body("a")), Script("cloud/0", body("b"))});
  ASSERT_NE(s, nullptr);
  auto start = std::chrono::steady_clock::now();
  Status status = s->Run(Deadline());
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
  EXPECT_THAT(status.message(), Not(HasSubstr("SIGKILL")));
  EXPECT_LT(SecondsSince(start), 9.0);  // well inside the 10 s stop grace
  EXPECT_TRUE(FileExists(dir_.Join("a.term")));
  EXPECT_TRUE(FileExists(dir_.Join("b.term")));
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, ChildIgnoringSigtermIsKilledAfterTheGrace) {
  StopPipe stop;
  SupervisorOptions options = Options();
  options.stop_fd = stop.read_fd();
  options.stop_grace = std::chrono::milliseconds(500);
  options.on_event = [&](const std::string&, const nlohmann::json&) { stop.Request(); };
  auto s = Make(options, {Script("onprem/0",
                                 "trap '' TERM\n"
                                 "echo '@stella {\"event\":\"start\"}'\n"
                                 "while :; do sleep 0.1; done")});
  ASSERT_NE(s, nullptr);
  auto start = std::chrono::steady_clock::now();
  Status status = s->Run(Deadline());
  double elapsed = SecondsSince(start);
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("SIGKILLed: onprem/0"));
  EXPECT_GE(elapsed, 0.4);
  EXPECT_LT(elapsed, 10.0);
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, FailureGraceAlsoEndsWithSigkill) {
  SupervisorOptions options = Options();
  options.failure_grace = std::chrono::milliseconds(300);
  auto s = Make(options, {Script("onprem/0", "trap '' TERM; while :; do sleep 0.1; done"),
                          Script("cloud/0", "sleep 0.2; exit 7")});
  ASSERT_NE(s, nullptr);
  Status status = s->Run(Deadline());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("worker cloud/0 exited with status 7; it printed nothing"));
  EXPECT_THAT(status.message(), HasSubstr("SIGKILLed: onprem/0"));
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, SecondStopRequestKillsAtOnce) {
  StopPipe stop;
  SupervisorOptions options = Options();
  options.stop_fd = stop.read_fd();
  options.stop_grace = std::chrono::seconds(60);
  options.on_event = [&](const std::string&, const nlohmann::json&) { stop.Request(2); };
  auto s = Make(options, {Script("onprem/0",
                                 "trap '' TERM\n"
                                 "echo '@stella {\"event\":\"start\"}'\n"
                                 "while :; do sleep 0.1; done")});
  ASSERT_NE(s, nullptr);
  auto start = std::chrono::steady_clock::now();
  Status status = s->Run(Deadline());
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
  EXPECT_THAT(status.message(), HasSubstr("SIGKILLed: onprem/0"));
  EXPECT_LT(SecondsSince(start), 20.0);  // far below the 60 s grace
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, DeadlineStopsTheRun) {
  SupervisorOptions options = Options();
  auto s = Make(options, {Script("onprem/0", "sleep 60")});
  ASSERT_NE(s, nullptr);
  Status status = s->Run(SystemClock::Get().Now() + std::chrono::milliseconds(200));
  EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, EventLinesAreParsedAndMalformedOnesTolerated) {
  std::vector<std::pair<std::string, nlohmann::json>> events;
  SupervisorOptions options = Options();
  options.on_event = [&](const std::string& name, const nlohmann::json& e) { events.emplace_back(name, e); };
  auto s = Make(options, {Script("cloud/1",
                                 "echo plain output\n"
                                 "echo '@stella {\"event\":\"progress\",\"step\":5,\"loss\":0.5}'\n"
                                 "echo '@stella {not json'\n"
                                 "echo '@stella [1, 2]'\n"
                                 "echo '@stella {\"step\": 3}'\n"
                                 "echo '@stella {\"event\":\"error\",\"message\":\"disk full\"}'\n"
                                 "printf 'no newline at end'\n"
                                 "echo '@stella {\"event\":\"progress\",\"step\":6}' >&2")});
  ASSERT_NE(s, nullptr);
  Status status = s->Run(Deadline());
  ASSERT_TRUE(status.ok()) << status.ToString();

  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first, "cloud/1");
  EXPECT_EQ(events[0].second["event"], "progress");
  EXPECT_EQ(events[0].second["step"], 5);
  EXPECT_EQ(events[1].second["event"], "error");
  EXPECT_EQ(events[1].second["message"], "disk full");

  ASSERT_EQ(warnings_.size(), 3u);
  EXPECT_THAT(warnings_[0], HasSubstr("malformed event line from worker cloud/1"));
  EXPECT_THAT(warnings_[0], HasSubstr("@stella {not json"));
  EXPECT_THAT(warnings_[1], HasSubstr("@stella [1, 2]"));
  EXPECT_THAT(warnings_[2], HasSubstr("@stella {\"step\": 3}"));

  // Well-formed progress events stay out of the tail; errors, malformed lines
  // and stderr (which never carries events) stay in. The stderr line may land
  // anywhere: the two pipes are not ordered relative to each other.
  std::vector<std::string> tail = s->TailLines("cloud/1");
  auto stderr_line = std::find(tail.begin(), tail.end(), "@stella {\"event\":\"progress\",\"step\":6}");
  ASSERT_NE(stderr_line, tail.end());
  tail.erase(stderr_line);
  EXPECT_THAT(tail, ElementsAre("plain output", "@stella {not json", "@stella [1, 2]", "@stella {\"step\": 3}",
                                "@stella {\"event\":\"error\",\"message\":\"disk full\"}", "no newline at end"));
  EXPECT_THAT(ReadFile(s->LogPath("cloud/1")), HasSubstr("\"step\":5"));
}

TEST_F(SupervisorTest, ThrowingEventCallbackIsAWarning) {
  SupervisorOptions options = Options();
  options.on_event = [](const std::string&, const nlohmann::json& e) {
    (void)e.at("missing_field");  // throws nlohmann::json::out_of_range
  };
  auto s = Make(options, {Script("onprem/0", "echo '@stella {\"event\":\"start\"}'")});
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Run(Deadline()).ok());
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_THAT(warnings_[0], HasSubstr("could not be handled"));
}

TEST_F(SupervisorTest, EnvironmentOverridesReachTheChild) {
  ProcessSpec spec = Script("onprem/0", "echo \"var=$STELLA_TEST_VAR home=${HOME:+set}\"");
  spec.env_overrides = {"STELLA_TEST_VAR=hello world"};
  auto s = Make(Options(), {spec});
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Run(Deadline()).ok());
  std::vector<std::string> tail = s->TailLines("onprem/0");
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_THAT(tail[0], HasSubstr("var=hello world"));
}

TEST_F(SupervisorTest, ProgramThatCannotStartIsNamedAndOthersAreStopped) {
  auto s =
      Make(Options(), {Script("onprem/0", "sleep 60"), ProcessSpec{"cloud/0", {dir_.Join("no-such-runtime")}, {}}});
  ASSERT_NE(s, nullptr);
  auto start = std::chrono::steady_clock::now();
  Status status = s->Run(Deadline());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("cannot execute " + dir_.Join("no-such-runtime")));
  EXPECT_THAT(status.message(), HasSubstr("worker cloud/0"));
  EXPECT_LT(SecondsSince(start), 10.0);
  ExpectNoneRunning(*s);
}

TEST_F(SupervisorTest, BarePathNamesAreSearchedInPath) {
  auto s = Make(Options(), {ProcessSpec{"onprem/0", {"sh", "-c", "echo via-path"}, {}}});
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Run(Deadline()).ok());
  EXPECT_THAT(s->TailLines("onprem/0"), ElementsAre("via-path"));
}

TEST_F(SupervisorTest, CreateRejectsBadSpecs) {
  auto dup = Supervisor::Create(Options(), {ProcessSpec{"a/0", {"true"}, {}}, ProcessSpec{"a/0", {"true"}, {}}});
  EXPECT_EQ(dup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(dup.status().message(), HasSubstr("duplicate name 'a/0'"));

  auto same_log = Supervisor::Create(Options(), {ProcessSpec{"a/0", {"true"}, {}}, ProcessSpec{"a-0", {"true"}, {}}});
  EXPECT_THAT(same_log.status().message(), HasSubstr("a-0.log"));

  auto empty_argv = Supervisor::Create(Options(), {ProcessSpec{"a/0", {}, {}}});
  EXPECT_THAT(empty_argv.status().message(), HasSubstr("argv is empty"));

  auto bad_env = Supervisor::Create(Options(), {ProcessSpec{"a/0", {"true"}, {"NOVALUE"}}});
  EXPECT_THAT(bad_env.status().message(), HasSubstr("'NOVALUE' is not KEY=VALUE"));

  SupervisorOptions no_dir = Options();
  no_dir.log_dir.clear();
  EXPECT_FALSE(Supervisor::Create(no_dir, {ProcessSpec{"a/0", {"true"}, {}}}).ok());
  EXPECT_FALSE(Supervisor::Create(Options(), {}).ok());
}

TEST(DescribeWaitStatusTest, ExitAndSignal) {
  EXPECT_EQ(DescribeWaitStatus(3 << 8), "exited with status 3");
  EXPECT_EQ(DescribeWaitStatus(SIGKILL), "was killed by signal 9 (SIGKILL: Killed)");
  EXPECT_THAT(DescribeWaitStatus(SIGSEGV), HasSubstr("signal 11 (SIGSEGV"));
}

TEST(LogFileNameTest, ReplacesUnsafeCharacters) {
  EXPECT_EQ(LogFileName("cloud/0"), "cloud-0.log");
  EXPECT_EQ(LogFileName("a b/../c"), "a-b-..-c.log");
  EXPECT_EQ(LogFileName(".."), "p...log");
}

}  // namespace
}  // namespace stella::cli
