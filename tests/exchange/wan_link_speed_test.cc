// The WAN link stack that users get by default (TCP -> progress tracking ->
// egress shaper -> mutual TLS -> frames, as WanMesh::Create builds it) must
// run at link speed. A read path that took one byte per call once held the
// demo to a sixth of its 100 Mbit/s link; this test fails on that.
//
// Two gateways in this process exchange 2.5 MB each way per round over
// loopback with a 100 Mbit/s, 5 ms shaper (examples/demo.yaml's link). Each
// side's payload takes 0.2 s on the wire at full rate, so the rate measured
// over several rounds is well above the 70% floor unless the stack itself
// is slow. TLS at 12.5 MB/s costs a few percent of one core.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "runtime/exchange/wan_mesh.h"
#include "src/security/certs.h"
#include "tests/testing/process_util.h"

namespace stella::exchange {
namespace {

using stella::testing::FreePort;
using stella::testing::TempDir;

constexpr double kLinkBitsPerSecond = 100e6;
constexpr size_t kPayloadBytes = 2500 * 1000;
constexpr int kRounds = 6;

std::string WriteGatewayDir(const TempDir& tmp, const security::JobCa& ca, const std::string& cluster) {
  auto m = security::IssueGatewayCertificate(ca, cluster);
  STELLA_CHECK(m.ok());
  const std::string dir = tmp.path() + "/" + cluster;
  STELLA_CHECK(security::WriteTlsDir(dir, *m).ok());
  return dir;
}

WanMeshOptions Options(int index, const std::vector<std::string>& addresses, const std::string& tls_dir) {
  WanMeshOptions mo;
  mo.job_name = "speed";
  mo.cluster_index = index;
  mo.addresses = addresses;
  mo.cluster_names = {"alpha", "beta"};
  mo.tls_dir = tls_dir;
  mo.egress_bits_per_second = kLinkBitsPerSecond;
  mo.egress_latency = std::chrono::microseconds(5000);
  mo.connect_timeout = std::chrono::seconds(20);
  return mo;
}

TEST(WanLinkSpeedTest, TlsLinkRunsAtLeastAtSeventyPercentOfTheShapedRate) {
  TempDir tmp;
  auto ca = security::CreateJobCa("default", "speed");
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  const std::vector<std::string> addresses = {"127.0.0.1:" + std::to_string(FreePort()),
                                              "127.0.0.1:" + std::to_string(FreePort())};
  StatusOr<std::unique_ptr<WanMesh>> alpha = InvalidArgumentError("not run");
  std::thread accept([&] { alpha = WanMesh::Create(Options(0, addresses, WriteGatewayDir(tmp, *ca, "alpha"))); });
  auto beta = WanMesh::Create(Options(1, addresses, WriteGatewayDir(tmp, *ca, "beta")));
  accept.join();
  ASSERT_TRUE(alpha.ok()) << alpha.status().ToString();
  ASSERT_TRUE(beta.ok()) << beta.status().ToString();

  const std::vector<uint8_t> from_alpha(kPayloadBytes, 0xA1), from_beta(kPayloadBytes, 0xB2);
  // One warm-up round (slow start of the first large write), then the timed ones.
  const auto start_round = [&](uint32_t tag) {
    const auto deadline = SystemClock::Get().Now() + std::chrono::seconds(60);
    GatherResult got_alpha, got_beta;
    Status alpha_status;
    std::thread other([&] { alpha_status = (*alpha)->AllGather(tag, from_alpha, &got_alpha, deadline); });
    const Status beta_status = (*beta)->AllGather(tag, from_beta, &got_beta, deadline);
    other.join();
    ASSERT_TRUE(alpha_status.ok()) << alpha_status.ToString();
    ASSERT_TRUE(beta_status.ok()) << beta_status.ToString();
    ASSERT_TRUE(got_alpha.complete() && got_beta.complete()) << "round " << tag;
    ASSERT_EQ(got_alpha.payloads[1], from_beta);
    ASSERT_EQ(got_beta.payloads[0], from_alpha);
  };
  start_round(1);
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < kRounds; ++r) start_round(static_cast<uint32_t>(2 + r));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rate = static_cast<double>(kRounds) * kPayloadBytes * 8 / seconds;
  std::printf("link speed: %.1f Mbit/s of %.0f Mbit/s (%.0f%%) over %d rounds of %zu bytes each way\n", rate / 1e6,
              kLinkBitsPerSecond / 1e6, 100 * rate / kLinkBitsPerSecond, kRounds, kPayloadBytes);
  EXPECT_GE(rate, 0.7 * kLinkBitsPerSecond);
}

}  // namespace
}  // namespace stella::exchange
