// A live `stella run` job observed from outside: its workers' /metrics pass
// promtool and are scraped by a real Prometheus server, and Ctrl-C (SIGINT to
// the CLI) stops every worker cleanly with exit code 130.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process_util.h"

namespace {

using Clock = std::chrono::steady_clock;

using stella::testing::BuildDir;
using stella::testing::FreePort;
using stella::testing::FreePortRun;
using stella::testing::ReadFile;
using stella::testing::Spawn;

std::string Shell(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = p ? pclose(p) : -1;
  *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

// Kills and reaps a child on scope exit, whatever happens in the test.
struct ChildGuard {
  pid_t pid;
  ~ChildGuard() {
    if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

TEST(LiveJobTest, MetricsArePromtoolCleanScrapedByPrometheusAndCtrlCStopsTheJob) {
  char tmpl[] = "/tmp/stella-live-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const int metrics_base = FreePortRun(2);  // one port per worker
  const std::string job = dir + "/job.yaml";
  std::ofstream(job) << "apiVersion: stella.dev/v1alpha1\nkind: StellaJob\nmetadata:\n  name: live-metrics\n"
                        "spec:\n  model: {name: mlp, hidden: 32}\n  dataset: {name: fashion-mnist}\n"
                        "  batchSize: 32\n  training: {steps: 100000000, evalEvery: 200}\n"
                        "  clusters:\n    - name: east\n      wan: {bandwidthMbps: 20}\n"
                        "    - name: west\n      wan: {bandwidthMbps: 20}\n"
                        "  metrics: {port: "
                     << metrics_base << "}\n";
  ChildGuard cli{Spawn({BuildDir() + "/bin/stella", "run", job, "--log-dir", dir + "/logs"}, dir + "/out.txt")};
  // Wait until the gateway of "east" has taken steps.
  const std::string url = "http://127.0.0.1:" + std::to_string(metrics_base) + "/metrics";
  std::string scrape;
  int rc = -1;
  for (auto deadline = Clock::now() + std::chrono::seconds(120); Clock::now() < deadline;) {
    scrape = Shell("curl -sf " + url, &rc);
    if (rc == 0 && scrape.find("stella_steps_total{") != std::string::npos &&
        scrape.find("stella_wan_sent_bytes{") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_EQ(rc, 0) << "no /metrics at " << url << "\n" << ReadFile(dir + "/out.txt");
  std::ofstream(dir + "/scrape.txt") << scrape;
  std::string promtool = Shell("promtool check metrics < " + dir + "/scrape.txt 2>&1", &rc);
  EXPECT_EQ(rc, 0) << promtool;
  EXPECT_EQ(promtool, "") << promtool;
  EXPECT_NE(scrape.find("stella_job=\"live-metrics\""), std::string::npos);
  EXPECT_NE(scrape.find("peer=\"west\""), std::string::npos);

  // A real Prometheus scrapes both workers.
  const int prom_port = FreePort();
  std::ofstream(dir + "/prometheus.yml")
      << "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: stella\n    static_configs:\n"
         "      - targets: ['127.0.0.1:"
      << metrics_base << "', '127.0.0.1:" << metrics_base + 1 << "']\n";
  ChildGuard prom{
      Spawn({"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/tsdb",
             "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
            dir + "/prometheus.log")};
  int workers_seen = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(60); Clock::now() < deadline && workers_seen < 2;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::string body = Shell(
        "curl -sf 'http://127.0.0.1:" + std::to_string(prom_port) + "/api/v1/query?query=stella_steps_total%3E0'", &rc);
    if (rc != 0) continue;
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_discarded() && j["status"] == "success") workers_seen = static_cast<int>(j["data"]["result"].size());
  }
  EXPECT_EQ(workers_seen, 2) << ReadFile(dir + "/prometheus.log");

  // Ctrl-C: the CLI asks workers to stop at a step boundary and exits 130.
  ASSERT_EQ(kill(cli.pid, SIGINT), 0);
  int status = 0;
  pid_t done = 0;
  for (auto deadline = Clock::now() + std::chrono::seconds(30); Clock::now() < deadline && done == 0;) {
    done = waitpid(cli.pid, &status, WNOHANG);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(done, cli.pid) << "stella run did not stop after SIGINT\n" << ReadFile(dir + "/out.txt");
  cli.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << ReadFile(dir + "/out.txt");
  // Workers stopped cleanly (agreed stop), not killed.
  const std::string log = ReadFile(dir + "/logs/east-0.log");
  EXPECT_NE(log.find("\"event\":\"done\""), std::string::npos) << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
  Shell("pgrep -f -- 'stella-[r]untime --job " + job + "'", &rc);
  EXPECT_NE(rc, 0) << "a worker survived";
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
