#include "runtime/exchange/dense_allreduce.h"

#include <cstring>
#include <numeric>

namespace stella::exchange {
namespace {

// The round info rides as one float after the data: workers * 4 + flags,
// exact in a float for any realistic job.
constexpr uint32_t kDegraded = 1;
constexpr uint32_t kPeerLeft = 2;

}  // namespace

DenseAllReduce::DenseAllReduce(IntraClusterGroup* group, WanMesh* mesh, std::vector<int> cluster_workers)
    : group_(group), mesh_(mesh), cluster_workers_(std::move(cluster_workers)) {
  world_size_ = std::accumulate(cluster_workers_.begin(), cluster_workers_.end(), 0);
  STELLA_CHECK(group_ != nullptr && !cluster_workers_.empty() && world_size_ >= 1);
  STELLA_CHECK(mesh_ == nullptr || mesh_->num_clusters() == static_cast<int>(cluster_workers_.size()));
}

Status DenseAllReduce::AllReduceMean(float* data, size_t n, uint32_t round, Clock::TimePoint deadline,
                                     DenseRoundInfo* info) {
  // Only multi-cluster jobs need the info slot; every worker knows which.
  const bool multi = cluster_workers_.size() > 1;
  float* buf = data;
  size_t len = n;
  if (multi) {
    scratch_.resize(n + 1);
    std::memcpy(scratch_.data(), data, n * sizeof(float));
    scratch_[n] = 0.0f;
    buf = scratch_.data();
    len = n + 1;
  }
  STELLA_RETURN_IF_ERROR(group_->AllReduceSum(buf, len));
  if (group_->rank() == 0) {
    int workers = world_size_;
    uint32_t flags = 0;
    if (multi) {
      if (mesh_ == nullptr) {
        return InternalError("dense all-reduce: the gateway of a multi-cluster job has no WAN mesh");
      }
      send_buffer_.resize(n * sizeof(float));
      std::memcpy(send_buffer_.data(), buf, send_buffer_.size());
      STELLA_RETURN_IF_ERROR(mesh_->AllGather(round, send_buffer_, &received_, deadline));
      // Sum in cluster order so every gateway computes the same bits.
      std::vector<float> total(n, 0.0f);
      workers = 0;
      for (size_t c = 0; c < received_.payloads.size(); ++c) {
        if (received_.outcome[c] != PeerRound::kReceived) continue;
        if (received_.payloads[c].size() != n * sizeof(float)) {
          return DataLossError("dense all-reduce round " + std::to_string(round) + ": cluster " + std::to_string(c) +
                               " sent " + std::to_string(received_.payloads[c].size()) + " bytes, expected " +
                               std::to_string(n * sizeof(float)));
        }
        const float* src = reinterpret_cast<const float*>(received_.payloads[c].data());
        for (size_t i = 0; i < n; ++i) total[i] += src[i];
        workers += cluster_workers_[c];
      }
      std::memcpy(buf, total.data(), n * sizeof(float));
      if (!received_.complete()) flags |= kDegraded;
      if (received_.any_left()) flags |= kPeerLeft;
      buf[n] = static_cast<float>(static_cast<uint32_t>(workers) * 4 + flags);
    }
    // Scaled once, here, and broadcast: the same bits on every worker.
    const float inv = 1.0f / static_cast<float>(workers);
    for (size_t i = 0; i < n; ++i) buf[i] *= inv;
  }
  STELLA_RETURN_IF_ERROR(group_->Broadcast(buf, len, 0));
  DenseRoundInfo local;
  local.workers = world_size_;
  if (multi) {
    std::memcpy(data, buf, n * sizeof(float));
    const auto word = static_cast<uint32_t>(buf[n]);
    local.workers = static_cast<int>(word / 4);
    local.degraded = (word & kDegraded) != 0;
    local.peer_left = (word & kPeerLeft) != 0;
  }
  if (info != nullptr) *info = local;
  return Status::Ok();
}

}  // namespace stella::exchange
