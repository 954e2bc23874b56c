// WanMesh: the cross-cluster links of one cluster gateway. Every gateway holds
// one framed, shaped TCP connection to every other gateway (a full mesh, so a
// round costs one WAN latency, and WAN traffic grows with clusters, not
// workers). Only local rank 0 of each cluster owns a WanMesh.
//
// Connection set-up: gateway i listens on its own address; it dials every
// gateway j < i and accepts from every j > i. With a TLS directory, each TCP
// connection first runs a mutual TLS 1.3 handshake (src/net/tls_stream.h)
// above the egress shaper, so the shaper paces ciphertext: the dialing side
// insists on the certificate of the cluster it dialed, the accepting side on
// one of this job; a refused handshake is logged with its reason. Then a
// Hello frame carries the job name and the cluster index; a peer of another
// job, a duplicate index, or (with TLS) an index that is not the cluster its
// certificate names is refused.
//
// Each connection has a receive thread that queues incoming frames, so sends
// and receives of a round never wait on each other (two gateways both
// sending megabytes into full socket buffers would otherwise deadlock).
//
// Thread safety: AllGather is called by one thread at a time. stats() may be
// called from any thread.
#ifndef STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_
#define STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella::exchange {

struct WanMeshOptions {
  std::string job_name;            // Hello frames must agree on it
  int cluster_index = 0;           // this gateway's cluster
  // "host:port" of every cluster's gateway, indexed by cluster; this
  // gateway listens on its own entry (bind host taken from it).
  std::vector<std::string> addresses;
  std::vector<std::string> cluster_names;  // for labels and messages
  // Emulated egress of this gateway (in-process shaper); 0 = unshaped.
  double egress_bits_per_second = 0;
  std::chrono::microseconds egress_latency{0};
  // Bound on connecting to all peers at start-up.
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
  // Bound on one accepted connection's TLS handshake, so a silent stranger
  // cannot hold up the gateways that are still to connect.
  std::chrono::milliseconds accept_handshake_timeout{20000};
};

struct PeerLinkStats {
  int cluster = 0;
  std::string name;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  double goodput_bytes_per_second = 0;  // EWMA of achieved send rate
};

class WanMesh {
 public:
  static StatusOr<std::unique_ptr<WanMesh>> Create(const WanMeshOptions& options);
  virtual ~WanMesh() = default;

  // Sends `mine` to every peer and returns every cluster's payload of round
  // `tag` (entry [cluster_index] is `mine`). Frames of other rounds that
  // arrive early are kept for their round.
  virtual Status AllGather(uint32_t tag, const std::vector<uint8_t>& mine,
                           std::vector<std::vector<uint8_t>>* all, Clock::TimePoint deadline) = 0;

  // Changes the emulated egress rate at run time (fluctuating-link benchmark).
  virtual void SetEgressRate(double bits_per_second) = 0;

  virtual std::vector<PeerLinkStats> stats() const = 0;
  virtual int num_clusters() const = 0;
};

}  // namespace stella::exchange

#endif  // STELLA_RUNTIME_EXCHANGE_WAN_MESH_H_
