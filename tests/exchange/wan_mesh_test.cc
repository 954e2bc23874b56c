// WanMesh failure handling over real loopback sockets: links cut by a TCP
// proxy under the test's control (closed, or silently black-holed), a peer
// that went on to later rounds or is late, and a gateway process killed and
// started again. No timing is asserted: every wait is bounded, and the
// outcomes (why a payload is missing, how often a link came back) are what is
// checked.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "runtime/exchange/wan_mesh.h"
#include "tests/testing/process_util.h"

namespace stella::exchange {
namespace {

using stella::testing::FreePort;

// Forwards TCP connections from its own loopback port to `target_port`, and
// can cut them: Sever closes every forwarded connection (both ends see the
// close at once); a black hole forwards nothing and closes new connections
// right after accepting them (the ends see silence, like a cut cable, and
// redials fail).
class LinkProxy {
 public:
  explicit LinkProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    STELLA_CHECK(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    STELLA_CHECK(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    STELLA_CHECK(::pipe(wake_.data()) == 0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~LinkProxy() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    thread_.join();
    for (auto& [a, b] : pairs_) {
      ::close(a);
      ::close(b);
    }
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void Sever() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      sever_ = true;
    }
    Wake();
  }
  // Returns once no byte is forwarded any more (the loop forwards under mu_).
  void SetBlackhole(bool on) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blackhole_ = on;
    }
    Wake();
  }

 private:
  void Wake() { (void)!::write(wake_[1], "x", 1); }

  void Loop() {
    std::vector<char> buf(64 * 1024);
    while (true) {
      bool blackhole;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        if (sever_) {
          for (auto& [a, b] : pairs_) {
            ::close(a);
            ::close(b);
          }
          pairs_.clear();
          sever_ = false;
        }
        blackhole = blackhole_;
      }
      std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      if (!blackhole) {
        for (auto& [a, b] : pairs_) {
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, POLLIN, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), 1000) <= 0) continue;
      if (fds[0].revents != 0) {
        char drain[64];
        (void)!::read(wake_[0], drain, sizeof(drain));
        continue;  // re-read the controls first
      }
      if (fds[1].revents != 0) {
        const int client = ::accept(listen_fd_, nullptr, nullptr);
        if (client >= 0) Connect(client, blackhole);
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (blackhole_) continue;
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        const size_t p = (i - 2) / 2;
        if (p >= pairs_.size()) break;
        const int from = fds[i].fd;
        const int to = from == pairs_[p].first ? pairs_[p].second : pairs_[p].first;
        const ssize_t got = ::read(from, buf.data(), buf.size());
        bool ok = got > 0;
        for (ssize_t done = 0; ok && done < got;) {
          const ssize_t w = ::write(to, buf.data() + done, static_cast<size_t>(got - done));
          ok = w > 0;
          if (ok) done += w;
        }
        if (!ok) {
          ::close(pairs_[p].first);
          ::close(pairs_[p].second);
          pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(p));
          break;  // indices shifted: poll again
        }
      }
    }
  }

  void Connect(int client, bool blackhole) {
    if (blackhole) {
      ::close(client);
      return;
    }
    const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(upstream);
      ::close(client);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    pairs_.emplace_back(client, upstream);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::array<int, 2> wake_{};
  std::mutex mu_;
  bool stop_ = false;                       // guarded by mu_
  bool sever_ = false;                      // guarded by mu_
  bool blackhole_ = false;                  // guarded by mu_
  std::vector<std::pair<int, int>> pairs_;  // guarded by mu_ (client, upstream)
  std::thread thread_;
};

// Polls `done` every 10 ms for up to `limit`.
bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto end = SystemClock::Get().Now() + limit;
  while (!done()) {
    if (SystemClock::Get().Now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

WanMeshOptions FastOptions(int cluster, std::vector<std::string> addresses) {
  WanMeshOptions o;
  o.job_name = "wan-mesh-test";
  o.cluster_index = cluster;
  o.addresses = std::move(addresses);
  o.cluster_names = {"zero", "one"};
  o.connect_timeout = std::chrono::seconds(30);
  // Short enough to keep the tests quick, long enough that a loaded machine
  // (sanitizers, parallel builds) does not starve a heartbeat that long.
  o.link_timeout = std::chrono::milliseconds(2000);
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.reconnect_min_backoff = std::chrono::milliseconds(20);
  o.reconnect_max_backoff = std::chrono::milliseconds(200);
  o.jitter_seed = 7;
  return o;
}

std::vector<uint8_t> Payload(int cluster, uint32_t tag) {
  const std::string s = "c" + std::to_string(cluster) + "-" + std::to_string(tag);
  return {s.begin(), s.end()};
}

// Two gateways: cluster 1 dials cluster 0 through `proxy`.
struct Pair {
  std::unique_ptr<WanMesh> m[2];
};

Pair Connect(int port0, const std::string& via, std::function<void(WanMeshOptions&)> tweak = nullptr) {
  const std::string direct = "127.0.0.1:" + std::to_string(port0);
  const std::string addr1 = "127.0.0.1:" + std::to_string(FreePort());
  Pair p;
  StatusOr<std::unique_ptr<WanMesh>> r0 = UnavailableError("not run");
  StatusOr<std::unique_ptr<WanMesh>> r1 = UnavailableError("not run");
  std::thread t0([&] {
    auto o = FastOptions(0, {direct, addr1});
    if (tweak) tweak(o);
    r0 = WanMesh::Create(o);
  });
  std::thread t1([&] {
    auto o = FastOptions(1, {via, addr1});
    if (tweak) tweak(o);
    r1 = WanMesh::Create(o);
  });
  t0.join();
  t1.join();
  EXPECT_TRUE(r0.ok()) << r0.status().ToString();
  EXPECT_TRUE(r1.ok()) << r1.status().ToString();
  if (r0.ok()) p.m[0] = std::move(r0).value();
  if (r1.ok()) p.m[1] = std::move(r1).value();
  return p;
}

// Both gateways run round `tag` at once.
std::array<GatherResult, 2> Round(Pair& p, uint32_t tag, std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::array<GatherResult, 2> out;
  std::array<Status, 2> st;
  std::thread t1([&] { st[1] = p.m[1]->AllGather(tag, Payload(1, tag), &out[1], SystemClock::Get().Now() + limit); });
  st[0] = p.m[0]->AllGather(tag, Payload(0, tag), &out[0], SystemClock::Get().Now() + limit);
  t1.join();
  EXPECT_TRUE(st[0].ok()) << st[0].ToString();
  EXPECT_TRUE(st[1].ok()) << st[1].ToString();
  return out;
}

void ExpectComplete(const std::array<GatherResult, 2>& r, uint32_t tag) {
  for (int side = 0; side < 2; ++side) {
    ASSERT_TRUE(r[side].complete()) << "side " << side << " round " << tag << ": cluster " << (1 - side) << " "
                                    << PeerRoundName(r[side].outcome[1 - side]);
    for (int c = 0; c < 2; ++c) EXPECT_EQ(r[side].payloads[c], Payload(c, tag)) << "side " << side;
  }
}

TEST(WanMeshLinkTest, ClosedLinkIsRedialedAndRoundsResume) {
  const int port0 = FreePort();
  LinkProxy proxy(port0);
  Pair p = Connect(port0, proxy.address());
  ASSERT_TRUE(p.m[0] && p.m[1]);
  ExpectComplete(Round(p, 0), 0);

  proxy.Sever();
  // Both ends see the close; the dialer (cluster 1) redials, cluster 0 accepts.
  ASSERT_TRUE(WaitUntil([&] {
    auto s0 = p.m[0]->stats()[0], s1 = p.m[1]->stats()[0];
    return s0.up && s1.up && s0.connects >= 2 && s1.connects >= 2;
  }));
  const auto s1 = p.m[1]->stats()[0];
  EXPECT_GE(s1.link_losses, 1u);
  EXPECT_FALSE(s1.last_error.empty());
  for (uint32_t tag = 1; tag <= 3; ++tag) ExpectComplete(Round(p, tag), tag);
}

TEST(WanMeshLinkTest, SilentLinkIsDeclaredDownRoundsGoOnAndItComesBack) {
  const int port0 = FreePort();
  LinkProxy proxy(port0);
  Pair p = Connect(port0, proxy.address());
  ASSERT_TRUE(p.m[0] && p.m[1]);
  ExpectComplete(Round(p, 0), 0);

  proxy.SetBlackhole(true);
  // Nothing crosses: each side's watchdog declares the link down (2 s of
  // silence) long before the round's 60 s deadline, and the round returns
  // with the peer missing for that reason.
  auto cut = Round(p, 1);
  for (int side = 0; side < 2; ++side) {
    EXPECT_EQ(cut[side].outcome[1 - side], PeerRound::kLinkDown) << "side " << side;
    EXPECT_EQ(cut[side].payloads[side], Payload(side, 1));
    EXPECT_EQ(cut[side].missing(), std::vector<int>{1 - side});
  }
  const auto down = p.m[0]->stats()[0];
  EXPECT_FALSE(down.up);
  EXPECT_NE(down.last_error.find("no byte from the peer"), std::string::npos) << down.last_error;
  // While down, rounds do not wait at all for the peer.
  auto still_cut = Round(p, 2);
  EXPECT_EQ(still_cut[0].outcome[1], PeerRound::kLinkDown);

  proxy.SetBlackhole(false);
  ASSERT_TRUE(WaitUntil([&] { return p.m[0]->stats()[0].up && p.m[1]->stats()[0].up; }));
  for (uint32_t tag = 3; tag <= 4; ++tag) ExpectComplete(Round(p, tag), tag);
  EXPECT_GE(p.m[1]->stats()[0].connects, 2u);
}

TEST(WanMeshLinkTest, PeerAheadIsNotWaitedForAndALatePeerIs) {
  const int port0 = FreePort();
  Pair p = Connect(port0, "127.0.0.1:" + std::to_string(port0));
  ASSERT_TRUE(p.m[0] && p.m[1]);
  // Cluster 1 is at round 10 (it went on while cluster 0 was away); it waits
  // for cluster 0, which is up and behind.
  GatherResult ahead;
  Status ahead_status;
  std::thread t([&] {
    ahead_status = p.m[1]->AllGather(10, Payload(1, 10), &ahead, SystemClock::Get().Now() + std::chrono::seconds(60));
  });
  // Cluster 0 asks for round 9: cluster 1 already sent round 10, so round 9
  // will never come.
  GatherResult behind;
  ASSERT_TRUE(p.m[0]->AllGather(9, Payload(0, 9), &behind, SystemClock::Get().Now() + std::chrono::seconds(60)).ok());
  EXPECT_EQ(behind.outcome[1], PeerRound::kPeerAhead);
  // Round 10 completes on both sides.
  GatherResult caught_up;
  ASSERT_TRUE(
      p.m[0]->AllGather(10, Payload(0, 10), &caught_up, SystemClock::Get().Now() + std::chrono::seconds(60)).ok());
  t.join();
  ASSERT_TRUE(ahead_status.ok()) << ahead_status.ToString();
  EXPECT_TRUE(caught_up.complete());
  EXPECT_TRUE(ahead.complete());
  EXPECT_EQ(ahead.payloads[0], Payload(0, 10));
  // A peer that is up but never sends the round: the deadline ends it.
  GatherResult late;
  ASSERT_TRUE(
      p.m[0]->AllGather(11, Payload(0, 11), &late, SystemClock::Get().Now() + std::chrono::milliseconds(300)).ok());
  EXPECT_EQ(late.outcome[1], PeerRound::kDeadline);
}

TEST(WanMeshLinkTest, OrderlyEndIsReportedAsLeftNotAsALoss) {
  const int port0 = FreePort();
  Pair p = Connect(port0, "127.0.0.1:" + std::to_string(port0));
  ASSERT_TRUE(p.m[0] && p.m[1]);
  ExpectComplete(Round(p, 0), 0);
  p.m[1].reset();  // says Bye
  ASSERT_TRUE(WaitUntil([&] { return p.m[0]->stats()[0].left; }));
  const auto s = p.m[0]->stats()[0];
  EXPECT_FALSE(s.up);
  EXPECT_EQ(s.link_losses, 0u);
  GatherResult r;
  ASSERT_TRUE(p.m[0]->AllGather(1, Payload(0, 1), &r, SystemClock::Get().Now() + std::chrono::seconds(60)).ok());
  EXPECT_EQ(r.outcome[1], PeerRound::kPeerLeft);
  EXPECT_TRUE(r.any_left());
}

// The real thing: cluster 0's gateway is a separate process, killed without
// a goodbye and started again on the same address. Cluster 1 (the dialer)
// notices the loss, redials with backoff until the new process listens, and
// the rounds go on with it.
TEST(WanMeshLinkTest, RestartedGatewayProcessIsReconnected) {
  stella::testing::TempDir dir;
  const std::string peer_bin = stella::testing::BuildDir() + "/tests/exchange/wan_mesh_peer";
  const std::string addr0 = "127.0.0.1:" + std::to_string(FreePort());
  const std::string addr1 = "127.0.0.1:" + std::to_string(FreePort());
  auto spawn = [&](int first_tag, const char* then, const std::string& log) {
    return stella::testing::Spawn({peer_bin, "--cluster", "0", "--addresses", addr0 + "," + addr1, "--first-tag",
                                   std::to_string(first_tag), "--rounds", "3", "--then", then},
                                  log);
  };
  pid_t first = spawn(0, "wait", dir.path() + "/first.log");
  auto o = FastOptions(1, {addr0, addr1});
  o.reconnect_max_backoff = std::chrono::milliseconds(500);
  auto created = WanMesh::Create(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString() << "\n"
                            << stella::testing::ReadFile(dir.path() + "/first.log");
  auto& mesh = *created;
  auto round = [&](uint32_t tag) {
    GatherResult r;
    EXPECT_TRUE(mesh->AllGather(tag, Payload(1, tag), &r, SystemClock::Get().Now() + std::chrono::seconds(60)).ok());
    EXPECT_TRUE(r.complete()) << "round " << tag << ": " << PeerRoundName(r.outcome[0]);
    EXPECT_EQ(r.payloads[0], Payload(0, tag));
  };
  for (uint32_t tag = 0; tag < 3; ++tag) round(tag);

  ASSERT_EQ(::kill(first, SIGKILL), 0);
  stella::testing::WaitFor(first, std::chrono::seconds(30));
  ASSERT_TRUE(WaitUntil([&] { return mesh->stats()[0].link_losses == 1; }));
  EXPECT_FALSE(mesh->stats()[0].left);  // a crash is a loss, not a goodbye

  pid_t second = spawn(3, "exit", dir.path() + "/second.log");
  ASSERT_TRUE(WaitUntil([&] { return mesh->stats()[0].up; })) << stella::testing::ReadFile(dir.path() + "/second.log");
  for (uint32_t tag = 3; tag < 6; ++tag) round(tag);
  const int status = stella::testing::WaitFor(second, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << stella::testing::ReadFile(dir.path() + "/second.log");
  const std::string log = stella::testing::ReadFile(dir.path() + "/second.log");
  for (int tag = 3; tag < 6; ++tag) {
    EXPECT_NE(log.find("round " + std::to_string(tag) + ": complete"), std::string::npos) << log;
  }
  // The second process ended in order: it said Bye.
  ASSERT_TRUE(WaitUntil([&] { return mesh->stats()[0].left; }));
  const auto s = mesh->stats()[0];
  EXPECT_EQ(s.connects, 2u);
  EXPECT_EQ(s.link_losses, 1u);
}

TEST(WanMeshTest, RejectsBadAddressesAndIndices) {
  WanMeshOptions mo;
  mo.job_name = "j";
  mo.addresses = {"127.0.0.1:1", "nonsense"};
  mo.cluster_index = 1;
  mo.connect_timeout = std::chrono::milliseconds(200);
  auto m = WanMesh::Create(mo);
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("nonsense"), std::string::npos);
  mo.cluster_index = 5;
  EXPECT_EQ(WanMesh::Create(mo).status().code(), StatusCode::kInvalidArgument);
}

TEST(WanMeshTest, PeerOfAnotherJobIsRefused) {
  const std::string addr0 = "127.0.0.1:" + std::to_string(FreePort());
  const std::string addr1 = "127.0.0.1:" + std::to_string(FreePort());
  Status s0, s1;
  std::thread t0([&] {
    WanMeshOptions mo;
    mo.job_name = "job-a";
    mo.cluster_index = 0;
    mo.addresses = {addr0, addr1};
    mo.connect_timeout = std::chrono::seconds(2);
    s0 = WanMesh::Create(mo).status();
  });
  std::thread t1([&] {
    WanMeshOptions mo;
    mo.job_name = "job-b";
    mo.cluster_index = 1;
    mo.addresses = {addr0, addr1};
    mo.connect_timeout = std::chrono::seconds(2);
    s1 = WanMesh::Create(mo).status();
  });
  t0.join();
  t1.join();
  EXPECT_FALSE(s0.ok());
  EXPECT_FALSE(s1.ok());
  EXPECT_NE(s1.message().find("job-a"), std::string::npos) << s1.ToString();
}

TEST(WanMeshLinkTest, RejectsInconsistentLivenessOptions) {
  auto o = FastOptions(0, {"127.0.0.1:1", "127.0.0.1:2"});
  o.heartbeat_interval = std::chrono::milliseconds(2000);
  auto m = WanMesh::Create(o);
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("heartbeat_interval"), std::string::npos) << m.status().ToString();
  o = FastOptions(0, {"127.0.0.1:1", "127.0.0.1:2"});
  o.reconnect_max_backoff = std::chrono::milliseconds(1);
  m = WanMesh::Create(o);
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("reconnect_max_backoff"), std::string::npos) << m.status().ToString();
}

}  // namespace
}  // namespace stella::exchange
