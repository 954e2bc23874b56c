// End to end: a real Prometheus server scrapes an Exposer and its query API
// returns exactly the values the Registry holds.
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "src/metrics/exposer.h"
#include "src/metrics/registry.h"
#include "tests/metrics/test_http_client.h"
#include "tests/metrics/test_process.h"

namespace stella {
namespace metrics {
namespace {

using nlohmann::json;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr auto kPollBudget = std::chrono::seconds(60);

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kPrometheus, X_OK), 0)
        << kPrometheus << " is missing or not executable; the project setup installs it "
        << "(Debian package 'prometheus'). This test must not be skipped.";

    registry_.AddGauge("stella_scrape_test_value", "A gauge Prometheus must read back.").Add({}).Set(42.5);
    registry_.AddCounter("stella_scrape_test_events_total", "Events, labelled.")
        .Add({{"kind", "a\"quoted\""}})
        .Increment(7);
    Histogram& latency = registry_.AddHistogram("stella_scrape_test_latency_seconds", "Latency.", {0.5, 1}).Add({});
    for (double v : {0.25, 0.75, 3.0}) latency.Observe(v);

    StatusOr<std::unique_ptr<Exposer>> exposer = Exposer::Create(ExposerOptions(), &registry_);
    ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
    exposer_ = std::move(exposer).value();

    StatusOr<std::unique_ptr<testing::TempDir>> dir = testing::TempDir::Create("stella-prom-");
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    dir_ = std::move(dir).value();
    log_path_ = dir_->path() + "/prometheus.log";
    const std::string config_path = dir_->path() + "/prometheus.yml";
    // scrape_timeout must not exceed scrape_interval, and its default is 10s.
    ASSERT_TRUE(testing::WriteFile(config_path,
                                   "global:\n"
                                   "  scrape_interval: 1s\n"
                                   "  scrape_timeout: 1s\n"
                                   "  evaluation_interval: 1s\n"
                                   "scrape_configs:\n"
                                   "  - job_name: stella\n"
                                   "    static_configs:\n"
                                   "      - targets: ['127.0.0.1:" +
                                       std::to_string(exposer_->port()) + "']\n")
                    .ok());

    StatusOr<int> port = testing::PickFreePort();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    prometheus_port_ = *port;
    StatusOr<std::unique_ptr<testing::ChildProcess>> prometheus = testing::ChildProcess::Start(
        {kPrometheus, "--config.file=" + config_path, "--storage.tsdb.path=" + dir_->path() + "/data",
         "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_)},
        "", log_path_);
    ASSERT_TRUE(prometheus.ok()) << prometheus.status().ToString();
    prometheus_ = std::move(prometheus).value();
  }

  void TearDown() override {
    // Kill and reap Prometheus before the temp dir (its storage) goes away.
    prometheus_.reset();
    if (HasFailure() && dir_ != nullptr) {
      StatusOr<std::string> log = testing::ReadFile(log_path_);
      std::string text = log.ok() ? *log : log.status().ToString();
      if (text.size() > 8000) text = "..." + text.substr(text.size() - 8000);
      ADD_FAILURE() << "prometheus log (tail):\n" << text;
    }
    dir_.reset();
  }

  // GETs `target` from Prometheus and parses the JSON body; a null json when
  // Prometheus is not answering (yet).
  json PrometheusGet(const std::string& target) {
    StatusOr<testing::HttpResponse> response = testing::HttpGet(prometheus_port_, target, std::chrono::seconds(5));
    if (!response.ok() || response->status != 200) return json();
    json parsed = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    return parsed.is_discarded() ? json() : parsed;
  }

  // Polls an instant query until it returns at least one series or the
  // budget runs out; returns the result array (possibly empty).
  json QueryUntilPresent(const std::string& query, std::chrono::steady_clock::time_point deadline) {
    while (std::chrono::steady_clock::now() < deadline && prometheus_->Running()) {
      json body = PrometheusGet("/api/v1/query?query=" + query);
      if (body.is_object() && body.value("status", "") == "success" && body["data"]["result"].is_array() &&
          !body["data"]["result"].empty()) {
        return body["data"]["result"];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return json::array();
  }

  Registry registry_;
  std::unique_ptr<Exposer> exposer_;
  std::unique_ptr<testing::TempDir> dir_;
  std::string log_path_;
  int prometheus_port_ = 0;
  std::unique_ptr<testing::ChildProcess> prometheus_;
};

TEST_F(PrometheusScrapeTest, PrometheusScrapesTheValuesWeSet) {
  const auto deadline = std::chrono::steady_clock::now() + kPollBudget;

  json gauge = QueryUntilPresent("stella_scrape_test_value", deadline);
  ASSERT_TRUE(prometheus_->Running()) << "prometheus exited early";
  ASSERT_EQ(gauge.size(), 1u) << "no sample within " << kPollBudget.count() << "s: " << gauge;
  // Instant vector sample: [ <unix time>, "<value as string>" ].
  EXPECT_EQ(gauge[0]["value"][1], "42.5") << gauge;
  EXPECT_EQ(gauge[0]["metric"]["job"], "stella") << gauge;

  json counter = QueryUntilPresent("stella_scrape_test_events_total", deadline);
  ASSERT_EQ(counter.size(), 1u) << counter;
  EXPECT_EQ(counter[0]["value"][1], "7") << counter;
  // The escaped label value arrives unescaped.
  EXPECT_EQ(counter[0]["metric"]["kind"], "a\"quoted\"") << counter;

  json count = QueryUntilPresent("stella_scrape_test_latency_seconds_count", deadline);
  ASSERT_EQ(count.size(), 1u) << count;
  EXPECT_EQ(count[0]["value"][1], "3") << count;
  json buckets = QueryUntilPresent("stella_scrape_test_latency_seconds_bucket", deadline);
  ASSERT_EQ(buckets.size(), 3u) << buckets;
  for (const json& series : buckets) {
    const std::string le = series["metric"]["le"];
    const std::string value = series["value"][1];
    if (le == "0.5") {
      EXPECT_EQ(value, "1");
    } else if (le == "1") {
      EXPECT_EQ(value, "2");
    } else {
      EXPECT_EQ(le, "+Inf");
      EXPECT_EQ(value, "3");
    }
  }

  // The target itself is healthy.
  json targets;
  while (std::chrono::steady_clock::now() < deadline) {
    targets = PrometheusGet("/api/v1/targets");
    if (targets.is_object() && targets["data"]["activeTargets"].is_array() &&
        !targets["data"]["activeTargets"].empty() && targets["data"]["activeTargets"][0].value("health", "") == "up") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(targets.is_object()) << "no /api/v1/targets answer";
  ASSERT_EQ(targets["data"]["activeTargets"].size(), 1u) << targets;
  const json& target = targets["data"]["activeTargets"][0];
  EXPECT_EQ(target["health"], "up") << target;
  EXPECT_EQ(target["lastError"], "") << target;
  EXPECT_EQ(target["scrapeUrl"], "http://127.0.0.1:" + std::to_string(exposer_->port()) + "/metrics") << target;
}

}  // namespace
}  // namespace metrics
}  // namespace stella
