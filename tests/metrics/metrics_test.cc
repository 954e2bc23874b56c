#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "src/metrics/exposer.h"
#include "src/metrics/metric.h"
#include "src/metrics/registry.h"
#include "src/metrics/text_format.h"
#include "tests/metrics/test_http_client.h"

namespace stella {
namespace metrics {
namespace {

using testing::ConnectLoopback;
using testing::HttpGet;
using testing::HttpResponse;
using testing::ParseResponse;
using testing::ReadToEof;
using testing::SendRawRequest;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------
// Programmer errors abort (death tests run first, before any thread exists).

TEST(MetricsDeathTest, CounterRejectsNegativeAndNaNIncrements) {
  Counter counter;
  EXPECT_DEATH(counter.Increment(-1.0), "check failed");
  EXPECT_DEATH(counter.Increment(kNaN), "check failed");
}

TEST(MetricsDeathTest, RegistryRejectsInvalidNames) {
  Registry registry;
  EXPECT_DEATH(registry.AddGauge("1starts_with_digit", "h"), "invalid gauge name");
  EXPECT_DEATH(registry.AddGauge("has-dash", "h"), "invalid gauge name");
  EXPECT_DEATH(registry.AddCounter("stella_requests", "h"), "ending in _total");
  Family<Gauge>& gauges = registry.AddGauge("stella_g", "h");
  EXPECT_DEATH(gauges.Add({{"bad-label", "v"}}), "invalid label name");
  EXPECT_DEATH(gauges.Add({{"__reserved", "v"}}), "invalid label name");
  Family<Histogram>& histograms = registry.AddHistogram("stella_h", "h", {1.0});
  EXPECT_DEATH(histograms.Add({{"le", "1"}}), "invalid label name");
}

TEST(MetricsDeathTest, RegistryRejectsConflictingFamilies) {
  Registry registry;
  registry.AddHistogram("stella_latency_seconds", "h", {1.0, 2.0});
  EXPECT_DEATH(registry.AddGauge("stella_latency_seconds", "h"), "different layout");
  EXPECT_DEATH(registry.AddHistogram("stella_latency_seconds", "h", {1.0}), "different layout");
  // A gauge whose name equals a histogram's _count series would be ambiguous.
  EXPECT_DEATH(registry.AddGauge("stella_latency_seconds_count", "h"), "already does");
}

TEST(MetricsDeathTest, HistogramRejectsUnsortedOrNonFiniteBounds) {
  EXPECT_DEATH(Histogram({2.0, 1.0}), "check failed");
  EXPECT_DEATH(Histogram({1.0, 1.0}), "check failed");
  EXPECT_DEATH(Histogram({1.0, kInf}), "check failed");
  Registry registry;
  EXPECT_DEATH(registry.AddHistogram("stella_h", "h", {3.0, 2.0}), "check failed");
}

// ---------------------------------------------------------------------------
// Names, escaping, numbers.

TEST(TextFormatTest, ValidatesMetricAndLabelNames) {
  EXPECT_TRUE(IsValidMetricName("stella_bytes_total"));
  EXPECT_TRUE(IsValidMetricName("job:rate5m"));
  EXPECT_TRUE(IsValidMetricName("_x1"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("1x"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName("a b"));
  EXPECT_FALSE(IsValidMetricName("ä"));
  EXPECT_TRUE(IsValidLabelName("peer"));
  EXPECT_TRUE(IsValidLabelName("_x9"));
  EXPECT_FALSE(IsValidLabelName(""));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("9a"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
}

TEST(TextFormatTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue(R"(C:\dir "q")"
                             "\nnext"),
            R"(C:\\dir \"q\"\nnext)");
  EXPECT_EQ(EscapeLabelValue("plain ünicode"), "plain ünicode");
  EXPECT_EQ(EscapeHelp("a\\b \"c\"\nd"), R"(a\\b "c"\nd)");
}

TEST(TextFormatTest, FormatsNumbersAsPrometheusParsesThem) {
  EXPECT_EQ(FormatValue(0.0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(1.0), "1");
  EXPECT_EQ(FormatValue(-42.0), "-42");
  EXPECT_EQ(FormatValue(1e6), "1000000");
  EXPECT_EQ(FormatValue(123456789012345.0), "123456789012345");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(1.5e-7), "1.5e-07");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(kInf), "+Inf");
  EXPECT_EQ(FormatValue(-kInf), "-Inf");
  EXPECT_EQ(FormatValue(kNaN), "NaN");
  // Non-integers round-trip exactly.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(FormatValue(third)), third);
}

// ---------------------------------------------------------------------------
// Metric semantics.

TEST(MetricTest, CounterAndGaugeArithmetic) {
  Counter counter;
  counter.Increment();
  counter.Increment(2.5);
  counter.Increment(0.0);
  EXPECT_EQ(counter.Value(), 3.5);
  Gauge gauge;
  gauge.Set(10);
  gauge.Increment();
  gauge.Decrement(4);
  gauge.Increment(-0.5);
  EXPECT_EQ(gauge.Value(), 6.5);
  gauge.Set(kNaN);
  EXPECT_TRUE(std::isnan(gauge.Value()));
}

TEST(MetricTest, HistogramBucketsAreUpperInclusiveAndCumulative) {
  Histogram histogram({1.0, 2.0, 5.0});
  for (double v : {0.5, 1.0, 1.5, 3.0, 10.0, -7.0}) histogram.Observe(v);
  const HistogramSnapshot s = histogram.Snapshot();
  EXPECT_EQ(s.bounds, (std::vector<double>{1.0, 2.0, 5.0}));
  // <=1: 0.5, 1.0, -7.0; <=2: +1.5; <=5: +3.0; +Inf: +10.0
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{3, 4, 5, 6}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.sum, 9.0);
}

TEST(MetricTest, HistogramWithoutBoundsAndNaNObservations) {
  Histogram histogram({});
  histogram.Observe(3.0);
  histogram.Observe(kNaN);
  const HistogramSnapshot s = histogram.Snapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{2}));
  EXPECT_EQ(s.count, 2u);
  EXPECT_TRUE(std::isnan(s.sum));
}

TEST(MetricTest, BucketHelpers) {
  EXPECT_EQ(Histogram::ExponentialBuckets(0.001, 10, 4),
            (std::vector<double>{0.001, 0.01, 0.1, 1.0 * 0.001 * 10 * 10 * 10}));
  EXPECT_EQ(Histogram::LinearBuckets(1, 0.5, 3), (std::vector<double>{1.0, 1.5, 2.0}));
}

TEST(MetricTest, ConcurrentUpdatesFromFourThreadsSumExactly) {
  Registry registry;
  Counter& counter = registry.AddCounter("stella_events_total", "Events.").Add({});
  Gauge& gauge = registry.AddGauge("stella_level", "Level.").Add({});
  Histogram& histogram = registry.AddHistogram("stella_sizes", "Sizes.", {10, 100}).Add({});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        gauge.Increment(2);
        gauge.Decrement();
        histogram.Observe(t % 2 == 0 ? 5 : 50);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), kThreads * kPerThread);
  EXPECT_EQ(gauge.Value(), kThreads * kPerThread);
  const HistogramSnapshot s = histogram.Snapshot();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{100000, 200000, 200000}));
  EXPECT_EQ(s.sum, 2.0 * kPerThread * 5 + 2.0 * kPerThread * 50);
}

// ---------------------------------------------------------------------------
// Registry and exposition.

TEST(RegistryTest, SameLabelsYieldTheSameStableObject) {
  Registry registry;
  Family<Counter>& family = registry.AddCounter("stella_x_total", "X.");
  EXPECT_EQ(&registry.AddCounter("stella_x_total", "X."), &family);
  Counter& first = family.Add({{"peer", "a"}});
  // Many insertions later the reference still points at the same series.
  for (int i = 0; i < 1000; ++i) family.Add({{"peer", "p" + std::to_string(i)}});
  EXPECT_EQ(&family.Add({{"peer", "a"}}), &first);
  EXPECT_EQ(family.size(), 1001u);
  first.Increment(5);
  EXPECT_NE(registry.Serialize().find("stella_x_total{peer=\"a\"} 5\n"), std::string::npos);
}

TEST(RegistryTest, SerializeMatchesGoldenExposition) {
  Registry registry;
  // Registered out of order on purpose: output is sorted by name.
  Family<Counter>& requests = registry.AddCounter("stella_requests_total", "Requests handled.");
  requests.Add({{"method", "get"}, {"code", "500"}}).Increment();
  requests.Add({{"code", "200"}, {"method", "get"}}).Increment(3);
  registry.AddGauge("stella_queue_depth", "Items waiting.").Add({}).Set(7);
  Histogram& latency = registry.AddHistogram("stella_latency_seconds", "Latency.", {0.1, 1}).Add({{"stage", "send"}});
  latency.Observe(0.0625);
  latency.Observe(0.5);
  latency.Observe(2);
  registry.AddGauge("stella_unused", "Families without series are omitted.");

  EXPECT_EQ(registry.Serialize(),
            "# HELP stella_latency_seconds Latency.\n"
            "# TYPE stella_latency_seconds histogram\n"
            "stella_latency_seconds_bucket{stage=\"send\",le=\"0.1\"} 1\n"
            "stella_latency_seconds_bucket{stage=\"send\",le=\"1\"} 2\n"
            "stella_latency_seconds_bucket{stage=\"send\",le=\"+Inf\"} 3\n"
            "stella_latency_seconds_sum{stage=\"send\"} 2.5625\n"
            "stella_latency_seconds_count{stage=\"send\"} 3\n"
            "# HELP stella_queue_depth Items waiting.\n"
            "# TYPE stella_queue_depth gauge\n"
            "stella_queue_depth 7\n"
            "# HELP stella_requests_total Requests handled.\n"
            "# TYPE stella_requests_total counter\n"
            "stella_requests_total{code=\"200\",method=\"get\"} 3\n"
            "stella_requests_total{code=\"500\",method=\"get\"} 1\n");
}

TEST(RegistryTest, SerializeEscapesLabelValuesAndHelp) {
  Registry registry;
  Family<Gauge>& family = registry.AddGauge("stella_paths", "Paths seen.\nSecond line \\ \"q\".");
  family.Add({{"path", "C:\\tmp\\\"x\"\nend"}}).Set(kInf);
  family.Add({{"path", ""}}).Set(-kInf);
  family.Add({{"path", "nan"}}).Set(kNaN);
  EXPECT_EQ(registry.Serialize(),
            "# HELP stella_paths Paths seen.\\nSecond line \\\\ \"q\".\n"
            "# TYPE stella_paths gauge\n"
            "stella_paths{path=\"\"} -Inf\n"
            "stella_paths{path=\"C:\\\\tmp\\\\\\\"x\\\"\\nend\"} +Inf\n"
            "stella_paths{path=\"nan\"} NaN\n");
}

TEST(RegistryTest, HistogramSeriesExposeCumulativeBucketsSumAndCount) {
  Registry registry;
  Family<Histogram>& family = registry.AddHistogram("stella_bytes", "Bytes.", {1024, 65536});
  Histogram& unlabeled = family.Add({});
  for (double v : {10.0, 2000.0, 2000.0, 1e6}) unlabeled.Observe(v);
  EXPECT_EQ(registry.Serialize(),
            "# HELP stella_bytes Bytes.\n"
            "# TYPE stella_bytes histogram\n"
            "stella_bytes_bucket{le=\"1024\"} 1\n"
            "stella_bytes_bucket{le=\"65536\"} 3\n"
            "stella_bytes_bucket{le=\"+Inf\"} 4\n"
            "stella_bytes_sum 1004010\n"
            "stella_bytes_count 4\n");
}

// ---------------------------------------------------------------------------
// Exposer over a real loopback socket.

class ExposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddCounter("stella_scrapes_total", "Scrapes.").Add({{"peer", "a\"b"}}).Increment(2);
    ExposerOptions options;
    options.read_timeout = std::chrono::milliseconds(2000);
    StatusOr<std::unique_ptr<Exposer>> exposer = Exposer::Create(options, &registry_);
    ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
    exposer_ = std::move(exposer).value();
    ASSERT_GT(exposer_->port(), 0);
  }

  HttpResponse Get(const std::string& target) {
    StatusOr<HttpResponse> response = HttpGet(exposer_->port(), target);
    EXPECT_TRUE(response.ok()) << target << ": " << response.status().ToString();
    return response.ok() ? *response : HttpResponse{};
  }

  HttpResponse Raw(const std::string& request) {
    StatusOr<HttpResponse> response = SendRawRequest(exposer_->port(), request);
    EXPECT_TRUE(response.ok()) << response.status().ToString();
    return response.ok() ? *response : HttpResponse{};
  }

  Registry registry_;
  std::unique_ptr<Exposer> exposer_;
};

TEST_F(ExposerTest, ServesMetricsWithPrometheusContentType) {
  HttpResponse response = Get("/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["connection"], "close");
  EXPECT_EQ(response.body, registry_.Serialize());
  EXPECT_NE(response.body.find("stella_scrapes_total{peer=\"a\\\"b\"} 2\n"), std::string::npos);

  // Later updates show up on the next scrape; the query string is ignored.
  registry_.AddGauge("stella_late", "Added after start.").Add({}).Set(1.25);
  response = Get("/metrics?debug=1");
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.body.find("stella_late 1.25\n"), std::string::npos) << response.body;
}

TEST_F(ExposerTest, HealthAndReadiness) {
  HttpResponse health = Get("/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok");
  EXPECT_EQ(Get("/readyz").status, 200);
  exposer_->SetReady(false);
  HttpResponse not_ready = Get("/readyz");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, "not ready");
  EXPECT_EQ(Get("/healthz").status, 200);  // liveness is independent
  exposer_->SetReady(true);
  EXPECT_EQ(Get("/readyz").status, 200);
}

TEST_F(ExposerTest, UnknownPathIs404) {
  EXPECT_EQ(Get("/nope").status, 404);
  EXPECT_EQ(Get("/metrics/extra").status, 404);
  EXPECT_EQ(Get("/").status, 404);
}

TEST_F(ExposerTest, NonGetIs405WithAllowHeader) {
  for (const char* method : {"POST", "PUT", "DELETE", "HEAD"}) {
    HttpResponse response = Raw(std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(response.status, 405) << method;
    EXPECT_EQ(response.headers["allow"], "GET") << method;
  }
  // A request body the server never reads must not destroy the response.
  HttpResponse with_body = Raw("POST /metrics HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
  EXPECT_EQ(with_body.status, 405);
}

TEST_F(ExposerTest, MalformedRequestIs400) {
  EXPECT_EQ(Raw("GARBAGE\r\n\r\n").status, 400);
  EXPECT_EQ(Raw("GET /metrics\r\n\r\n").status, 400);
  EXPECT_EQ(Raw("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n").status, 400);
  EXPECT_EQ(Raw("GET metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Raw("GET /metrics HTTP/2.0\r\n\r\n").status, 505);
  // Bare LF line endings are tolerated.
  EXPECT_EQ(Raw("GET /healthz HTTP/1.0\n\n").status, 200);
}

TEST_F(ExposerTest, IncompleteRequestThenHalfCloseIs400) {
  StatusOr<int> fd = ConnectLoopback(exposer_->port(), std::chrono::seconds(10));
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  const std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(*fd, partial.data(), partial.size(), MSG_NOSIGNAL), static_cast<ssize_t>(partial.size()));
  ::shutdown(*fd, SHUT_WR);
  StatusOr<std::string> raw = ReadToEof(*fd);
  ::close(*fd);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  StatusOr<HttpResponse> response = ParseResponse(*raw);
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  EXPECT_EQ(response->status, 400);
}

TEST_F(ExposerTest, OversizedHeadIs431) {
  const std::string huge(20 * 1024, 'a');
  EXPECT_EQ(Raw("GET /metrics HTTP/1.1\r\nX-Big: " + huge + "\r\n\r\n").status, 431);
}

TEST_F(ExposerTest, ExtraHandlersCanBeAddedWhileServing) {
  EXPECT_EQ(Get("/debug/vars").status, 404);
  int calls = 0;
  exposer_->Handle("/debug/vars", [&calls] { return "calls=" + std::to_string(++calls); });
  HttpResponse response = Get("/debug/vars");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(response.body, "calls=1");
  // Re-registering replaces; a throwing handler yields 500 and the server
  // keeps serving.
  exposer_->Handle("/debug/vars", []() -> std::string { throw std::runtime_error("boom"); });
  HttpResponse failed = Get("/debug/vars");
  EXPECT_EQ(failed.status, 500);
  EXPECT_NE(failed.body.find("boom"), std::string::npos);
  EXPECT_EQ(Get("/healthz").status, 200);
}

TEST(ExposerTimeoutTest, SilentClientGets408AndDoesNotBlockOthersForever) {
  Registry registry;
  ExposerOptions options;
  options.read_timeout = std::chrono::milliseconds(200);
  StatusOr<std::unique_ptr<Exposer>> exposer = Exposer::Create(options, &registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
  const int port = (*exposer)->port();

  // A client that connects and says nothing occupies the serial acceptor
  // only until read_timeout.
  StatusOr<int> silent = ConnectLoopback(port, std::chrono::seconds(10));
  ASSERT_TRUE(silent.ok()) << silent.status().ToString();
  StatusOr<HttpResponse> healthy = HttpGet(port, "/healthz");
  ASSERT_TRUE(healthy.ok()) << healthy.status().ToString();
  EXPECT_EQ(healthy->status, 200);

  StatusOr<std::string> raw = ReadToEof(*silent);
  ::close(*silent);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  StatusOr<HttpResponse> timed_out = ParseResponse(*raw);
  ASSERT_TRUE(timed_out.ok()) << timed_out.status().ToString();
  EXPECT_EQ(timed_out->status, 408);
}

TEST(ExposerLifecycleTest, DestructorStopsEvenWithAnIdleClientConnected) {
  Registry registry;
  ExposerOptions options;
  options.read_timeout = std::chrono::minutes(10);  // only the stop can end the read
  StatusOr<std::unique_ptr<Exposer>> exposer = Exposer::Create(options, &registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
  const int port = (*exposer)->port();
  StatusOr<int> idle = ConnectLoopback(port, std::chrono::seconds(10));
  ASSERT_TRUE(idle.ok());
  // A partial request: once the acceptor picks this connection up it waits
  // for the rest. Whether or not it already has, the destructor must return
  // promptly instead of waiting out read_timeout.
  ASSERT_EQ(::send(*idle, "G", 1, MSG_NOSIGNAL), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // usually enough to be accepted
  const auto start = std::chrono::steady_clock::now();
  exposer.value().reset();
  // Generous bound: returning at all (rather than after 10 minutes) is the point.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  // The server side is gone: the idle client sees EOF (or a reset).
  char byte;
  EXPECT_LE(::recv(*idle, &byte, 1, 0), 0);
  ::close(*idle);
  // And the port no longer accepts connections.
  EXPECT_FALSE(ConnectLoopback(port, std::chrono::seconds(2)).ok());
}

TEST(ExposerCreateTest, RejectsBadOptionsWithContext) {
  Registry registry;
  ExposerOptions options;
  EXPECT_EQ(Exposer::Create(options, nullptr).status().code(), StatusCode::kInvalidArgument);

  options.bind_address = "not-an-ip";
  StatusOr<std::unique_ptr<Exposer>> bad_address = Exposer::Create(options, &registry);
  ASSERT_FALSE(bad_address.ok());
  EXPECT_EQ(bad_address.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_address.status().message().find("not-an-ip"), std::string::npos);

  options = ExposerOptions();
  options.port = 70000;
  StatusOr<std::unique_ptr<Exposer>> bad_port = Exposer::Create(options, &registry);
  ASSERT_FALSE(bad_port.ok());
  EXPECT_NE(bad_port.status().message().find("70000"), std::string::npos);

  options = ExposerOptions();
  options.read_timeout = std::chrono::milliseconds(0);
  EXPECT_FALSE(Exposer::Create(options, &registry).ok());
}

TEST(ExposerCreateTest, PortInUseIsAnIoErrorAndWildcardBindWorks) {
  Registry registry;
  ExposerOptions options;
  options.bind_address = "0.0.0.0";
  StatusOr<std::unique_ptr<Exposer>> first = Exposer::Create(options, &registry);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  StatusOr<HttpResponse> response = HttpGet((*first)->port(), "/healthz");
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  EXPECT_EQ(response->status, 200);

  options.port = (*first)->port();
  StatusOr<std::unique_ptr<Exposer>> second = Exposer::Create(options, &registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(std::to_string(options.port)), std::string::npos)
      << second.status().message();
}

}  // namespace
}  // namespace metrics
}  // namespace stella
