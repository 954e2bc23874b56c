// The cluster's rendezvous store (c10d TCPStore), served by local rank 0 and
// shared by the Gloo and NCCL groups. Internal to runtime/exchange.
//
// Thread safety: a store is used by one group; c10d's TCPStore is itself
// thread-safe.
#ifndef STELLA_RUNTIME_EXCHANGE_STORE_H_
#define STELLA_RUNTIME_EXCHANGE_STORE_H_

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "runtime/exchange/intra_cluster.h"

namespace stella::exchange::internal {

// Connects to (rank 0: serves) the store at options.store_host:store_port.
// Throws c10d's exceptions; callers convert them to Status.
inline c10::intrusive_ptr<c10d::TCPStore> ConnectStore(const GlooGroupOptions& o) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(o.store_port);
  so.isServer = o.rank == 0;
  so.numWorkers = o.size;
  so.waitWorkers = false;
  so.timeout = o.timeout;
  return c10::make_intrusive<c10d::TCPStore>(o.store_host, so);
}

}  // namespace stella::exchange::internal

#endif  // STELLA_RUNTIME_EXCHANGE_STORE_H_
