#include "runtime/pipeline/sparse_sync.h"

#include <algorithm>
#include <string>

#include "runtime/pipeline/block_mask.h"

namespace stella::pipeline {

StatusOr<std::unique_ptr<SparseSync>> SparseSync::Create(const SparseSyncOptions& options,
                                                         exchange::IntraClusterGroup* group, exchange::WanMesh* mesh,
                                                         const float* initial_parameters) {
  if (group == nullptr) return InvalidArgumentError("sparse sync: no intra-cluster group");
  if (!(options.density > 0.0 && options.density <= 1.0)) {
    return InvalidArgumentError("sparse sync: density must be in (0, 1], got " + std::to_string(options.density));
  }
  auto s = std::unique_ptr<SparseSync>(new SparseSync());
  s->options_ = options;
  s->group_ = group;
  s->density_.store(options.density);
  s->block_size_ = CompressorBlockSize(options.compressor.kind);
  CpuOptimizerOptions oo;
  oo.tensor_sizes = options.tensor_sizes;
  oo.optimizer = options.optimizer;
  oo.threads = options.optimizer_threads;
  STELLA_ASSIGN_OR_RETURN(s->optimizer_, CpuOptimizer::Create(oo, initial_parameters));
  s->num_parameters_ = s->optimizer_->num_parameters();
  if (group->rank() == 0) {
    SparseExchangeOptions xo;
    xo.tensor_sizes = options.tensor_sizes;
    xo.compressor = options.compressor;
    xo.precision = options.precision;
    xo.error_feedback = options.error_feedback;
    xo.momentum_correction = options.momentum_correction;
    xo.num_control = options.num_control;
    xo.world_size = options.world_size;
    xo.cluster_index = mesh == nullptr ? 0 : options.cluster_index;
    xo.clock = options.clock;
    STELLA_ASSIGN_OR_RETURN(s->exchange_, SparseExchange::Create(xo, mesh));
  }
  s->mask_words_ = BlockMaskWords(options.tensor_sizes, s->block_size_);
  s->message_.resize(s->num_parameters_ + options.num_control + s->mask_words_);
  return s;
}

Status SparseSync::Step(uint32_t step, float* buffer, SyncStepStats* stats) {
  const Clock& clock = *options_.clock;
  SyncStepStats local;
  const size_t n = num_parameters_;
  const size_t c = options_.num_control;
  const std::string where = "step " + std::to_string(step) + " ";

  const auto t0 = clock.Now();
  Status st = group_->AllReduceSum(buffer, n + c);
  if (!st.ok()) return st.WithContext(where + "intra-cluster gradient sum");
  const auto t1 = clock.Now();

  if (exchange_ != nullptr) {
    ExchangeStats xs;
    STELLA_RETURN_IF_ERROR(exchange_->Exchange(step, density_.load(), buffer, buffer + n, message_.data(),
                                               message_.data() + n, &touched_, &xs,
                                               clock.Now() + options_.timeout));
    PackBlockMask(touched_, options_.tensor_sizes, block_size_, message_.data() + n + c);
    local.compress_seconds = xs.compress_seconds;
    local.wan_seconds = xs.wan_seconds + xs.aggregate_seconds;
    local.payload_bytes = xs.payload_bytes;
    local.wan_bytes_sent = xs.wan_bytes_sent;
  }
  const auto t2 = clock.Now();
  // Every member decodes the broadcast message, the gateway included, so all
  // of them run the optimizer on exactly the same inputs.
  st = group_->Broadcast(message_.data(), message_.size(), 0);
  if (!st.ok()) return st.WithContext(where + "intra-cluster broadcast of the aggregate");
  const auto t3 = clock.Now();

  st = UnpackBlockMask(message_.data() + n + c, options_.tensor_sizes, block_size_, &touched_);
  if (!st.ok()) return st.WithContext(where + "aggregate from the gateway");
  STELLA_RETURN_IF_ERROR(optimizer_->Apply(message_.data(), touched_, block_size_));
  std::copy(message_.data() + n, message_.data() + n + c, buffer + n);
  for (size_t i = 0; i < touched_.size(); ++i) {
    const size_t size = static_cast<size_t>(options_.tensor_sizes[i]);
    for (uint32_t b : touched_[i]) {
      const size_t start = static_cast<size_t>(b) * block_size_;
      local.touched_elements += std::min<size_t>(block_size_, size - start);
    }
  }
  const auto t4 = clock.Now();

  local.allreduce_seconds = SecondsBetween(t0, t1);
  local.broadcast_seconds = SecondsBetween(t2, t3);
  local.optimizer_seconds = SecondsBetween(t3, t4);
  if (stats != nullptr) *stats = local;
  return Status::Ok();
}

}  // namespace stella::pipeline
