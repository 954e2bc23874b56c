// Leader election against a real kube-apiserver: two candidates -> exactly
// one leader, recorded in the Lease; a graceful Stop releases the lease and
// the standby takes over without waiting for expiry; a leader whose API
// server connection is cut (through a TCP proxy) gives up leadership after
// the renew deadline and the other candidate takes over once the lease expires.
#include "operator/kube/leader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/operator/control_plane.h"

namespace stella::kube {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SharedControlPlane;

[[maybe_unused]] const bool kInstalled = (testing::InstallSharedControlPlane(), true);

template <typename Pred>
bool Eventually(Pred pred, seconds timeout = seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

struct Candidate {
  std::unique_ptr<LeaderElector> elector;
  std::atomic<int> started{0}, stopped{0};
};

class LeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = SharedControlPlane().NewClient();
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
    lease_ = testing::UniqueName("lease");
  }
  // Short timings so that expiry-based takeovers finish in seconds.
  LeaderElectionOptions Options(const std::string& identity, Candidate* c) {
    LeaderElectionOptions o;
    o.lease_namespace = "default";
    o.lease_name = lease_;
    o.identity = identity;
    o.lease_duration = milliseconds(3000);
    o.renew_deadline = milliseconds(2000);
    o.retry_period = milliseconds(300);
    o.on_started_leading = [c] { ++c->started; };
    o.on_stopped_leading = [c] { ++c->stopped; };
    return o;
  }
  void Make(Candidate* c, const std::string& identity, const ClusterConfig& cluster) {
    auto e = LeaderElector::Create(cluster, Options(identity, c));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    c->elector = std::move(*e);
  }
  json Lease() {
    auto r = client_->Get(ResourcePath("coordination.k8s.io/v1", "leases", "default", lease_));
    EXPECT_TRUE(r.ok());
    return r.ok() ? r->body : json();
  }

  std::unique_ptr<Client> client_;
  std::string lease_;
};

TEST_F(LeaderTest, ExactlyOneLeaderAndReleaseHandsOver) {
  Candidate a, b;
  Make(&a, "a", SharedControlPlane().config());
  Make(&b, "b", SharedControlPlane().config());
  a.elector->Start();
  b.elector->Start();
  ASSERT_TRUE(Eventually([&] { return a.elector->IsLeader() || b.elector->IsLeader(); }));
  // Over several renew periods, never two leaders and never a change of leader.
  const bool a_leads = a.elector->IsLeader();
  for (int i = 0; i < 20; ++i) {
    EXPECT_NE(a.elector->IsLeader(), b.elector->IsLeader());
    EXPECT_EQ(a.elector->IsLeader(), a_leads);
    std::this_thread::sleep_for(milliseconds(100));
  }
  Candidate& leader = a_leads ? a : b;
  Candidate& standby = a_leads ? b : a;
  const std::string leader_id = a_leads ? "a" : "b";
  const std::string standby_id = a_leads ? "b" : "a";
  json lease = Lease();
  EXPECT_EQ(lease["spec"]["holderIdentity"], leader_id);
  EXPECT_EQ(lease["spec"]["leaseDurationSeconds"], 3);
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 0);
  EXPECT_EQ(leader.started.load(), 1);
  EXPECT_EQ(standby.started.load(), 0);
  EXPECT_TRUE(Eventually([&] { return standby.elector->Leader() == leader_id; }));

  // Graceful shutdown: the lease is released at once...
  leader.elector->Stop();
  EXPECT_FALSE(leader.elector->IsLeader());
  EXPECT_EQ(leader.stopped.load(), 1);
  EXPECT_FALSE(leader.elector->Lost());
  // ...and the standby takes it (the bound is far above the lease duration
  // only to tolerate a loaded machine; the hand-over itself needs no expiry).
  ASSERT_TRUE(Eventually([&] { return standby.elector->IsLeader(); }, seconds(30)));
  lease = Lease();
  EXPECT_EQ(lease["spec"]["holderIdentity"], standby_id);
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
  standby.elector->Stop();
  EXPECT_EQ(Lease()["spec"]["holderIdentity"], "");
}

TEST_F(LeaderTest, LeaderThatLosesItsApiServerGivesUp) {
  const int api_port =
      std::stoi(SharedControlPlane().config().server.substr(SharedControlPlane().config().server.rfind(':') + 1));
  auto proxy = testing::TcpProxy::Start(api_port);
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  ClusterConfig via_proxy = SharedControlPlane().config();
  via_proxy.server = "https://127.0.0.1:" + std::to_string((*proxy)->port());

  Candidate a, b;
  Make(&a, "a", via_proxy);
  Make(&b, "b", SharedControlPlane().config());
  a.elector->Start();
  ASSERT_TRUE(Eventually([&] { return a.elector->IsLeader(); }));
  b.elector->Start();
  ASSERT_TRUE(Eventually([&] { return b.elector->Leader() == "a"; }));
  EXPECT_FALSE(b.elector->IsLeader());

  (*proxy)->Cut();
  ASSERT_TRUE(Eventually([&] { return a.elector->Lost(); }, seconds(30)));
  EXPECT_FALSE(a.elector->IsLeader());
  EXPECT_EQ(a.stopped.load(), 1);
  EXPECT_FALSE(a.elector->LastError().ok());
  ASSERT_TRUE(Eventually([&] { return b.elector->IsLeader(); }, seconds(30)));
  EXPECT_EQ(Lease()["spec"]["holderIdentity"], "b");
  // A lost elector stays down even when the network comes back.
  (*proxy)->Restore();
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_FALSE(a.elector->IsLeader());
  a.elector->Stop();
  EXPECT_EQ(a.stopped.load(), 1);  // no second callback
  b.elector->Stop();
}

TEST(LeaderOptionsTest, BadOptionsAreRefused) {
  ClusterConfig cfg;
  cfg.server = "https://127.0.0.1:1";
  LeaderElectionOptions o;
  o.lease_namespace = "default";
  o.lease_name = "x";
  EXPECT_EQ(LeaderElector::Create(cfg, o).status().code(), StatusCode::kInvalidArgument);  // no identity
  o.identity = "me";
  o.renew_deadline = o.lease_duration;
  auto bad = LeaderElector::Create(cfg, o);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("lease_duration > renew_deadline"), std::string::npos);
}

}  // namespace
}  // namespace stella::kube
