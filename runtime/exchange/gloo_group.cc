// IntraClusterGroup over c10d::ProcessGroupGloo. libtorch exceptions are
// caught here and turned into Status values.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/store.h"

namespace stella::exchange {
namespace {

class SingletonGroup final : public IntraClusterGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Status AllReduceSum(float*, size_t) override { return Status::Ok(); }
  Status Broadcast(float*, size_t, int) override { return Status::Ok(); }
  Status Barrier() override { return Status::Ok(); }
};

class GlooGroup final : public IntraClusterGroup {
 public:
  GlooGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<c10d::ProcessGroupGloo> pg, int rank, int size)
      : store_(std::move(store)), pg_(std::move(pg)), rank_(rank), size_(size) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Status AllReduceSum(float* data, size_t n) override {
    return Run("allreduce", [&] {
      std::vector<at::Tensor> t{torch::from_blob(data, {static_cast<int64_t>(n)}, torch::kFloat32)};
      pg_->allreduce(t)->wait();
    });
  }

  Status Broadcast(float* data, size_t n, int root) override {
    return Run("broadcast", [&] {
      std::vector<at::Tensor> t{torch::from_blob(data, {static_cast<int64_t>(n)}, torch::kFloat32)};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      pg_->broadcast(t, opts)->wait();
    });
  }

  Status Barrier() override {
    return Run("barrier", [&] { pg_->barrier()->wait(); });
  }

 private:
  template <typename F>
  Status Run(const char* what, F&& f) {
    try {
      f();
      return Status::Ok();
    } catch (const std::exception& e) {
      return UnavailableError(std::string("intra-cluster ") + what + " (rank " + std::to_string(rank_) + " of " +
                              std::to_string(size_) + "): " + e.what());
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;  // must outlive pg_
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  int rank_;
  int size_;
};

}  // namespace

std::unique_ptr<IntraClusterGroup> CreateSingletonGroup() { return std::make_unique<SingletonGroup>(); }

StatusOr<std::unique_ptr<IntraClusterGroup>> CreateGlooGroup(const GlooGroupOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    return InvalidArgumentError("gloo group: rank " + std::to_string(o.rank) + " out of range for size " +
                                std::to_string(o.size));
  }
  if (o.size == 1) return CreateSingletonGroup();
  if (o.store_port <= 0 || o.store_port > 65535) {
    return InvalidArgumentError("gloo group: store port must be in 1..65535, got " + std::to_string(o.store_port));
  }
  try {
    auto store = internal::ConnectStore(o);
    auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
    opts->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(o.bind_host.empty() ? o.store_host : o.bind_host));
    opts->threads = 1;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.size, opts);
    return std::unique_ptr<IntraClusterGroup>(new GlooGroup(store, pg, o.rank, o.size));
  } catch (const std::exception& e) {
    return UnavailableError("gloo group rendezvous at " + o.store_host + ":" + std::to_string(o.store_port) +
                            " (rank " + std::to_string(o.rank) + " of " + std::to_string(o.size) + "): " + e.what());
  }
}

}  // namespace stella::exchange
