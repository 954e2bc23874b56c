#include "runtime/pipeline/sparse_sync.h"

#include <algorithm>
#include <string>

#include "runtime/pipeline/block_mask.h"

namespace stella::pipeline {
namespace {

// The last float of the broadcast message: the round's flags, small integers
// (exact in a float).
constexpr uint32_t kRoundDegraded = 1;
constexpr uint32_t kRoundResync = 2;
constexpr uint32_t kRoundPeerLeft = 4;

}  // namespace

StatusOr<std::unique_ptr<SparseSync>> SparseSync::Create(const SparseSyncOptions& options,
                                                         exchange::IntraClusterGroup* group, exchange::WanMesh* mesh,
                                                         const float* initial_parameters) {
  if (group == nullptr) return InvalidArgumentError("sparse sync: no intra-cluster group");
  auto s = std::unique_ptr<SparseSync>(new SparseSync());
  s->options_ = options;
  s->group_ = group;
  s->block_size_ = CompressorBlockSize(options.compression.compressor.kind);
  CpuOptimizerOptions oo;
  oo.tensor_sizes = options.tensor_sizes;
  oo.optimizer = options.optimizer;
  oo.threads = options.optimizer_threads;
  STELLA_ASSIGN_OR_RETURN(s->optimizer_, CpuOptimizer::Create(oo, initial_parameters));
  s->num_parameters_ = s->optimizer_->num_parameters();
  s->gateway_ = group->rank() == 0;

  const size_t num_tensors = options.tensor_sizes.size();
  std::vector<std::pair<size_t, size_t>> buckets = options.buckets;
  if (buckets.empty()) buckets.emplace_back(0, num_tensors);
  // The buckets must partition the tensors exactly once.
  std::vector<int> covered(num_tensors, 0);
  for (const auto& [first, end] : buckets) {
    if (first >= end || end > num_tensors) {
      return InvalidArgumentError("sparse sync: bucket [" + std::to_string(first) + ", " + std::to_string(end) +
                                  ") is empty or outside the " + std::to_string(num_tensors) + " tensors");
    }
    for (size_t i = first; i < end; ++i) ++covered[i];
  }
  for (size_t i = 0; i < num_tensors; ++i) {
    if (covered[i] != 1) {
      return InvalidArgumentError("sparse sync: tensor " + std::to_string(i) + " is in " + std::to_string(covered[i]) +
                                  " buckets, expected exactly 1");
    }
  }
  for (const auto& [first, end] : buckets) {
    Range r;
    r.first = first;
    r.end = end;
    r.sizes.assign(options.tensor_sizes.begin() + static_cast<std::ptrdiff_t>(first),
                   options.tensor_sizes.begin() + static_cast<std::ptrdiff_t>(end));
    for (int64_t n : r.sizes) r.elements += static_cast<size_t>(n);
    r.num_control = first == 0 ? options.num_control : 0;
    if (s->gateway_) {
      SparseExchangeOptions xo;
      xo.tensor_sizes = r.sizes;
      xo.compression = options.compression;
      xo.num_control = r.num_control;
      xo.world_size = options.world_size;
      xo.cluster_index = mesh == nullptr ? 0 : options.cluster_index;
      if (mesh != nullptr) xo.cluster_workers = options.cluster_workers;
      xo.state_floats = options.resync ? r.elements * s->optimizer_->state_floats_per_element() : 0;
      xo.clock = options.clock;
      STELLA_ASSIGN_OR_RETURN(r.exchange, SparseExchange::Create(xo, mesh));
    }
    r.mask_words = BlockMaskWords(r.sizes, s->block_size_);
    r.sum.resize(r.elements + r.num_control);
    r.message.resize(r.elements + r.num_control + r.mask_words + 1);
    if (options.resync) r.state_floats = r.elements * s->optimizer_->state_floats_per_element();
    s->ranges_.push_back(std::move(r));
  }
  return s;
}

SparseSyncState SparseSync::SaveState() const {
  SparseSyncState out;
  out.master.assign(parameters(), parameters() + num_parameters());
  out.optimizer = optimizer_->SaveState();
  if (gateway_) {
    out.exchange.resize(options_.tensor_sizes.size());
    for (const Range& r : ranges_) {
      std::vector<TensorExchangeState> part = r.exchange->SaveState();
      for (size_t i = r.first; i < r.end; ++i) out.exchange[i] = std::move(part[i - r.first]);
    }
  }
  return out;
}

Status SparseSync::LoadState(const SparseSyncState& state) {
  const size_t tensors = options_.tensor_sizes.size();
  if (gateway_ && state.exchange.size() != tensors) {
    return InvalidArgumentError("sparse sync: this worker is its cluster's gateway but the saved state has " +
                                std::to_string(state.exchange.size()) + " tensors of exchange state, expected " +
                                std::to_string(tensors));
  }
  if (!gateway_ && !state.exchange.empty()) {
    return InvalidArgumentError(
        "sparse sync: the saved state holds a gateway's exchange state, this worker is not a gateway");
  }
  STELLA_RETURN_IF_ERROR(optimizer_->LoadState(state.master, state.optimizer));
  if (gateway_) {
    for (Range& r : ranges_) {
      std::vector<TensorExchangeState> part(state.exchange.begin() + static_cast<std::ptrdiff_t>(r.first),
                                            state.exchange.begin() + static_cast<std::ptrdiff_t>(r.end));
      Status st = r.exchange->LoadState(part);
      if (!st.ok())
        return st.WithContext("sparse sync: bucket of tensors [" + std::to_string(r.first) + ", " +
                              std::to_string(r.end) + ")");
    }
  }
  return Status::Ok();
}

Status SparseSync::Step(uint32_t step, double density, float* buffer, SyncStepStats* stats) {
  STELLA_CHECK(ranges_.size() == 1);
  return RunRange(exchange::kFirstTrainingRoundTag + step, density, ranges_[0], buffer, buffer + num_parameters_,
                  stats);
}

Status SparseSync::StepBucket(uint32_t step, size_t bucket, double density, float* gradient, float* control,
                              SyncStepStats* stats) {
  STELLA_CHECK(bucket < ranges_.size());
  // Unique per (step, bucket), so a frame can never be taken for another
  // bucket's (the mesh matches frames by tag).
  const uint32_t tag =
      exchange::kFirstTrainingRoundTag + static_cast<uint32_t>(static_cast<uint64_t>(step) * ranges_.size() + bucket);
  Status st = RunRange(tag, density, ranges_[bucket], gradient, control, stats);
  if (!st.ok()) return st.WithContext("bucket " + std::to_string(bucket));
  return st;
}

Status SparseSync::RunRange(uint32_t tag, double density, Range& r, float* gradient, float* control,
                            SyncStepStats* stats) {
  if (!(density > 0.0 && density <= 1.0)) {
    return InvalidArgumentError("sparse sync: density must be in (0, 1], got " + std::to_string(density));
  }
  const Clock& clock = *options_.clock;
  SyncStepStats local;
  const size_t n = r.elements;
  const size_t c = r.num_control;
  const std::string where = "step " + std::to_string(tag) + " ";
  if (c > 0) STELLA_CHECK(control != nullptr);

  const auto t0 = clock.Now();
  // One collective for gradient and control together.
  std::copy(gradient, gradient + n, r.sum.data());
  if (c > 0) std::copy(control, control + c, r.sum.data() + n);
  Status st = group_->AllReduceSum(r.sum.data(), n + c);
  if (!st.ok()) return st.WithContext(where + "intra-cluster gradient sum");
  const auto t1 = clock.Now();

  float& flags_slot = r.message.back();
  if (r.exchange != nullptr) {
    ExchangeStats xs;
    float* state = nullptr;
    if (r.exchange->wants_state() && r.state_floats > 0) {
      r.state.resize(r.state_floats);
      optimizer_->SaveRangeState(r.first, r.end, r.state.data());
      state = r.state.data();
    }
    STELLA_RETURN_IF_ERROR(r.exchange->Exchange(tag, density, r.sum.data(), r.sum.data() + n, r.message.data(),
                                                r.message.data() + n, &r.touched, &xs, clock.Now() + options_.timeout,
                                                state, state));
    PackBlockMask(r.touched, r.sizes, block_size_, r.message.data() + n + c);
    uint32_t flags = 0;
    if (!xs.missing.empty()) flags |= kRoundDegraded;
    if (xs.resynced) flags |= kRoundResync;
    if (xs.peer_left) flags |= kRoundPeerLeft;
    flags_slot = static_cast<float>(flags);
    local.compress_seconds = xs.compress_seconds;
    local.wan_seconds = xs.wan_seconds + xs.aggregate_seconds;
    local.payload_bytes = xs.payload_bytes;
    local.wan_bytes_sent = xs.wan_bytes_sent;
  }
  const auto t2 = clock.Now();
  // Every member decodes the broadcast message, the gateway included, so all
  // of them run the optimizer on exactly the same inputs.
  st = group_->Broadcast(r.message.data(), r.message.size(), 0);
  if (!st.ok()) return st.WithContext(where + "intra-cluster broadcast of the aggregate");
  const auto flags = static_cast<uint32_t>(flags_slot);
  local.degraded = (flags & kRoundDegraded) != 0;
  local.resynced = (flags & kRoundResync) != 0;
  local.peer_left = (flags & kRoundPeerLeft) != 0;
  if (local.resynced) {
    // Every member installs the clusters' averaged state, then applies this
    // round's update on top, as the gateway does.
    STELLA_CHECK(r.state_floats > 0);
    r.state.resize(r.state_floats);
    st = group_->Broadcast(r.state.data(), r.state.size(), 0);
    if (!st.ok()) return st.WithContext(where + "intra-cluster broadcast of the resynchronized state");
    STELLA_RETURN_IF_ERROR(optimizer_->LoadRangeState(r.first, r.end, r.state.data()));
  }
  const auto t3 = clock.Now();

  st = UnpackBlockMask(r.message.data() + n + c, r.sizes, block_size_, &r.touched);
  if (!st.ok()) return st.WithContext(where + "aggregate from the gateway");
  STELLA_RETURN_IF_ERROR(optimizer_->ApplyTensors(r.first, r.end, r.message.data(), r.touched, block_size_));
  if (c > 0) std::copy(r.message.data() + n, r.message.data() + n + c, control);
  for (size_t i = 0; i < r.touched.size(); ++i) {
    const size_t size = static_cast<size_t>(r.sizes[i]);
    for (uint32_t b : r.touched[i]) {
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
