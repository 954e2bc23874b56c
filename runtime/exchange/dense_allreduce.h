// Hierarchical dense all-reduce: sum inside the cluster (Gloo), exchange the
// cluster sums between gateways over the WAN, then broadcast the global result
// inside the cluster. Every worker of every cluster ends with identical bits:
// gateways add the cluster sums in cluster-index order and scale them, and
// the in-cluster broadcast copies the gateway's buffer.
//
// Lost WAN links: a round in which some clusters' sums did not arrive (see
// wan_mesh.h) is the mean over the workers of the clusters present, so each
// cluster keeps training on what it can reach; RoundInfo tells every worker
// of the cluster (the gateway sends it along in the broadcast). The ddp mode
// does not re-join the clusters' parameters afterwards: they keep the offset
// accumulated while apart (the stella mode resynchronizes; see
// runtime/pipeline/sparse_exchange.h).
//
// Thread safety: one thread drives it, in the same order on every worker.
#ifndef STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_
#define STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_

#include <vector>

#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"

namespace stella::exchange {

// What one round covered, the same on every worker of a cluster.
struct DenseRoundInfo {
  bool degraded = false;   // some cluster's sum is missing from the mean
  bool peer_left = false;  // some peer cluster said Bye (ended its job)
  int workers = 0;         // workers whose data the mean covers
};

class DenseAllReduce {
 public:
  // `group` and `mesh` are owned by the caller and outlive this object; mesh
  // is null on non-gateways and when there is one cluster.
  // `cluster_workers` lists the workers of every cluster, in cluster order
  // (every worker of the job passes the same list).
  DenseAllReduce(IntraClusterGroup* group, WanMesh* mesh, std::vector<int> cluster_workers);

  // Replaces data[0..n) with the mean over all workers of the job (over the
  // workers of the clusters reached, in a degraded round). The WAN round
  // ends by `deadline`: clusters not heard from by then are left out.
  Status AllReduceMean(float* data, size_t n, uint32_t round, Clock::TimePoint deadline,
                       DenseRoundInfo* info = nullptr);

 private:
  IntraClusterGroup* group_;  // not owned
  WanMesh* mesh_;             // not owned; may be null
  const std::vector<int> cluster_workers_;
  int world_size_ = 0;
  std::vector<float> scratch_;  // [data | round info], multi-cluster jobs
  std::vector<uint8_t> send_buffer_;
  GatherResult received_;
};

}  // namespace stella::exchange

#endif  // STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_
