// Hierarchical dense all-reduce: sum inside the cluster (Gloo), exchange the
// cluster sums between gateways over the WAN, then broadcast the global result
// inside the cluster. Every worker of every cluster ends with identical bits:
// gateways add the cluster sums in cluster-index order, and the in-cluster
// broadcast copies the gateway's buffer.
//
// Thread safety: one thread drives it, in the same order on every worker.
#ifndef STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_
#define STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_

#include <vector>

#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"

namespace stella::exchange {

class DenseAllReduce {
 public:
  // `group` and `mesh` are owned by the caller and outlive this object; mesh
  // is null on non-gateways and when there is one cluster.
  DenseAllReduce(IntraClusterGroup* group, WanMesh* mesh, int world_size);

  // Replaces data[0..n) with the mean over all workers of the job.
  Status AllReduceMean(float* data, size_t n, uint32_t round, Clock::TimePoint deadline);

 private:
  IntraClusterGroup* group_;  // not owned
  WanMesh* mesh_;             // not owned; may be null
  int world_size_;
  std::vector<uint8_t> send_buffer_;
  std::vector<std::vector<uint8_t>> received_;
};

}  // namespace stella::exchange

#endif  // STELLA_RUNTIME_EXCHANGE_DENSE_ALLREDUCE_H_
