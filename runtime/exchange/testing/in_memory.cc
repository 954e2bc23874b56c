#include "runtime/exchange/testing/in_memory.h"

#include <string>

namespace stella::exchange::testing {

constexpr std::chrono::milliseconds kTimeout{20000};

bool Barrier::ArriveAndWait(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  const uint64_t gen = generation_;
  if (++arrived_ == parties_) {
    arrived_ = 0;
    ++generation_;
    cv_.SignalAll();
    return true;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (generation_ == gen) {
    if (!cv_.WaitUntil(&mu_, deadline)) return generation_ != gen;
  }
  return true;
}

class FakeGroup final : public exchange::IntraClusterGroup {
 public:
  FakeGroup(GroupHub* hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_->size_; }

  // Sums in rank order on rank 0, then everyone copies: same bits everywhere.
  Status AllReduceSum(float* data, size_t n) override {
    hub_->slots_[static_cast<size_t>(rank_)] = data;
    STELLA_RETURN_IF_ERROR(Sync("allreduce"));
    if (rank_ == 0) {
      hub_->sum_.assign(n, 0.0f);
      for (float* p : hub_->slots_) {
        for (size_t i = 0; i < n; ++i) hub_->sum_[i] += p[i];
      }
    }
    STELLA_RETURN_IF_ERROR(Sync("allreduce"));
    std::copy(hub_->sum_.begin(), hub_->sum_.end(), data);
    return Sync("allreduce");
  }

  Status Broadcast(float* data, size_t n, int root) override {
    hub_->slots_[static_cast<size_t>(rank_)] = data;
    STELLA_RETURN_IF_ERROR(Sync("broadcast"));
    if (rank_ != root)
      std::copy(hub_->slots_[static_cast<size_t>(root)], hub_->slots_[static_cast<size_t>(root)] + n, data);
    return Sync("broadcast");
  }

  Status Barrier() override { return Sync("barrier"); }

 private:
  Status Sync(const char* what) {
    if (!hub_->barrier_.ArriveAndWait(kTimeout)) return DeadlineExceededError(std::string("fake group ") + what);
    return Status::Ok();
  }
  GroupHub* hub_;  // outlives the member (test scope)
  int rank_;
};

std::unique_ptr<exchange::IntraClusterGroup> GroupHub::Member(int rank) {
  return std::make_unique<FakeGroup>(this, rank);
}

class FakeMesh final : public exchange::WanMesh {
 public:
  FakeMesh(MeshHub* hub, int cluster) : hub_(hub), cluster_(cluster) {}

  Status AllGather(uint32_t tag, const std::vector<uint8_t>& mine, exchange::GatherResult* result,
                   Clock::TimePoint deadline) override {
    MutexLock lock(&hub_->mu_);
    const size_t n = static_cast<size_t>(hub_->clusters_);
    auto& round = hub_->rounds_[tag];
    round.resize(n);
    round[static_cast<size_t>(cluster_)] = mine;
    if (hub_->tamper_) hub_->tamper_(cluster_, tag, &round[static_cast<size_t>(cluster_)]);
    sent_ += mine.size() * (n - 1);
    hub_->deposited_[tag].resize(n, false);
    hub_->deposited_[tag][static_cast<size_t>(cluster_)] = true;
    hub_->cv_.SignalAll();
    while (!Ready(tag)) {
      if (!hub_->cv_.WaitUntil(&hub_->mu_, deadline) && !Ready(tag)) {
        return DeadlineExceededError("fake mesh round " + std::to_string(tag));
      }
    }
    result->payloads = hub_->rounds_[tag];
    result->outcome.assign(n, exchange::PeerRound::kReceived);
    for (size_t c = 0; c < n; ++c) {
      if (!Delivered(c, tag)) {
        result->outcome[c] = exchange::PeerRound::kLinkDown;
        result->payloads[c].clear();
      }
    }
    if (++hub_->taken_[tag] == hub_->clusters_) {
      hub_->rounds_.erase(tag);
      hub_->deposited_.erase(tag);
      hub_->taken_.erase(tag);
    }
    return Status::Ok();
  }
  void SetEgressRate(double) override {}
  std::vector<exchange::PeerLinkStats> stats() const override {
    exchange::PeerLinkStats s;
    s.bytes_sent = sent_;
    s.up = true;
    return {s};
  }
  int num_clusters() const override { return hub_->clusters_; }

 private:
  bool Delivered(size_t from, uint32_t tag) const {
    return static_cast<int>(from) == cluster_ || !hub_->deliver_ ||
           hub_->deliver_(static_cast<int>(from), cluster_, tag);
  }
  // Every delivered payload of round `tag` is deposited.
  bool Ready(uint32_t tag) REQUIRES(hub_->mu_) {
    const std::vector<bool>& deposited = hub_->deposited_[tag];
    for (size_t c = 0; c < deposited.size(); ++c) {
      if (Delivered(c, tag) && !deposited[c]) return false;
    }
    return true;
  }

  MeshHub* hub_;  // outlives the member (test scope)
  int cluster_;
  uint64_t sent_ = 0;
};

std::unique_ptr<exchange::WanMesh> MeshHub::Member(int cluster) { return std::make_unique<FakeMesh>(this, cluster); }

}  // namespace stella::exchange::testing
