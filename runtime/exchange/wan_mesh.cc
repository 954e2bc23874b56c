#include "runtime/exchange/wan_mesh.h"

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "src/net/frame.h"
#include "src/net/framed_connection.h"
#include "src/net/shaped_stream.h"
#include "src/net/tcp.h"
#include "src/net/tls_stream.h"

namespace stella::exchange {
namespace {

StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgumentError("gateway address \"" + address + "\": expected host:port");
  }
  char* end = nullptr;
  long port = std::strtol(address.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port <= 0 || port > 65535) {
    return InvalidArgumentError("gateway address \"" + address + "\": port must be in 1..65535");
  }
  return std::make_pair(address.substr(0, colon), static_cast<int>(port));
}

// One peer gateway: a framed connection over a shaped TCP stream, and a
// receive thread that files incoming frames by round.
class Peer {
 public:
  Peer(int cluster, std::string name, std::unique_ptr<net::FramedConnection> conn, net::ShapedStream* shaped)
      : cluster_(cluster), name_(std::move(name)), conn_(std::move(conn)), shaped_(shaped) {
    receiver_ = std::thread([this] { ReceiveLoop(); });
  }

  ~Peer() {
    conn_->Shutdown();
    receiver_.join();
  }

  Status Send(uint32_t tag, const std::vector<uint8_t>& payload, Clock::TimePoint deadline) {
    STELLA_RETURN_IF_ERROR(conn_->Send(net::FrameType::kDense, tag, payload.data(), payload.size(), deadline));
    return conn_->Flush(deadline);
  }

  // Waits for the payload of round `tag`.
  StatusOr<std::vector<uint8_t>> Take(uint32_t tag, Clock::TimePoint deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      auto it = rounds_.find(tag);
      if (it != rounds_.end()) {
        std::vector<uint8_t> payload = std::move(it->second);
        rounds_.erase(it);
        return payload;
      }
      if (!error_.ok()) return error_;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && rounds_.count(tag) == 0) {
        return DeadlineExceededError("no data of round " + std::to_string(tag) + " from cluster " + name_ +
                                     " before the deadline");
      }
    }
  }

  void SetRate(double bits_per_second) {
    if (shaped_ != nullptr) shaped_->SetRateBitsPerSec(bits_per_second).IgnoreError();
  }

  PeerLinkStats stats() const {
    auto s = conn_->stats().Snapshot();
    PeerLinkStats p;
    p.cluster = cluster_;
    p.name = name_;
    p.bytes_sent = s.bytes_sent;
    p.bytes_received = s.bytes_received;
    // Over a kernel-shaped or real WAN the send buffer absorbs a whole frame,
    // so write-timed goodput is meaningless: prefer TCP's own delivery rate.
    // The in-process shaper is the bottleneck in local runs; its write-timed
    // goodput (the fallback) is exact there.
    // Application-limited samples read as 0; keep the last path sample.
    const double delivery = conn_->stream().DeliveryRateBytesPerSecond();
    if (delivery > 0) last_delivery_rate_.store(delivery);
    const double path_rate = last_delivery_rate_.load();
    p.goodput_bytes_per_second = path_rate > 0 ? path_rate : s.goodput_bytes_per_s;
    return p;
  }

 private:
  void ReceiveLoop() {
    pthread_setname_np(pthread_self(), "stella-wan-rx");
    while (true) {
      // A long deadline: rounds can be far apart (evaluation on rank 0);
      // Shutdown() unblocks the read when the mesh closes.
      auto frame = conn_->Receive(SystemClock::Get().Now() + std::chrono::hours(24));
      std::lock_guard<std::mutex> lock(mu_);
      if (!frame.ok()) {
        error_ = frame.status().WithContext("WAN link to cluster " + name_);
        cv_.notify_all();
        return;
      }
      if (frame->header.type == net::FrameType::kBye) {
        error_ = UnavailableError("cluster " + name_ + " closed its WAN link");
        cv_.notify_all();
        return;
      }
      if (frame->header.type != net::FrameType::kDense) continue;  // heartbeats etc.
      rounds_[frame->header.tag] = std::move(frame->payload);
      cv_.notify_all();
    }
  }

  const int cluster_;
  const std::string name_;
  std::unique_ptr<net::FramedConnection> conn_;
  net::ShapedStream* shaped_;  // owned by conn_ (it wraps the stream); null if unshaped
  mutable std::atomic<double> last_delivery_rate_{0};  // last non-app-limited TCP sample
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint32_t, std::vector<uint8_t>> rounds_;  // guarded by mu_
  Status error_;                                     // guarded by mu_
  std::thread receiver_;
};

class FullMesh final : public WanMesh {
 public:
  FullMesh(WanMeshOptions options, std::vector<std::unique_ptr<Peer>> peers)
      : options_(std::move(options)), peers_(std::move(peers)) {}

  Status AllGather(uint32_t tag, const std::vector<uint8_t>& mine, std::vector<std::vector<uint8_t>>* all,
                   Clock::TimePoint deadline) override {
    const size_t n = options_.addresses.size();
    all->assign(n, {});
    for (auto& p : peers_) {
      if (p) STELLA_RETURN_IF_ERROR(p->Send(tag, mine, deadline));
    }
    for (size_t c = 0; c < n; ++c) {
      if (static_cast<int>(c) == options_.cluster_index) {
        (*all)[c] = mine;
        continue;
      }
      STELLA_ASSIGN_OR_RETURN((*all)[c], peers_[c]->Take(tag, deadline));
    }
    return Status::Ok();
  }

  void SetEgressRate(double bits_per_second) override {
    for (auto& p : peers_) {
      if (p) p->SetRate(bits_per_second);
    }
  }

  std::vector<PeerLinkStats> stats() const override {
    std::vector<PeerLinkStats> out;
    for (const auto& p : peers_) {
      if (p) out.push_back(p->stats());
    }
    return out;
  }

  int num_clusters() const override { return static_cast<int>(options_.addresses.size()); }

 private:
  const WanMeshOptions options_;
  std::vector<std::unique_ptr<Peer>> peers_;  // indexed by cluster; null for self
};

}  // namespace

StatusOr<std::unique_ptr<WanMesh>> WanMesh::Create(const WanMeshOptions& o) {
  const int n = static_cast<int>(o.addresses.size());
  if (o.cluster_index < 0 || o.cluster_index >= n) {
    return InvalidArgumentError("WAN mesh: cluster index " + std::to_string(o.cluster_index) + " out of range for " +
                                std::to_string(n) + " gateway addresses");
  }
  for (const auto& address : o.addresses) {
    STELLA_RETURN_IF_ERROR(SplitHostPort(address).status());
  }
  auto name_of = [&](int c) {
    return c < static_cast<int>(o.cluster_names.size()) ? o.cluster_names[static_cast<size_t>(c)]
                                                        : "#" + std::to_string(c);
  };
  const auto deadline = SystemClock::Get().Now() + o.connect_timeout;
  net::FrameLimits limits;
  limits.max_payload_bytes = o.max_payload_bytes;

  // Mutual TLS: this gateway's credentials, checked before any connection.
  std::unique_ptr<net::TlsContext> tls;
  if (!o.tls_dir.empty()) {
    if (static_cast<int>(o.cluster_names.size()) != n) {
      return InvalidArgumentError("WAN mesh with TLS: need one cluster name per gateway address (" +
                                  std::to_string(n) + "), got " + std::to_string(o.cluster_names.size()));
    }
    auto ctx = net::TlsContext::FromDir(o.tls_dir);
    if (!ctx.ok()) return ctx.status().WithContext("--tls-dir");
    const security::GatewayIdentity self{o.job_namespace, o.job_name, name_of(o.cluster_index)};
    if ((*ctx)->identity() != self) {
      return FailedPreconditionError("--tls-dir " + o.tls_dir + ": tls.crt names " + (*ctx)->identity().Uri() +
                                     " but this gateway is " + self.Uri());
    }
    tls = std::move(ctx).value();
  }

  // Wraps a raw connection in the shaper, TLS (if on) and framing, then sends
  // our Hello. `expected` is the cluster the peer's certificate must name
  // ("" = any of this job); `peer_cluster` receives the one it names.
  std::vector<std::unique_ptr<net::FramedConnection>> conns(static_cast<size_t>(n));
  std::vector<net::ShapedStream*> shapers(static_cast<size_t>(n), nullptr);
  auto wrap = [&](std::unique_ptr<net::Stream> raw, net::ShapedStream** shaped_out, net::TlsRole role,
                  const std::string& expected, const std::string& label, Clock::TimePoint handshake_deadline,
                  std::string* peer_cluster) -> StatusOr<std::unique_ptr<net::FramedConnection>> {
    std::unique_ptr<net::Stream> stream = std::move(raw);
    *shaped_out = nullptr;
    net::ShapedStream* shaped_ptr = nullptr;
    if (o.egress_bits_per_second > 0 || o.egress_latency.count() > 0) {
      net::ShapedStream::Options so;
      so.rate_bits_per_s = o.egress_bits_per_second;
      so.latency = std::chrono::duration_cast<Clock::Duration>(o.egress_latency);
      STELLA_ASSIGN_OR_RETURN(auto shaped, net::ShapedStream::Create(std::move(stream), so));
      shaped_ptr = shaped.get();
      stream = std::move(shaped);
    }
    if (tls) {
      // Above the shaper: the emulated bandwidth paces the bytes on the wire.
      net::TlsHandshakeOptions ho;
      ho.role = role;
      ho.expected_peer_cluster = expected;
      ho.peer_label = label;
      STELLA_ASSIGN_OR_RETURN(auto secure, net::TlsStream::Handshake(*tls, std::move(stream), ho, handshake_deadline));
      *peer_cluster = secure->peer_identity().cluster;
      stream = std::move(secure);
    }
    net::FramedConnection::Options fo;
    fo.limits = limits;
    auto conn = std::make_unique<net::FramedConnection>(std::move(stream), fo);
    STELLA_ASSIGN_OR_RETURN(auto hello,
                            net::EncodeHello({o.job_name, static_cast<uint32_t>(o.cluster_index)}));
    STELLA_RETURN_IF_ERROR(conn->Send(net::FrameType::kHello, 0, hello.data(), hello.size(), deadline));
    STELLA_RETURN_IF_ERROR(conn->Flush(deadline));
    *shaped_out = shaped_ptr;  // owned by conn from here
    return conn;
  };
  auto read_hello = [&](net::FramedConnection& conn) -> StatusOr<int> {
    STELLA_ASSIGN_OR_RETURN(net::Frame frame, conn.Receive(deadline));
    if (frame.header.type != net::FrameType::kHello) {
      return InvalidArgumentError("expected a Hello frame first, got " + net::FrameTypeName(frame.header.type));
    }
    STELLA_ASSIGN_OR_RETURN(net::Hello hello, net::DecodeHello(frame.payload.data(), frame.payload.size()));
    if (hello.job_id != o.job_name) {
      return FailedPreconditionError("peer belongs to job \"" + hello.job_id + "\", not \"" + o.job_name + "\"");
    }
    if (static_cast<int>(hello.cluster_index) >= n || static_cast<int>(hello.cluster_index) == o.cluster_index) {
      return FailedPreconditionError("peer claims cluster index " + std::to_string(hello.cluster_index));
    }
    return static_cast<int>(hello.cluster_index);
  };

  // Dial lower indices.
  for (int c = 0; c < o.cluster_index; ++c) {
    STELLA_ASSIGN_OR_RETURN(auto hp, SplitHostPort(o.addresses[static_cast<size_t>(c)]));
    auto raw = net::TcpConnect(hp.first, hp.second, deadline);
    if (!raw.ok()) return raw.status().WithContext("dialing gateway of cluster " + name_of(c));
    net::ShapedStream* shaped = nullptr;
    std::string peer_cluster;
    auto conn = wrap(std::move(raw).value(), &shaped, net::TlsRole::kClient, tls ? name_of(c) : "",
                     "gateway of cluster " + name_of(c) + " (" + o.addresses[static_cast<size_t>(c)] + ")",
                     deadline, &peer_cluster);
    if (!conn.ok()) return conn.status().WithContext("connecting to the gateway of cluster " + name_of(c));
    STELLA_ASSIGN_OR_RETURN(int peer, read_hello(**conn));
    if (peer != c) {
      return FailedPreconditionError("dialed cluster " + name_of(c) + " but it says it is cluster index " +
                                     std::to_string(peer));
    }
    conns[static_cast<size_t>(c)] = std::move(conn).value();
    shapers[static_cast<size_t>(c)] = shaped;
  }
  // Accept higher indices.
  if (o.cluster_index + 1 < n) {
    STELLA_ASSIGN_OR_RETURN(auto hp, SplitHostPort(o.addresses[static_cast<size_t>(o.cluster_index)]));
    auto listener = net::TcpListener::Create(hp.first, hp.second);
    if (!listener.ok()) return listener.status().WithContext("WAN gateway listening on " + o.addresses[static_cast<size_t>(o.cluster_index)]);
    int pending = n - o.cluster_index - 1;
    while (pending > 0) {
      auto raw = (*listener)->Accept(deadline);
      if (!raw.ok()) return raw.status().WithContext("waiting for peer gateways");
      const auto* tcp = dynamic_cast<const net::TcpStream*>(raw->get());
      const std::string from = tcp != nullptr ? tcp->peer() : "?";
      net::ShapedStream* shaped = nullptr;
      std::string peer_cluster;
      auto conn = wrap(std::move(raw).value(), &shaped, net::TlsRole::kServer, "", from,
                       std::min(deadline, SystemClock::Get().Now() + o.accept_handshake_timeout), &peer_cluster);
      auto peer = conn.ok() ? read_hello(**conn) : StatusOr<int>(conn.status());
      if (peer.ok() && tls && peer_cluster != name_of(*peer)) {
        peer = FailedPreconditionError("its certificate names cluster " + peer_cluster + " but its Hello claims " +
                                       name_of(*peer) + " (index " + std::to_string(*peer) + ")");
      }
      if (!peer.ok()) {
        // A stranger or a confused peer: refuse it (the reason, never key
        // material, goes to the log) and keep waiting.
        std::fprintf(stderr, "stella: refused WAN connection from %s: %s\n", from.c_str(),
                     peer.status().ToString().c_str());
        continue;
      }
      if (*peer <= o.cluster_index || conns[static_cast<size_t>(*peer)]) {
        std::fprintf(stderr, "stella: refused duplicate WAN connection from cluster index %d\n", *peer);
        continue;
      }
      conns[static_cast<size_t>(*peer)] = std::move(conn).value();
      shapers[static_cast<size_t>(*peer)] = shaped;
      --pending;
    }
  }
  std::vector<std::unique_ptr<Peer>> peers(static_cast<size_t>(n));
  for (int c = 0; c < n; ++c) {
    if (conns[static_cast<size_t>(c)]) {
      peers[static_cast<size_t>(c)] = std::make_unique<Peer>(c, name_of(c), std::move(conns[static_cast<size_t>(c)]),
                                                             shapers[static_cast<size_t>(c)]);
    }
  }
  return std::unique_ptr<WanMesh>(new FullMesh(o, std::move(peers)));
}

}  // namespace stella::exchange
