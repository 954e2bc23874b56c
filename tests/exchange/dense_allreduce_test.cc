// Two clusters x two workers, every rank a thread of this process, talking
// over real loopback sockets: Gloo inside each cluster, the shaped WAN mesh
// between the gateways.
#include "runtime/exchange/dense_allreduce.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "tests/testing/process_util.h"

namespace stella::exchange {
namespace {

using stella::testing::FreePort;

TEST(DenseAllReduceTest, TwoClustersTwoWorkersAgreeBitForBit) {
  constexpr int kClusters = 2, kWorkers = 2, kWorld = kClusters * kWorkers;
  constexpr size_t kN = 100003;  // not a multiple of anything convenient
  std::vector<std::string> addresses;
  std::vector<int> store_ports;
  for (int c = 0; c < kClusters; ++c) {
    addresses.push_back("127.0.0.1:" + std::to_string(FreePort()));
    store_ports.push_back(FreePort());
  }
  std::vector<std::vector<float>> results(kWorld);
  std::vector<Status> statuses(kWorld);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClusters; ++c) {
    for (int r = 0; r < kWorkers; ++r) {
      threads.emplace_back([&, c, r] {
        const int g = c * kWorkers + r;
        GlooGroupOptions go;
        go.store_port = store_ports[c];
        go.rank = r;
        go.size = kWorkers;
        go.timeout = std::chrono::seconds(30);
        auto group = CreateGlooGroup(go);
        if (!group.ok()) {
          statuses[g] = group.status();
          return;
        }
        std::unique_ptr<WanMesh> mesh;
        if (r == 0) {
          WanMeshOptions mo;
          mo.job_name = "test-job";
          mo.cluster_index = c;
          mo.addresses = addresses;
          mo.cluster_names = {"a", "b"};
          mo.egress_bits_per_second = 200e6;
          mo.connect_timeout = std::chrono::seconds(30);
          auto m = WanMesh::Create(mo);
          if (!m.ok()) {
            statuses[g] = m.status();
            return;
          }
          mesh = std::move(m).value();
        }
        DenseAllReduce ar(group->get(), mesh.get(), std::vector<int>(kClusters, kWorkers));
        std::vector<float> data(kN);
        for (int round = 0; round < 3; ++round) {
          for (size_t i = 0; i < kN; ++i) data[i] = 0.001f * static_cast<float>((i * 31 + g * 7 + round) % 1000) - 0.3f;
          Status s = ar.AllReduceMean(data.data(), kN, static_cast<uint32_t>(round),
                                      SystemClock::Get().Now() + std::chrono::seconds(30));
          if (!s.ok()) {
            statuses[g] = s;
            return;
          }
        }
        if (mesh) {
          auto st = mesh->stats();
          EXPECT_EQ(st.size(), 1u);
          // Three rounds of kN floats plus framing went each way.
          EXPECT_GE(st[0].bytes_sent, 3 * kN * sizeof(float));
          EXPECT_GE(st[0].bytes_received, 3 * kN * sizeof(float));
        }
        results[g] = data;
        statuses[g] = (*group)->Barrier();
      });
    }
  }
  for (auto& t : threads) t.join();
  for (int g = 0; g < kWorld; ++g) ASSERT_TRUE(statuses[g].ok()) << "rank " << g << ": " << statuses[g].ToString();
  // Identical bits everywhere.
  for (int g = 1; g < kWorld; ++g) {
    ASSERT_EQ(0, std::memcmp(results[0].data(), results[g].data(), kN * sizeof(float))) << "rank " << g;
  }
  // And the value is the mean of the last round's inputs.
  for (size_t i = 0; i < kN; i += 997) {
    double expected = 0;
    for (int g = 0; g < kWorld; ++g) expected += 0.001 * static_cast<double>((i * 31 + g * 7 + 2) % 1000) - 0.3;
    expected /= kWorld;
    EXPECT_NEAR(results[0][i], expected, 1e-5) << "element " << i;
  }
}

}  // namespace
}  // namespace stella::exchange
