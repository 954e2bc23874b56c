// In-memory fakes of the collective interfaces (IntraClusterGroup, WanMesh),
// so tests run every rank as a thread of one process without sockets or Gloo.
//
// Thread safety: a hub is shared by the threads of its members; each member
// object is driven by one thread, like the real ones.
#ifndef STELLA_RUNTIME_EXCHANGE_TESTING_IN_MEMORY_H_
#define STELLA_RUNTIME_EXCHANGE_TESTING_IN_MEMORY_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/wan_mesh.h"
#include "src/base/mutex.h"

namespace stella::exchange::testing {

// A cyclic barrier with a timeout, for the fakes' collective phases.
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}
  // False on timeout.
  bool ArriveAndWait(std::chrono::milliseconds timeout);

 private:
  Mutex mu_;
  CondVar cv_;
  const int parties_;
  int arrived_ GUARDED_BY(mu_) = 0;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
};

// The shared state of one in-memory intra-cluster group of `size` members.
class GroupHub {
 public:
  explicit GroupHub(int size) : size_(size), barrier_(size), slots_(static_cast<size_t>(size)) {}
  std::unique_ptr<exchange::IntraClusterGroup> Member(int rank);

 private:
  friend class FakeGroup;
  const int size_;
  Barrier barrier_;
  std::vector<float*> slots_;  // each member's buffer during a collective
  std::vector<float> sum_;
};

// The shared state of an in-memory WAN mesh between `clusters` gateways.
// A tamper hook may rewrite any payload before delivery (malformed-peer
// tests); a delivery hook may drop payloads (cut-link tests): a payload it
// drops is reported to the receiver as kLinkDown, and the receiver does not
// wait for it.
class MeshHub {
 public:
  using Tamper = std::function<void(int from_cluster, uint32_t tag, std::vector<uint8_t>* payload)>;
  using Deliver = std::function<bool(int from_cluster, int to_cluster, uint32_t tag)>;
  explicit MeshHub(int clusters) : clusters_(clusters) {}
  std::unique_ptr<exchange::WanMesh> Member(int cluster);
  void SetTamper(Tamper tamper) { tamper_ = std::move(tamper); }
  // Set before the members start; called from their threads.
  void SetDeliver(Deliver deliver) { deliver_ = std::move(deliver); }

 private:
  friend class FakeMesh;
  const int clusters_;
  Mutex mu_;
  CondVar cv_;
  // tag -> payload per cluster
  std::map<uint32_t, std::vector<std::vector<uint8_t>>> rounds_ GUARDED_BY(mu_);
  std::map<uint32_t, std::vector<bool>> deposited_ GUARDED_BY(mu_);  // tag -> which clusters deposited
  std::map<uint32_t, int> taken_ GUARDED_BY(mu_);                    // tag -> members done
  Tamper tamper_;                                                    // set before the members start
  Deliver deliver_;                                                  // set before the members start
};

}  // namespace stella::exchange::testing

#endif  // STELLA_RUNTIME_EXCHANGE_TESTING_IN_MEMORY_H_
