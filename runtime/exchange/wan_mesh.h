// WanMesh: the cross-cluster links of one cluster gateway. Every gateway holds
// one framed, shaped TCP connection to every other gateway (a full mesh, so a
// round costs one WAN latency, and WAN traffic grows with clusters, not
// workers). Only local rank 0 of each cluster owns a WanMesh.
//
// Connection set-up: gateway i listens on its own address; it dials every
// gateway j < i and accepts from every j > i. Both paths hand the connected
// byte stream to one function (EstablishLink in wan_mesh.cc: shaping, TLS,
// framing, Hello exchange). With a TLS directory, each TCP connection first
// runs a mutual TLS 1.3 handshake (src/net/tls_stream.h) above the egress
// shaper, so the shaper paces ciphertext: the dialing side insists on the
// certificate of the cluster it dialed, the accepting side on one of this
// job; a refused handshake is logged with its reason. Then a Hello frame
// carries the job name and the cluster index; a peer of another job, an
// impossible index, or (with TLS) an index that is not the cluster its
// certificate names is refused. Create returns once every peer is connected.
//
// Lost links: a link that fails (error, reset, orderly close) or receives no
// byte for `link_timeout` (every link carries a heartbeat frame when idle, so
// silence means a cut link or a hung peer) is marked down; this is not an
// error. The dialing side redials in the background with jittered
// exponential backoff, the accepting side takes the peer's new connection
// (the newest connection of a cluster replaces an older one: that is how a
// restarted gateway comes back). A peer that sent Bye (its mesh was destroyed
// in order, at the end of its job) is marked `left` and is not redialed.
//
// Rounds: AllGather sends this gateway's payload to every peer that is up and
// returns every payload that arrives for the round, plus why each missing one
// is missing: the link is down, the peer left, the peer has already sent a
// later round (it will never send this one: it went on without us), or the
// round's deadline passed. A peer that is up and has not reached the round
// yet is waited for (up to the deadline): a cluster that ran ahead while
// the link was down waits for the others to catch up, so the clusters'
// steps re-align after a cut.
//
// Each connection has a receive thread that files incoming frames by round
// and a send thread that drains an outbox, so sends and receives of a round
// never wait on each other (two gateways both sending megabytes into full
// socket buffers would otherwise deadlock) and a cut link never blocks a
// round. Each peer has a keeper thread (watchdog, redial, reaping of dead
// connections); the listener thread accepts.
//
// Thread safety: AllGather is called by one thread at a time. stats(),
// SetEgressRate and num_clusters may be called from any thread. The destructor
// drains every live link's outbox, says Bye, and joins all threads (bounded by
// link_timeout).
#ifndef STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_
#define STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella::exchange {

struct WanMeshOptions {
  std::string job_name;   // Hello frames must agree on it
  int cluster_index = 0;  // this gateway's cluster
  // "host:port" of every cluster's gateway, indexed by cluster; this
  // gateway listens on its own entry (bind host taken from it).
  std::vector<std::string> addresses;
  std::vector<std::string> cluster_names;  // for labels and messages
  // Emulated egress of this gateway (in-process shaper); 0 = unshaped.
  double egress_bits_per_second = 0;
  std::chrono::microseconds egress_latency{0};
  // Bound on connecting to all peers at start-up (Create).
  std::chrono::milliseconds connect_timeout{60000};
  // Largest payload accepted from a peer; larger frames are refused before
  // any allocation.
  size_t max_payload_bytes = size_t{512} << 20;
  // Directory with ca.crt, tls.crt, tls.key (src/security/certs.h): every
  // link is mutual TLS, and tls.crt must name this gateway
  // (stella://<job_namespace>/<job_name>/<cluster_names[cluster_index]>).
  // "" (default) = plain TCP, unauthenticated and unencrypted.
  std::string tls_dir;
  std::string job_namespace = "default";  // checked against tls.crt
  // A link that has sent nothing for this long sends a heartbeat frame.
  // Default 1 s. Must be > 0 and < link_timeout.
  std::chrono::milliseconds heartbeat_interval{1000};
  // A link that has received no byte for this long is declared down and
  // closed. Default 10 s: ten heartbeats, so a peer under CPU pressure is not
  // taken for dead; a cut link is noticed within this time.
  std::chrono::milliseconds link_timeout{10000};
  // Bound on one dial (TCP connect) and on one TLS handshake plus Hello
  // exchange, so a silent stranger cannot hold up the listener. Default 10 s.
  std::chrono::milliseconds handshake_timeout{10000};
  // Redial backoff after a failed attempt or a lost link: the delay starts
  // at reconnect_min_backoff and doubles up to reconnect_max_backoff; each
  // wait is drawn uniformly from [delay/2, delay] so that gateways that lost
  // their links together do not redial in lockstep. Defaults 200 ms and 5 s.
  std::chrono::milliseconds reconnect_min_backoff{200};
  std::chrono::milliseconds reconnect_max_backoff{5000};
  // Bound on payload bytes queued for one link; beyond it the oldest queued
  // payload is dropped (the peer then misses that round). Default 1 GiB.
  size_t max_queued_bytes = size_t{1} << 30;
  // Seed of the backoff jitter; 0 = from std::random_device.
  uint64_t jitter_seed = 0;
};

struct PeerLinkStats {
  int cluster = 0;
  std::string name;
  uint64_t bytes_sent = 0;  // over every connection to this peer
  uint64_t bytes_received = 0;
  double goodput_bytes_per_second = 0;  // EWMA of achieved send rate
  bool up = false;                      // a connection is established now
  bool left = false;                    // the peer said Bye (finished its job)
  uint64_t connects = 0;                // connections established, the first included
  uint64_t link_losses = 0;             // established connections that were lost
  uint64_t dropped_payloads = 0;        // payloads dropped from a full outbox
  std::string last_error;               // why the link was last lost or refused
};

// Why a cluster's payload is (or is not) in a round's result.
enum class PeerRound {
  kReceived,   // present (always for this gateway's own cluster)
  kLinkDown,   // no connection to the peer
  kPeerLeft,   // the peer said Bye
  kPeerAhead,  // the peer already sent a later round: it went on without us
  kDeadline,   // the peer is up but its payload did not arrive in time
};
// Header-only, like the rest of the interface: stella::pipeline uses it
// without linking the exchange library (libtorch).
inline const char* PeerRoundName(PeerRound outcome) {
  switch (outcome) {
    case PeerRound::kReceived: return "received";
    case PeerRound::kLinkDown: return "link down";
    case PeerRound::kPeerLeft: return "peer left";
    case PeerRound::kPeerAhead: return "peer ahead";
    case PeerRound::kDeadline: return "deadline";
  }
  return "unknown";
}

struct GatherResult {
  // Indexed by cluster; entry [cluster_index] is the caller's own payload,
  // entries of missing clusters are empty.
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<PeerRound> outcome;

  // Every cluster's payload is present.
  bool complete() const {
    for (PeerRound o : outcome) {
      if (o != PeerRound::kReceived) return false;
    }
    return true;
  }
  // Clusters whose payload is absent, ascending.
  std::vector<int> missing() const {
    std::vector<int> out;
    for (size_t c = 0; c < outcome.size(); ++c) {
      if (outcome[c] != PeerRound::kReceived) out.push_back(static_cast<int>(c));
    }
    return out;
  }
  // Some peer said Bye.
  bool any_left() const {
    for (PeerRound o : outcome) {
      if (o == PeerRound::kPeerLeft) return true;
    }
    return false;
  }
};

// Round tags of one gateway must only go forward within a run (a frame of a
// later round drops earlier ones that are still unclaimed, and a peer that
// sent a later round is taken to have gone on without us). Setup rounds come
// first: the resume agreement (runtime/worker) uses kSetupRoundTag, every
// training round a tag >= kFirstTrainingRoundTag.
inline constexpr uint32_t kSetupRoundTag = 0;
inline constexpr uint32_t kFirstTrainingRoundTag = 1;

class WanMesh {
 public:
  // Connects to every peer (bounded by connect_timeout). InvalidArgument for
  // bad options or addresses, FailedPrecondition when a dialed peer belongs to
  // another job or claims another index, DeadlineExceeded naming the peers
  // still unconnected and their last error.
  static StatusOr<std::unique_ptr<WanMesh>> Create(const WanMeshOptions& options);
  virtual ~WanMesh() = default;

  // Sends `mine` to every peer that is up and collects the payloads of round
  // `tag` until each peer's payload has arrived or is known to be missing (see
  // PeerRound), or `deadline` passes. Missing payloads are not an error: the
  // caller decides what a partial round means. Frames of later rounds that
  // arrive early are kept for their round; those of earlier rounds that were
  // never asked for are dropped. InvalidArgument if `mine` exceeds
  // max_payload_bytes.
  virtual Status AllGather(uint32_t tag, const std::vector<uint8_t>& mine, GatherResult* result,
                           Clock::TimePoint deadline) = 0;

  // Changes the emulated egress rate at run time (fluctuating-link benchmark);
  // links established later use it too.
  virtual void SetEgressRate(double bits_per_second) = 0;

  // One entry per peer, in cluster order.
  virtual std::vector<PeerLinkStats> stats() const = 0;
  virtual int num_clusters() const = 0;
};

}  // namespace stella::exchange

#endif  // STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_
