#include "runtime/pipeline/cpu_optimizer.h"

#include <algorithm>
#include <string>

#include "runtime/compress/compressor.h"

namespace stella::pipeline {
namespace {

// True if `blocks` is exactly 0, 1, ..., num_blocks - 1.
bool CoversAllBlocks(const std::vector<uint32_t>& blocks, uint64_t num_blocks) {
  if (blocks.size() != num_blocks) return false;
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (blocks[b] != b) return false;
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<CpuOptimizer>> CpuOptimizer::Create(const CpuOptimizerOptions& options,
                                                             const float* initial_parameters) {
  if (options.tensor_sizes.empty()) return InvalidArgumentError("cpu optimizer: the model has no tensors");
  auto o = std::unique_ptr<CpuOptimizer>(new CpuOptimizer());
  o->optimizer_options_ = options.optimizer;
  o->sizes_ = options.tensor_sizes;
  size_t total = 0;
  for (size_t i = 0; i < options.tensor_sizes.size(); ++i) {
    const int64_t n = options.tensor_sizes[i];
    if (n < 0)
      return InvalidArgumentError("cpu optimizer: tensor " + std::to_string(i) + " has size " + std::to_string(n));
    auto t = optim::TensorOptimizer::Create(options.optimizer, static_cast<size_t>(n));
    if (!t.ok()) return t.status().WithContext("cpu optimizer");
    o->optimizers_.push_back(std::move(t).value());
    total += static_cast<size_t>(n);
  }
  o->offsets_.assign(1, 0);
  for (int64_t n : options.tensor_sizes) o->offsets_.push_back(o->offsets_.back() + static_cast<size_t>(n));
  o->master_.assign(initial_parameters, initial_parameters + total);
  const auto& t0 = *o->optimizers_.front();
  o->state_floats_per_element_ = 1 + (t0.first_moment().empty() ? 0 : 1) + (t0.second_moment().empty() ? 0 : 1);
  if (options.threads > 1) {
    optim::ThreadPool::Options po;
    po.num_threads = options.threads;
    po.name = "stella-cpuopt";
    STELLA_ASSIGN_OR_RETURN(o->pool_, optim::ThreadPool::Create(po));
  }
  return o;
}

std::vector<optim::OptimizerState> CpuOptimizer::SaveState() const {
  std::vector<optim::OptimizerState> out;
  out.reserve(optimizers_.size());
  for (const auto& t : optimizers_) out.push_back(t->SaveState());
  return out;
}

Status CpuOptimizer::LoadState(const std::vector<float>& master, std::vector<optim::OptimizerState> states) {
  if (master.size() != master_.size()) {
    return InvalidArgumentError("cpu optimizer: the saved master copy holds " + std::to_string(master.size()) +
                                " parameters, the model has " + std::to_string(master_.size()));
  }
  if (states.size() != optimizers_.size()) {
    return InvalidArgumentError("cpu optimizer: saved state for " + std::to_string(states.size()) +
                                " tensors, the model has " + std::to_string(optimizers_.size()));
  }
  // Load into fresh optimizers first, so a bad tensor changes nothing.
  std::vector<std::unique_ptr<optim::TensorOptimizer>> restored;
  for (size_t i = 0; i < states.size(); ++i) {
    auto t = optim::TensorOptimizer::Create(optimizer_options_, static_cast<size_t>(sizes_[i]));
    if (!t.ok()) return t.status().WithContext("cpu optimizer");
    Status st = (*t)->LoadState(std::move(states[i]));
    if (!st.ok()) return st.WithContext("cpu optimizer: tensor " + std::to_string(i));
    restored.push_back(std::move(t).value());
  }
  optimizers_ = std::move(restored);
  master_ = master;
  return Status::Ok();
}

Status CpuOptimizer::Apply(const float* gradient, const std::vector<std::vector<uint32_t>>& touched,
                           uint32_t block_size) {
  return ApplyTensors(0, optimizers_.size(), gradient, touched, block_size);
}

Status CpuOptimizer::ApplyTensors(size_t first, size_t end, const float* gradient,
                                  const std::vector<std::vector<uint32_t>>& touched, uint32_t block_size) {
  if (first > end || end > optimizers_.size()) {
    return InvalidArgumentError("cpu optimizer: tensor range [" + std::to_string(first) + ", " + std::to_string(end) +
                                ") outside the " + std::to_string(optimizers_.size()) + " tensors");
  }
  if (touched.size() != end - first) {
    return InvalidArgumentError("cpu optimizer: " + std::to_string(touched.size()) + " touched lists for " +
                                std::to_string(end - first) + " tensors");
  }
  if (block_size == 0) return InvalidArgumentError("cpu optimizer: block size 0");
  size_t offset = 0;  // relative to tensor `first`
  for (size_t i = first; i < end; ++i) {
    const size_t n = static_cast<size_t>(sizes_[i]);
    float* param = master_.data() + offsets_[i];
    const float* grad = gradient + offset;
    const auto& blocks = touched[i - first];
    if (n > 0 && CoversAllBlocks(blocks, compress::NumBlocks(n, block_size))) {
      optimizers_[i]->StepDense(param, grad, pool_.get());
    } else {
      // Pack the touched blocks' gradient in the layout StepSparse reads.
      values_.clear();
      for (uint32_t b : blocks) {
        const size_t start = static_cast<size_t>(b) * block_size;
        if (start >= n) break;  // StepSparse rejects it below
        const size_t end = std::min(n, start + block_size);
        values_.insert(values_.end(), grad + start, grad + end);
      }
      Status st =
          optimizers_[i]->StepSparse(param, blocks.data(), blocks.size(), block_size, values_.data(), pool_.get());
      if (!st.ok()) return st.WithContext("cpu optimizer: tensor " + std::to_string(i));
    }
    offset += n;
  }
  return Status::Ok();
}

void CpuOptimizer::SaveRangeState(size_t first, size_t end, float* out) const {
  STELLA_CHECK(first <= end && end <= optimizers_.size());
  for (size_t i = first; i < end; ++i) {
    const size_t n = static_cast<size_t>(sizes_[i]);
    out = std::copy(master_.data() + offsets_[i], master_.data() + offsets_[i] + n, out);
    const auto& t = *optimizers_[i];
    out = std::copy(t.first_moment().begin(), t.first_moment().end(), out);
    out = std::copy(t.second_moment().begin(), t.second_moment().end(), out);
  }
}

Status CpuOptimizer::LoadRangeState(size_t first, size_t end, const float* in) {
  if (first > end || end > optimizers_.size()) {
    return InvalidArgumentError("cpu optimizer: state range [" + std::to_string(first) + ", " + std::to_string(end) +
                                ") outside the " + std::to_string(optimizers_.size()) + " tensors");
  }
  for (size_t i = first; i < end; ++i) {
    const size_t n = static_cast<size_t>(sizes_[i]);
    std::copy(in, in + n, master_.data() + offsets_[i]);
    in += n;
    optim::OptimizerState state = optimizers_[i]->SaveState();
    for (auto* buffer : {&state.first_moment, &state.second_moment}) {
      std::copy(in, in + buffer->size(), buffer->begin());
      in += buffer->size();
    }
    Status st = optimizers_[i]->LoadState(std::move(state));
    if (!st.ok()) return st.WithContext("cpu optimizer: tensor " + std::to_string(i));
  }
  return Status::Ok();
}

}  // namespace stella::pipeline
