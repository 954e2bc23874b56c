// Dense collectives among the workers of one cluster, over the cluster's fast
// local network: Gloo (c10d ProcessGroupGloo) on CPUs. The WAN never carries
// this traffic; only the cluster's gateway (local rank 0) talks across clusters.
//
// Thread safety: a group is driven by one thread; collectives are blocking and
// must be called in the same order on every member.
#ifndef STELLA_RUNTIME_EXCHANGE_INTRA_CLUSTER_H_
#define STELLA_RUNTIME_EXCHANGE_INTRA_CLUSTER_H_

#include <chrono>
#include <memory>
#include <string>

#include "src/base/status.h"

namespace stella::exchange {

class IntraClusterGroup {
 public:
  virtual ~IntraClusterGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place elementwise sum over all members; every member ends with the
  // same bits.
  virtual Status AllReduceSum(float* data, size_t n) = 0;
  // Copies root's buffer into every member's buffer.
  virtual Status Broadcast(float* data, size_t n, int root) = 0;
  // A rendezvous point; used before timing and at shutdown.
  virtual Status Barrier() = 0;
};

struct GlooGroupOptions {
  // Rendezvous store (c10d TCPStore) served by local rank 0 of the cluster.
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  int rank = 0;
  int size = 1;
  // Address Gloo binds for its own connections; "" = store_host. In
  // Kubernetes the pod IP; in benchmark namespaces the veth address.
  std::string bind_host;
  // Bound on every collective and on rendezvous: a dead peer fails the step
  // instead of hanging it.
  std::chrono::milliseconds timeout{60000};
};

// A group of one: every collective is a no-op. Used when a cluster has a
// single worker, so no store or sockets are needed.
std::unique_ptr<IntraClusterGroup> CreateSingletonGroup();

// Connects to (or, for rank 0, serves) the store and builds a Gloo group.
StatusOr<std::unique_ptr<IntraClusterGroup>> CreateGlooGroup(const GlooGroupOptions& options);

namespace internal {
// Key under which rank 0 publishes the NCCL unique id in the store.
inline constexpr char kNcclIdKey[] = "stella/nccl-id";
}  // namespace internal

#ifdef STELLA_WITH_NCCL
// The same contract over NCCL on CUDA device `device` (GPU clusters). The
// store options are shared with Gloo: rank 0 publishes the NCCL unique id.
StatusOr<std::unique_ptr<IntraClusterGroup>> CreateNcclGroup(const GlooGroupOptions& options, int device);
#endif

}  // namespace stella::exchange

#endif  // STELLA_RUNTIME_EXCHANGE_INTRA_CLUSTER_H_
