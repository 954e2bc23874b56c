#include "runtime/exchange/dense_allreduce.h"

#include <cstring>

namespace stella::exchange {

DenseAllReduce::DenseAllReduce(IntraClusterGroup* group, WanMesh* mesh, int world_size)
    : group_(group), mesh_(mesh), world_size_(world_size) {
  STELLA_CHECK(group_ != nullptr && world_size_ >= 1);
}

Status DenseAllReduce::AllReduceMean(float* data, size_t n, uint32_t round, Clock::TimePoint deadline) {
  STELLA_RETURN_IF_ERROR(group_->AllReduceSum(data, n));
  if (group_->rank() == 0 && mesh_ != nullptr && mesh_->num_clusters() > 1) {
    send_buffer_.resize(n * sizeof(float));
    std::memcpy(send_buffer_.data(), data, send_buffer_.size());
    STELLA_RETURN_IF_ERROR(mesh_->AllGather(round, send_buffer_, &received_, deadline));
    // Sum in cluster order so every gateway computes the same bits.
    std::vector<float> total(n, 0.0f);
    for (size_t c = 0; c < received_.size(); ++c) {
      if (received_[c].size() != n * sizeof(float)) {
        return DataLossError("dense all-reduce round " + std::to_string(round) + ": cluster " + std::to_string(c) +
                             " sent " + std::to_string(received_[c].size()) + " bytes, expected " +
                             std::to_string(n * sizeof(float)));
      }
      const float* src = reinterpret_cast<const float*>(received_[c].data());
      for (size_t i = 0; i < n; ++i) total[i] += src[i];
    }
    std::memcpy(data, total.data(), n * sizeof(float));
  }
  STELLA_RETURN_IF_ERROR(group_->Broadcast(data, n, 0));
  const float inv = 1.0f / static_cast<float>(world_size_);
  for (size_t i = 0; i < n; ++i) data[i] *= inv;
  return Status::Ok();
}

}  // namespace stella::exchange
