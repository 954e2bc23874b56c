#include "runtime/exchange/wan_mesh.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <thread>

#include "src/base/mutex.h"
#include "src/base/thread_annotations.h"
#include "src/net/frame.h"
#include "src/net/framed_connection.h"
#include "src/net/shaped_stream.h"
#include "src/net/tcp.h"
#include "src/net/tls_stream.h"

namespace stella::exchange {

namespace {

using Millis = std::chrono::milliseconds;

// Frames are read and written with this deadline: liveness comes from the
// keeper's watchdog (which closes silent links), not from per-frame timeouts,
// since a large frame over a slow link may legitimately take minutes.
constexpr auto kFarFuture = std::chrono::hours(24);
// Longest single TCP connect attempt while redialing (refusals are retried
// inside it); short so that a stopping mesh is not held up by a dial.
constexpr auto kMaxConnectAttempt = std::chrono::seconds(2);

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

// Cluster c's name for messages and certificate checks ("#c" if unnamed).
std::string ClusterName(const WanMeshOptions& o, int c) {
  return c >= 0 && c < static_cast<int>(o.cluster_names.size()) ? o.cluster_names[static_cast<size_t>(c)]
                                                                : "#" + std::to_string(c);
}

std::string MillisText(Clock::Duration d) {
  return std::to_string(std::chrono::duration_cast<Millis>(d).count()) + " ms";
}

// Records when the last byte arrived, so that a silent peer (cut link, hung
// process) is noticed even while a large frame is in flight: reads are split
// into chunks, each of which counts as progress.
class ProgressStream final : public net::Stream {
 public:
  explicit ProgressStream(std::unique_ptr<net::Stream> inner) : inner_(std::move(inner)) { Touch(); }

  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override {
    return inner_->WriteAll(data, n, deadline);
  }
  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override {
    auto* p = static_cast<uint8_t*>(data);
    for (size_t done = 0; done < n;) {
      const size_t chunk = std::min(kChunkBytes, n - done);
      STELLA_RETURN_IF_ERROR(inner_->ReadAll(p + done, chunk, deadline));
      done += chunk;
      Touch();
    }
    return Status::Ok();
  }
  StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) override {
    STELLA_ASSIGN_OR_RETURN(const size_t got, inner_->ReadSome(data, max, deadline));
    Touch();
    return got;
  }
  Status Flush(Clock::TimePoint deadline) override { return inner_->Flush(deadline); }
  void Shutdown() override { inner_->Shutdown(); }
  double DeliveryRateBytesPerSecond() const override { return inner_->DeliveryRateBytesPerSecond(); }

  Clock::TimePoint last_read() const { return Clock::TimePoint(Clock::Duration(last_read_ns_.load())); }

 private:
  static constexpr size_t kChunkBytes = 16 * 1024;
  void Touch() { last_read_ns_.store(SystemClock::Get().Now().time_since_epoch().count()); }

  const std::unique_ptr<net::Stream> inner_;
  std::atomic<int64_t> last_read_ns_{0};
};

// A connection that passed the Hello exchange.
struct Established {
  std::unique_ptr<net::FramedConnection> conn;
  net::ShapedStream* shaped = nullptr;  // owned by conn (it wraps the stream); null if unshaped
  ProgressStream* progress = nullptr;   // owned by conn
  int peer = -1;
};

// The one place where a connected byte stream becomes a gateway link, for
// dialed and accepted connections alike: receive-progress tracking, egress
// shaping, mutual TLS when `tls` is set (above the shaper, so the emulated
// bandwidth paces the bytes on the wire), framing, then the Hello exchange.
// `expected` is the dialed cluster, or -1 for an accepted connection, which
// must come from a higher cluster index (lower ones are dialed by us).
// `peer_label` names the other end in TLS messages.
StatusOr<Established> EstablishLink(const WanMeshOptions& o, const net::TlsContext* tls, double egress_bits_per_second,
                                    std::unique_ptr<net::Stream> raw, int expected, const std::string& peer_label,
                                    Clock::TimePoint deadline) {
  const int n = static_cast<int>(o.addresses.size());
  Established e;
  auto progress = std::make_unique<ProgressStream>(std::move(raw));
  e.progress = progress.get();
  std::unique_ptr<net::Stream> stream = std::move(progress);
  if (egress_bits_per_second > 0 || o.egress_latency.count() > 0) {
    net::ShapedStream::Options so;
    so.rate_bits_per_s = egress_bits_per_second;
    so.latency = std::chrono::duration_cast<Clock::Duration>(o.egress_latency);
    STELLA_ASSIGN_OR_RETURN(auto shaped, net::ShapedStream::Create(std::move(stream), so));
    e.shaped = shaped.get();
    stream = std::move(shaped);
  }
  std::string certified_cluster;  // the cluster the peer's certificate names (TLS only)
  if (tls != nullptr) {
    net::TlsHandshakeOptions ho;
    ho.role = expected >= 0 ? net::TlsRole::kClient : net::TlsRole::kServer;
    ho.expected_peer_cluster = expected >= 0 ? ClusterName(o, expected) : "";
    ho.peer_label = peer_label;
    STELLA_ASSIGN_OR_RETURN(auto secure, net::TlsStream::Handshake(*tls, std::move(stream), ho, deadline));
    certified_cluster = secure->peer_identity().cluster;
    stream = std::move(secure);
  }
  net::FramedConnection::Options fo;
  fo.limits.max_payload_bytes = o.max_payload_bytes;
  e.conn = std::make_unique<net::FramedConnection>(std::move(stream), fo);
  STELLA_ASSIGN_OR_RETURN(auto hello, net::EncodeHello({o.job_name, static_cast<uint32_t>(o.cluster_index)}));
  STELLA_RETURN_IF_ERROR(e.conn->Send(net::FrameType::kHello, 0, hello.data(), hello.size(), deadline));
  STELLA_RETURN_IF_ERROR(e.conn->Flush(deadline));
  STELLA_ASSIGN_OR_RETURN(net::Frame frame, e.conn->Receive(deadline));
  if (frame.header.type != net::FrameType::kHello) {
    return InvalidArgumentError("expected a Hello frame first, got " + net::FrameTypeName(frame.header.type));
  }
  STELLA_ASSIGN_OR_RETURN(net::Hello peer, net::DecodeHello(frame.payload.data(), frame.payload.size()));
  if (peer.job_id != o.job_name) {
    return FailedPreconditionError("peer belongs to job \"" + peer.job_id + "\", not \"" + o.job_name + "\"");
  }
  const int index = static_cast<int>(peer.cluster_index);
  if (expected >= 0 && index != expected) {
    return FailedPreconditionError("dialed cluster index " + std::to_string(expected) +
                                   " but the peer says it is cluster index " + std::to_string(index));
  }
  if (expected < 0 && (index <= o.cluster_index || index >= n)) {
    return FailedPreconditionError("peer claims cluster index " + std::to_string(index) + "; cluster " +
                                   std::to_string(o.cluster_index) + " accepts only indices " +
                                   std::to_string(o.cluster_index + 1) + ".." + std::to_string(n - 1));
  }
  if (tls != nullptr && certified_cluster != ClusterName(o, index)) {
    return FailedPreconditionError("its certificate names cluster " + certified_cluster + " but its Hello claims " +
                                   ClusterName(o, index) + " (index " + std::to_string(index) + ")");
  }
  e.peer = index;
  return e;
}

// What a Link reports to its owner, from the link's own threads. The owner
// must not destroy the link from inside these calls.
class LinkOwner {
 public:
  virtual ~LinkOwner() = default;
  virtual void OnData(uint64_t generation, uint32_t tag, std::vector<uint8_t> payload) = 0;
  // The connection ended: an error, an orderly close, or Bye (`bye`).
  virtual void OnEnded(uint64_t generation, const Status& why, bool bye) = 0;
};

// One established connection: its receive thread (files frames through the
// owner), its send thread (drains the outbox; heartbeats when idle) and the
// outbox. Lock order: the owner's mutex, then mu_; the threads never call the
// owner while holding mu_.
class Link {
 public:
  Link(Established e, const WanMeshOptions& o)
      : conn_(std::move(e.conn)),
        shaped_(e.shaped),
        progress_(e.progress),
        heartbeat_(o.heartbeat_interval),
        max_queued_bytes_(o.max_queued_bytes) {}

  ~Link() {
    Close();
    if (receiver_.joinable()) receiver_.join();
    if (sender_.joinable()) sender_.join();
  }

  // `owner` outlives the link (it owns it).
  void Start(LinkOwner* owner, uint64_t generation) {
    owner_ = owner;
    generation_ = generation;
    receiver_ = std::thread([this] { ReceiveLoop(); });
    sender_ = std::thread([this] { SendLoop(); });
  }

  void Enqueue(uint32_t tag, std::shared_ptr<const std::vector<uint8_t>> payload) {
    MutexLock lock(&mu_);
    if (closed_ || bye_requested_) return;
    queued_bytes_ += payload->size();
    outbox_.push_back({tag, std::move(payload)});
    // Bounded: a peer that cannot keep up loses its oldest rounds, not our memory.
    while (queued_bytes_ > max_queued_bytes_ && outbox_.size() > 1) {
      queued_bytes_ -= outbox_.front().payload->size();
      outbox_.pop_front();
      ++dropped_;
    }
    cv_.SignalAll();
  }

  // Orderly end: sends what is queued, then Bye. WaitFinished waits until
  // the Bye left and the peer closed its end (it does so on Bye), or the
  // deadline.
  void RequestBye() {
    MutexLock lock(&mu_);
    bye_requested_ = true;
    cv_.SignalAll();
  }
  void WaitFinished(Clock::TimePoint deadline) {
    MutexLock lock(&mu_);
    // wait_until(deadline) with the predicate below.
    while (!(closed_ || (tx_done_ && rx_done_))) {
      if (!cv_.WaitUntil(&mu_, deadline)) break;
    }
  }

  // Shuts the connection down; both threads leave promptly. Idempotent.
  void Close() {
    {
      MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
      cv_.SignalAll();
    }
    conn_->Shutdown();
  }

  Clock::TimePoint last_read() const { return progress_->last_read(); }
  net::LinkStatsSnapshot traffic() const { return conn_->stats().Snapshot(); }
  double DeliveryRate() const { return conn_->stream().DeliveryRateBytesPerSecond(); }
  void SetRate(double bits_per_second) {
    if (shaped_ != nullptr) shaped_->SetRateBitsPerSec(bits_per_second).IgnoreError();
  }
  uint64_t dropped() const {
    MutexLock lock(&mu_);
    return dropped_;
  }

 private:
  struct Item {
    uint32_t tag;
    std::shared_ptr<const std::vector<uint8_t>> payload;
  };

  void ReceiveLoop() {
    pthread_setname_np(pthread_self(), "stella-wan-rx");
    while (true) {
      auto frame = conn_->Receive(SystemClock::Get().Now() + kFarFuture);
      if (!frame.ok()) {
        Ended(&rx_done_, frame.status(), false);
        return;
      }
      if (frame->header.type == net::FrameType::kBye) {
        Ended(&rx_done_, UnavailableError("the peer said goodbye (its job ended)"), true);
        return;
      }
      // Heartbeats only prove liveness (the progress stream saw the bytes).
      if (frame->header.type != net::FrameType::kDense) continue;
      owner_->OnData(generation_, frame->header.tag, std::move(frame->payload));
    }
  }

  void SendLoop() {
    pthread_setname_np(pthread_self(), "stella-wan-tx");
    const Clock& clock = SystemClock::Get();
    auto last_send = clock.Now();
    // Held except around the send (Lock/Unlock, as the unique_lock was).
    mu_.Lock();
    while (true) {
      {
        // wait_until(last_send + heartbeat_) with the predicate below.
        const auto until = last_send + heartbeat_;
        while (!(closed_ || !outbox_.empty() || bye_requested_)) {
          if (!cv_.WaitUntil(&mu_, until)) break;
        }
      }
      if (closed_) {
        mu_.Unlock();
        return;
      }
      Item item{0, nullptr};
      net::FrameType type = net::FrameType::kHeartbeat;
      if (!outbox_.empty()) {
        item = std::move(outbox_.front());
        outbox_.pop_front();
        queued_bytes_ -= item.payload->size();
        type = net::FrameType::kDense;
      } else if (bye_requested_) {
        type = net::FrameType::kBye;
      } else if (clock.Now() >= last_send + heartbeat_) {
        type = net::FrameType::kHeartbeat;
      } else {
        continue;
      }
      mu_.Unlock();
      const auto deadline = clock.Now() + kFarFuture;
      const uint8_t* data = item.payload ? item.payload->data() : nullptr;
      const size_t size = item.payload ? item.payload->size() : 0;
      Status st = conn_->Send(type, item.tag, data, size, deadline);
      if (st.ok()) st = conn_->Flush(deadline);
      if (!st.ok()) {
        Ended(&tx_done_, st, false);
        return;
      }
      last_send = clock.Now();
      if (type == net::FrameType::kBye) {
        mu_.Lock();
        tx_done_ = true;
        cv_.SignalAll();
        mu_.Unlock();
        return;
      }
      mu_.Lock();
    }
  }

  // A thread's exit: reports to the owner unless the link was closed on
  // purpose, then marks `done`.
  void Ended(bool* done, const Status& why, bool bye) {
    bool closed;
    {
      MutexLock lock(&mu_);
      closed = closed_;
    }
    if (!closed || bye) owner_->OnEnded(generation_, why, bye);
    MutexLock lock(&mu_);
    *done = true;
    cv_.SignalAll();
  }

  const std::unique_ptr<net::FramedConnection> conn_;
  net::ShapedStream* const shaped_;  // owned by conn_; may be null
  ProgressStream* const progress_;   // owned by conn_
  const Clock::Duration heartbeat_;
  const size_t max_queued_bytes_;
  LinkOwner* owner_ = nullptr;  // set by Start; owns this link, so outlives it
  uint64_t generation_ = 0;

  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Item> outbox_ GUARDED_BY(mu_);
  size_t queued_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t dropped_ GUARDED_BY(mu_) = 0;
  bool bye_requested_ GUARDED_BY(mu_) = false;
  bool closed_ GUARDED_BY(mu_) = false;
  bool tx_done_ GUARDED_BY(mu_) = false;  // set through Ended's `done`, under mu_
  bool rx_done_ GUARDED_BY(mu_) = false;  // set through Ended's `done`, under mu_
  std::thread receiver_;
  std::thread sender_;
};

// One peer gateway: its current link (if any), the rounds received from it,
// and its link history. Links are replaced, never reused: a lost link is
// closed and retired (its threads are joined later by the keeper, outside
// mu_, since they may be waiting for mu_).
class Peer final : public LinkOwner {
 public:
  Peer(int cluster, std::string name) : cluster_(cluster), name_(std::move(name)) {}

  ~Peer() override {
    std::vector<std::unique_ptr<Link>> links;
    {
      MutexLock lock(&mu_);
      links = std::move(retired_);
      if (link_) links.push_back(std::move(link_));
    }
    links.clear();  // joins their threads, outside mu_
  }

  const std::string& name() const { return name_; }

  // Makes `link` the current link (an older one is closed and retired) and
  // starts it.
  void Install(std::unique_ptr<Link> link) {
    MutexLock lock(&mu_);
    RetireLocked();
    link_ = std::move(link);
    link_->Start(this, ++generation_);
    const bool again = connects_ > 0;
    ++connects_;
    up_ = true;
    left_ = false;
    // Unknown until the new link carries a round (the peer may also have
    // restarted, its rounds counting from 0 again).
    latest_tag_ = -1;
    if (again) {
      std::fprintf(stderr, "stella: WAN link to cluster %s up again (connection %llu, down %.1f s)\n", name_.c_str(),
                   static_cast<unsigned long long>(connects_), SecondsBetween(down_since_, SystemClock::Get().Now()));
    }
    cv_.SignalAll();
  }

  void Send(uint32_t tag, const std::shared_ptr<const std::vector<uint8_t>>& payload) {
    MutexLock lock(&mu_);
    if (up_ && link_) link_->Enqueue(tag, payload);
  }

  PeerRound Take(uint32_t tag, Clock::TimePoint deadline, std::vector<uint8_t>* out) {
    MutexLock lock(&mu_);
    while (true) {
      // Rounds before this one will never be asked for.
      rounds_.erase(rounds_.begin(), rounds_.lower_bound(tag));
      auto it = rounds_.find(tag);
      if (it != rounds_.end()) {
        *out = std::move(it->second);
        rounds_.erase(it);
        return PeerRound::kReceived;
      }
      if (left_) return PeerRound::kPeerLeft;
      if (!up_) return PeerRound::kLinkDown;
      // A sender's rounds are in order: once a later round arrived, this one
      // never will (the peer went on without us while the link was down).
      if (latest_tag_ > static_cast<int64_t>(tag)) return PeerRound::kPeerAhead;
      if (SystemClock::Get().Now() >= deadline) return PeerRound::kDeadline;
      cv_.WaitUntil(&mu_, deadline);
    }
  }

  // Keeper: closes the current link if nothing arrived for `timeout`.
  void CheckSilence(Clock::TimePoint now, Clock::Duration timeout) {
    MutexLock lock(&mu_);
    if (!up_ || !link_) return;
    const auto silent = now - link_->last_read();
    if (silent > timeout) {
      LostLocked(DeadlineExceededError("no byte from the peer for " + MillisText(silent) + " (link timeout " +
                                       MillisText(timeout) + ")"),
                 false);
    }
  }

  // Keeper: the retired links, to be destroyed outside mu_.
  std::vector<std::unique_ptr<Link>> TakeRetired() {
    MutexLock lock(&mu_);
    for (const auto& l : retired_) {
      const auto t = l->traffic();
      base_sent_ += t.bytes_sent;
      base_received_ += t.bytes_received;
      base_dropped_ += l->dropped();
    }
    return std::move(retired_);
  }

  // True while this peer should be (re)dialed; `losses` receives the number
  // of links lost so far (the keeper backs off after each).
  bool WantsLink(uint64_t* losses) const {
    MutexLock lock(&mu_);
    *losses = losses_;
    return !up_ && !left_;
  }
  bool up() const {
    MutexLock lock(&mu_);
    return up_;
  }

  // A failed dial or refused connection (the link stays down).
  void RecordFailure(const Status& why) {
    MutexLock lock(&mu_);
    last_error_ = why.ToString();
  }

  // Shutdown: asks the current link for an orderly goodbye; returns it (still
  // owned by this peer, which outlives the caller's use) or null.
  Link* RequestBye() {
    MutexLock lock(&mu_);
    closing_ = true;
    if (!up_ || !link_) return nullptr;
    link_->RequestBye();
    return link_.get();
  }

  void SetRate(double bits_per_second) {
    MutexLock lock(&mu_);
    if (link_) link_->SetRate(bits_per_second);
  }

  PeerLinkStats stats() const {
    MutexLock lock(&mu_);
    PeerLinkStats p;
    p.cluster = cluster_;
    p.name = name_;
    p.bytes_sent = base_sent_;
    p.bytes_received = base_received_;
    p.dropped_payloads = base_dropped_;
    double ewma = 0;
    auto add = [&](const Link& l) {
      const auto t = l.traffic();
      p.bytes_sent += t.bytes_sent;
      p.bytes_received += t.bytes_received;
      p.dropped_payloads += l.dropped();
      ewma = t.goodput_bytes_per_s;
    };
    for (const auto& l : retired_) add(*l);
    if (link_) {
      add(*link_);
      // Over a kernel-shaped or real WAN the send buffer absorbs a whole
      // frame, so write-timed goodput is meaningless: prefer TCP's own
      // delivery rate. The in-process shaper is the bottleneck in local runs;
      // its write-timed goodput (the fallback) is exact there.
      // Application-limited samples read as 0; keep the last path sample.
      const double delivery = link_->DeliveryRate();
      if (delivery > 0) last_delivery_rate_ = delivery;
    }
    p.goodput_bytes_per_second = last_delivery_rate_ > 0 ? last_delivery_rate_ : ewma;
    p.up = up_;
    p.left = left_;
    p.connects = connects_;
    p.link_losses = losses_;
    p.last_error = last_error_;
    return p;
  }

  // LinkOwner, from the link's threads.
  void OnData(uint64_t generation, uint32_t tag, std::vector<uint8_t> payload) override {
    MutexLock lock(&mu_);
    // A gateway's rounds only go forward within one run of it, so anything
    // filed under a later tag comes from before a restart: drop it.
    rounds_.erase(rounds_.upper_bound(tag), rounds_.end());
    rounds_[tag] = std::move(payload);
    latest_tag_ = tag;
    cv_.SignalAll();
  }

  void OnEnded(uint64_t generation, const Status& why, bool bye) override {
    MutexLock lock(&mu_);
    if (generation != generation_ || !up_) return;  // an older link, or already handled
    LostLocked(why, bye);
  }

 private:
  void LostLocked(const Status& why, bool bye) REQUIRES(mu_) {
    up_ = false;
    last_error_ = why.ToString();
    down_since_ = SystemClock::Get().Now();
    if (bye) {
      left_ = true;
      std::fprintf(stderr, "stella: WAN peer cluster %s left the job\n", name_.c_str());
    } else if (!closing_) {  // a peer closing in answer to our Bye is no loss
      ++losses_;
      std::fprintf(stderr, "stella: WAN link to cluster %s down: %s\n", name_.c_str(), last_error_.c_str());
    }
    RetireLocked();
    cv_.SignalAll();
  }

  void RetireLocked() REQUIRES(mu_) {
    if (!link_) return;
    link_->Close();
    retired_.push_back(std::move(link_));
  }

  const int cluster_;
  const std::string name_;
  mutable Mutex mu_;
  CondVar cv_;                                                  // link state or rounds changed
  std::unique_ptr<Link> link_ GUARDED_BY(mu_);                  // the current link
  std::vector<std::unique_ptr<Link>> retired_ GUARDED_BY(mu_);  // closed, not yet joined
  uint64_t generation_ GUARDED_BY(mu_) = 0;                     // of link_
  bool up_ GUARDED_BY(mu_) = false;
  bool left_ GUARDED_BY(mu_) = false;
  bool closing_ GUARDED_BY(mu_) = false;  // our mesh is shutting down
  std::map<uint32_t, std::vector<uint8_t>> rounds_ GUARDED_BY(mu_);
  int64_t latest_tag_ GUARDED_BY(mu_) = -1;  // tag of the newest data frame
  uint64_t connects_ GUARDED_BY(mu_) = 0;
  uint64_t losses_ GUARDED_BY(mu_) = 0;
  std::string last_error_ GUARDED_BY(mu_);
  Clock::TimePoint down_since_ GUARDED_BY(mu_);
  // Of joined links.
  uint64_t base_sent_ GUARDED_BY(mu_) = 0;
  uint64_t base_received_ GUARDED_BY(mu_) = 0;
  uint64_t base_dropped_ GUARDED_BY(mu_) = 0;
  mutable double last_delivery_rate_ GUARDED_BY(mu_) = 0;  // last non-app-limited TCP sample
};

class FullMesh final : public WanMesh {
 public:
  // `tls` (null = plain TCP) is this gateway's checked TLS context.
  FullMesh(WanMeshOptions options, std::unique_ptr<net::TlsContext> tls)
      : options_(std::move(options)), tls_(std::move(tls)), egress_(options_.egress_bits_per_second) {
    const int n = static_cast<int>(options_.addresses.size());
    for (int c = 0; c < n; ++c) {
      if (c == options_.cluster_index) {
        peers_.push_back(nullptr);
      } else {
        peers_.push_back(std::make_unique<Peer>(c, ClusterName(options_, c)));
      }
    }
  }

  ~FullMesh() override {
    {
      MutexLock lock(&stop_mu_);
      stopping_ = true;
    }
    stop_cv_.SignalAll();
    if (listener_) listener_->Shutdown();
    if (acceptor_.joinable()) acceptor_.join();
    for (auto& k : keepers_) k.join();
    // Orderly goodbye on every live link at once: the last round's payloads
    // are still queued perhaps, and peers must learn we left, not lost us.
    std::vector<Link*> finishing;
    for (auto& p : peers_) {
      if (!p) continue;
      if (Link* l = p->RequestBye()) finishing.push_back(l);
    }
    const auto deadline = SystemClock::Get().Now() + options_.link_timeout;
    for (Link* l : finishing) l->WaitFinished(deadline);  // owned by peers_, destroyed below
    peers_.clear();
  }

  // Binds the listener (errors such as a taken port surface here) and starts
  // the background threads.
  Status Start() {
    const int n = static_cast<int>(options_.addresses.size());
    if (options_.cluster_index + 1 < n) {
      STELLA_ASSIGN_OR_RETURN(auto hp, SplitHostPort(options_.addresses[static_cast<size_t>(options_.cluster_index)]));
      auto listener = net::TcpListener::Create(hp.first, hp.second);
      if (!listener.ok()) {
        return listener.status().WithContext("WAN gateway listening on " +
                                             options_.addresses[static_cast<size_t>(options_.cluster_index)]);
      }
      listener_ = std::move(listener).value();
      acceptor_ = std::thread([this] { AcceptLoop(); });
    }
    for (int c = 0; c < n; ++c) {
      if (c != options_.cluster_index) keepers_.emplace_back([this, c] { KeepLoop(c); });
    }
    return Status::Ok();
  }

  // Waits until every peer is up. A dialed peer of another job fails at once.
  Status WaitAllUp(Clock::TimePoint deadline) {
    while (true) {
      bool all = true;
      for (auto& p : peers_) {
        if (p && !p->up()) all = false;
      }
      if (all) return Status::Ok();
      {
        MutexLock lock(&stop_mu_);
        if (!fatal_.ok()) return fatal_;
      }
      if (SystemClock::Get().Now() >= deadline) {
        std::string missing;
        for (auto& p : peers_) {
          if (!p || p->up()) continue;
          const auto s = p->stats();
          missing += (missing.empty() ? "" : "; ") + std::string("cluster ") + s.name +
                     (s.last_error.empty() ? "" : " (" + s.last_error + ")");
        }
        return DeadlineExceededError("WAN mesh: no link within " + MillisText(options_.connect_timeout) + " to " +
                                     missing);
      }
      std::this_thread::sleep_for(Millis(5));
    }
  }

  Status AllGather(uint32_t tag, const std::vector<uint8_t>& mine, GatherResult* result,
                   Clock::TimePoint deadline) override {
    if (mine.size() > options_.max_payload_bytes) {
      return InvalidArgumentError("WAN round " + std::to_string(tag) + ": payload of " + std::to_string(mine.size()) +
                                  " bytes exceeds max_payload_bytes " + std::to_string(options_.max_payload_bytes));
    }
    const size_t n = peers_.size();
    result->payloads.resize(n);
    result->outcome.assign(n, PeerRound::kReceived);
    auto shared = std::make_shared<const std::vector<uint8_t>>(mine);
    {
      // A link that comes up while this round waits gets the payload too.
      MutexLock lock(&round_mu_);
      in_flight_ = {tag, shared};
    }
    for (auto& p : peers_) {
      if (p) p->Send(tag, shared);
    }
    for (size_t c = 0; c < n; ++c) {
      auto& out = result->payloads[c];
      if (!peers_[c]) {
        out = mine;
        continue;
      }
      out.clear();
      result->outcome[c] = peers_[c]->Take(tag, deadline, &out);
    }
    MutexLock lock(&round_mu_);
    in_flight_ = {0, nullptr};
    return Status::Ok();
  }

  void SetEgressRate(double bits_per_second) override {
    egress_.store(bits_per_second);
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
  struct InFlight {
    uint32_t tag = 0;
    std::shared_ptr<const std::vector<uint8_t>> payload;
  };

  bool Stopping() {
    MutexLock lock(&stop_mu_);
    return stopping_;
  }

  void Install(int cluster, Established e) {
    Peer& peer = *peers_[static_cast<size_t>(cluster)];
    peer.Install(std::make_unique<Link>(std::move(e), options_));
    InFlight f;
    {
      MutexLock lock(&round_mu_);
      f = in_flight_;
    }
    if (f.payload) peer.Send(f.tag, f.payload);
  }

  void AcceptLoop() {
    pthread_setname_np(pthread_self(), "stella-wan-acc");
    const Clock& clock = SystemClock::Get();
    while (!Stopping()) {
      auto raw = listener_->Accept(clock.Now() + kFarFuture);
      if (!raw.ok()) {
        if (raw.status().code() == StatusCode::kCancelled || Stopping()) return;
        std::fprintf(stderr, "stella: WAN gateway accept: %s\n", raw.status().ToString().c_str());
        std::this_thread::sleep_for(Millis(100));
        continue;
      }
      const auto* tcp = dynamic_cast<const net::TcpStream*>(raw->get());
      const std::string from = tcp != nullptr ? tcp->peer() : "?";
      auto e = EstablishLink(options_, tls_.get(), egress_.load(), std::move(raw).value(), -1, from,
                             clock.Now() + options_.handshake_timeout);
      if (!e.ok()) {
        // A stranger or a confused peer: refuse it (the reason, never key
        // material, goes to the log) and keep listening.
        std::fprintf(stderr, "stella: refused WAN connection from %s: %s\n", from.c_str(),
                     e.status().ToString().c_str());
        continue;
      }
      Install(e->peer, std::move(e).value());
    }
  }

  StatusOr<Established> Dial(int cluster) {
    const Clock& clock = SystemClock::Get();
    STELLA_ASSIGN_OR_RETURN(auto hp, SplitHostPort(options_.addresses[static_cast<size_t>(cluster)]));
    const auto connect_deadline =
        clock.Now() + std::min<Clock::Duration>(options_.handshake_timeout, kMaxConnectAttempt);
    const std::string label = "gateway of cluster " + ClusterName(options_, cluster);
    STELLA_ASSIGN_OR_RETURN(auto raw, net::TcpConnect(hp.first, hp.second, connect_deadline));
    auto e = EstablishLink(options_, tls_.get(), egress_.load(), std::move(raw), cluster,
                           label + " (" + options_.addresses[static_cast<size_t>(cluster)] + ")",
                           clock.Now() + options_.handshake_timeout);
    if (!e.ok()) return e.status().WithContext("connecting to the " + label);
    return e;
  }

  // The keeper of one peer: watchdog, reaping of dead links and, for lower
  // indices (which this gateway dials), redialing with jittered backoff.
  void KeepLoop(int cluster) {
    pthread_setname_np(pthread_self(), "stella-wan-keep");
    Peer& peer = *peers_[static_cast<size_t>(cluster)];
    const bool dialer = cluster < options_.cluster_index;
    const Clock& clock = SystemClock::Get();
    std::mt19937_64 rng(options_.jitter_seed != 0 ? options_.jitter_seed * 1000003u + static_cast<uint64_t>(cluster)
                                                  : std::random_device{}());
    const Clock::Duration min_backoff = options_.reconnect_min_backoff;
    const Clock::Duration max_backoff = options_.reconnect_max_backoff;
    Clock::Duration backoff = min_backoff;
    auto jittered = [&](Clock::Duration d) {
      std::uniform_int_distribution<int64_t> u(d.count() / 2, d.count());
      return Clock::Duration(u(rng));
    };
    const Clock::Duration tick = std::clamp<Clock::Duration>(
        options_.heartbeat_interval / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(100));
    auto next_dial = clock.Now();  // the first connection is dialed at once
    uint64_t seen_losses = 0;
    bool ever_connected = false;
    while (true) {
      {
        MutexLock lock(&stop_mu_);
        // wait_for(tick) with the predicate stopping_.
        const auto until = std::chrono::steady_clock::now() + tick;
        while (!stopping_) {
          if (!stop_cv_.WaitUntil(&stop_mu_, until)) break;
        }
        if (stopping_) return;
      }
      const auto now = clock.Now();
      peer.CheckSilence(now, options_.link_timeout);
      peer.TakeRetired().clear();  // joins dead links' threads, outside the peer's lock
      uint64_t losses = 0;
      if (!dialer || !peer.WantsLink(&losses)) continue;
      if (losses != seen_losses) {
        // Just lost the link: back off before the first redial too, so a
        // peer that is restarting is not hammered.
        seen_losses = losses;
        next_dial = now + jittered(backoff);
      }
      if (now < next_dial) continue;
      auto e = Dial(cluster);
      if (e.ok()) {
        Install(cluster, std::move(e).value());
        ever_connected = true;
        backoff = min_backoff;
        continue;
      }
      peer.RecordFailure(e.status());
      if (!ever_connected) {
        // Starting up: the peer's gateway may simply not listen yet. Poll at
        // the minimum backoff (TcpConnect itself retries refusals inside an
        // attempt) so that the job starts as soon as all gateways are there.
        next_dial = clock.Now() + jittered(min_backoff);
        if (e.status().code() == StatusCode::kFailedPrecondition) {
          // Another job, or a wrong index, at the peer's address: a
          // configuration error, fatal while starting.
          MutexLock lock(&stop_mu_);
          if (fatal_.ok()) fatal_ = e.status();  // names the gateway already (Dial)
        }
        continue;
      }
      next_dial = clock.Now() + jittered(backoff);
      backoff = std::min(max_backoff, backoff * 2);
    }
  }

  const WanMeshOptions options_;
  const std::unique_ptr<net::TlsContext> tls_;  // null = plain TCP; shared by all handshakes
  std::atomic<double> egress_;                  // current emulated egress rate
  std::vector<std::unique_ptr<Peer>> peers_;    // indexed by cluster; null for self; fixed after construction
  std::unique_ptr<net::TcpListener> listener_;  // null when no higher index exists

  Mutex round_mu_;
  InFlight in_flight_ GUARDED_BY(round_mu_);  // the round AllGather is in

  Mutex stop_mu_;
  CondVar stop_cv_;
  bool stopping_ GUARDED_BY(stop_mu_) = false;
  Status fatal_ GUARDED_BY(stop_mu_);  // a dial refused for configuration reasons

  std::thread acceptor_;
  std::vector<std::thread> keepers_;
};

Status ValidateOptions(const WanMeshOptions& o) {
  const int n = static_cast<int>(o.addresses.size());
  if (o.cluster_index < 0 || o.cluster_index >= n) {
    return InvalidArgumentError("WAN mesh: cluster index " + std::to_string(o.cluster_index) + " out of range for " +
                                std::to_string(n) + " gateway addresses");
  }
  for (const auto& address : o.addresses) {
    STELLA_RETURN_IF_ERROR(SplitHostPort(address).status());
  }
  auto positive = [](const char* field, Millis v) -> Status {
    if (v.count() <= 0) {
      return InvalidArgumentError(std::string("WAN mesh: ") + field + " must be > 0 ms, got " +
                                  std::to_string(v.count()));
    }
    return Status::Ok();
  };
  STELLA_RETURN_IF_ERROR(positive("heartbeat_interval", o.heartbeat_interval));
  STELLA_RETURN_IF_ERROR(positive("link_timeout", o.link_timeout));
  STELLA_RETURN_IF_ERROR(positive("handshake_timeout", o.handshake_timeout));
  STELLA_RETURN_IF_ERROR(positive("reconnect_min_backoff", o.reconnect_min_backoff));
  if (o.heartbeat_interval >= o.link_timeout) {
    return InvalidArgumentError("WAN mesh: heartbeat_interval (" + std::to_string(o.heartbeat_interval.count()) +
                                " ms) must be shorter than link_timeout (" + std::to_string(o.link_timeout.count()) +
                                " ms), or idle links would be taken for dead");
  }
  if (o.reconnect_max_backoff < o.reconnect_min_backoff) {
    return InvalidArgumentError("WAN mesh: reconnect_max_backoff (" + std::to_string(o.reconnect_max_backoff.count()) +
                                " ms) must be >= reconnect_min_backoff (" +
                                std::to_string(o.reconnect_min_backoff.count()) + " ms)");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<WanMesh>> WanMesh::Create(const WanMeshOptions& o) {
  STELLA_RETURN_IF_ERROR(ValidateOptions(o));
  const auto deadline = SystemClock::Get().Now() + o.connect_timeout;
  // Mutual TLS: this gateway's credentials, checked before any connection.
  std::unique_ptr<net::TlsContext> tls;
  if (!o.tls_dir.empty()) {
    const int n = static_cast<int>(o.addresses.size());
    if (static_cast<int>(o.cluster_names.size()) != n) {
      return InvalidArgumentError("WAN mesh with TLS: need one cluster name per gateway address (" + std::to_string(n) +
                                  "), got " + std::to_string(o.cluster_names.size()));
    }
    auto ctx = net::TlsContext::FromDir(o.tls_dir);
    if (!ctx.ok()) return ctx.status().WithContext("--tls-dir");
    const security::GatewayIdentity self{o.job_namespace, o.job_name, ClusterName(o, o.cluster_index)};
    if ((*ctx)->identity() != self) {
      return FailedPreconditionError("--tls-dir " + o.tls_dir + ": tls.crt names " + (*ctx)->identity().Uri() +
                                     " but this gateway is " + self.Uri());
    }
    tls = std::move(ctx).value();
  }
  auto mesh = std::make_unique<FullMesh>(o, std::move(tls));
  STELLA_RETURN_IF_ERROR(mesh->Start());
  STELLA_RETURN_IF_ERROR(mesh->WaitAllUp(deadline));
  return std::unique_ptr<WanMesh>(std::move(mesh));
}

}  // namespace stella::exchange
