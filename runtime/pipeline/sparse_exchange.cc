#include "runtime/pipeline/sparse_exchange.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/compress/aggregate.h"

namespace stella::pipeline {
namespace {

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

void PutF32(std::vector<uint8_t>* out, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  PutU32(out, bits);
}

float GetF32(const uint8_t* p) {
  const uint32_t bits = GetU32(p);
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace

uint32_t CompressorBlockSize(const std::string& kind) {
  return kind == "cacheline" ? compress::kCachelineBlockSize : 1;
}

Status EncodePayload(uint32_t step, const float* control, size_t num_control,
                     const std::vector<compress::SparseGradient>& tensors, compress::ValuePrecision precision,
                     std::vector<uint8_t>* out, uint32_t flags, const float* state, size_t state_floats) {
  const bool has_state = (flags & kPayloadHasState) != 0;
  if (has_state && state == nullptr && state_floats > 0) {
    return InvalidArgumentError("payload flags announce state but none was given");
  }
  if (!has_state) state_floats = 0;
  size_t total = kPayloadHeaderSize + 4 * num_control + 8 + 4 * state_floats;
  for (const auto& t : tensors) total += 4 + compress::EncodedSize(t, precision);
  out->clear();
  out->reserve(total);
  PutU32(out, kPayloadMagic);
  PutU32(out, step);
  PutU32(out, static_cast<uint32_t>(tensors.size()));
  PutU32(out, static_cast<uint32_t>(num_control));
  for (size_t i = 0; i < num_control; ++i) PutF32(out, control[i]);
  PutU32(out, flags);
  PutU32(out, static_cast<uint32_t>(state_floats));
  std::vector<uint8_t> encoded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    Status st = compress::EncodeSparse(tensors[i], precision, &encoded);
    if (!st.ok()) return st.WithContext("tensor " + std::to_string(i));
    PutU32(out, static_cast<uint32_t>(encoded.size()));
    out->insert(out->end(), encoded.begin(), encoded.end());
  }
  const size_t at = out->size();
  out->resize(at + 4 * state_floats);
  if (state_floats > 0) std::memcpy(out->data() + at, state, 4 * state_floats);  // little-endian hosts only, as PutF32
  return Status::Ok();
}

StatusOr<DecodedPayload> DecodePayload(const uint8_t* data, size_t n, uint32_t step, const PayloadLayout& layout) {
  if (n < kPayloadHeaderSize) {
    return DataLossError("payload of " + std::to_string(n) + " bytes is shorter than its " +
                         std::to_string(kPayloadHeaderSize) + "-byte header");
  }
  if (GetU32(data) != kPayloadMagic) return DataLossError("payload has a bad magic number");
  if (GetU32(data + 4) != step) {
    return DataLossError("payload is for step " + std::to_string(GetU32(data + 4)) + ", expected step " +
                         std::to_string(step));
  }
  const uint32_t num_tensors = GetU32(data + 8);
  const uint32_t num_control = GetU32(data + 12);
  if (num_tensors != layout.tensor_sizes.size()) {
    return DataLossError("payload carries " + std::to_string(num_tensors) + " tensors, the model has " +
                         std::to_string(layout.tensor_sizes.size()));
  }
  if (num_control != layout.num_control) {
    return DataLossError("payload carries " + std::to_string(num_control) + " control values, expected " +
                         std::to_string(layout.num_control));
  }
  size_t pos = kPayloadHeaderSize;
  if (n - pos < size_t{4} * num_control) return DataLossError("payload truncated in its control section");
  DecodedPayload out;
  out.control.resize(num_control);
  for (size_t i = 0; i < num_control; ++i, pos += 4) {
    out.control[i] = GetF32(data + pos);
    if (!std::isfinite(out.control[i])) {
      return DataLossError("control value " + std::to_string(i) + " is not finite");
    }
  }
  if (n - pos < 8) return DataLossError("payload truncated in its flags");
  out.flags = GetU32(data + pos);
  const uint32_t state_floats = GetU32(data + pos + 4);
  pos += 8;
  if ((out.flags & ~(kPayloadDiverged | kPayloadHasState)) != 0) {
    return DataLossError("payload has unknown flags " + std::to_string(out.flags));
  }
  const bool has_state = (out.flags & kPayloadHasState) != 0;
  if (state_floats != (has_state ? layout.state_floats : 0)) {
    return DataLossError("payload carries " + std::to_string(state_floats) + " state floats, expected " +
                         std::to_string(has_state ? layout.state_floats : 0) +
                         (has_state ? "" : " (its flags announce no state)"));
  }
  out.tensors.reserve(num_tensors);
  for (uint32_t i = 0; i < num_tensors; ++i) {
    const std::string what = "tensor " + std::to_string(i);
    if (n - pos < 4) return DataLossError("payload truncated before " + what);
    const uint32_t len = GetU32(data + pos);
    pos += 4;
    if (n - pos < len) {
      return DataLossError(what + " claims " + std::to_string(len) + " bytes, only " + std::to_string(n - pos) +
                           " remain");
    }
    const uint64_t expected = static_cast<uint64_t>(layout.tensor_sizes[i]);
    compress::DecodeLimits limits;
    limits.expected_num_elements = expected;
    auto decoded = compress::DecodeSparse(data + pos, len, limits);
    if (!decoded.ok()) return decoded.status().WithContext(what);
    compress::SparseGradient g = std::move(decoded).value();
    // expected_num_elements 0 means "any" to the wire decoder; an empty
    // tensor must still be empty here.
    if (g.num_elements != expected) {
      return DataLossError(what + " has " + std::to_string(g.num_elements) + " elements, expected " +
                           std::to_string(expected));
    }
    if (g.block_size != layout.block_size) {
      return DataLossError(what + " uses block size " + std::to_string(g.block_size) + ", expected " +
                           std::to_string(layout.block_size) + " (all clusters must run the same compressor)");
    }
    for (size_t j = 0; j < g.values.size(); ++j) {
      if (!std::isfinite(g.values[j])) {
        return DataLossError(what + " value " + std::to_string(j) + " is not finite");
      }
    }
    out.tensors.push_back(std::move(g));
    pos += len;
  }
  if (n - pos < size_t{4} * state_floats) {
    return DataLossError("payload truncated in its state section: " + std::to_string(n - pos) + " bytes for " +
                         std::to_string(state_floats) + " floats");
  }
  out.state.resize(state_floats);
  for (size_t i = 0; i < state_floats; ++i, pos += 4) {
    out.state[i] = GetF32(data + pos);
    if (!std::isfinite(out.state[i])) return DataLossError("state value " + std::to_string(i) + " is not finite");
  }
  if (pos != n) return DataLossError("payload has " + std::to_string(n - pos) + " trailing bytes");
  return out;
}

SparseExchange::SparseExchange(const SparseExchangeOptions& options, exchange::WanMesh* mesh)
    : options_(options), mesh_(mesh) {}

StatusOr<std::unique_ptr<SparseExchange>> SparseExchange::Create(const SparseExchangeOptions& options,
                                                                 exchange::WanMesh* mesh) {
  if (options.tensor_sizes.empty()) return InvalidArgumentError("sparse exchange: the model has no tensors");
  if (options.world_size < 1) {
    return InvalidArgumentError("sparse exchange: world_size must be >= 1, got " + std::to_string(options.world_size));
  }
  const int clusters = mesh == nullptr ? 1 : mesh->num_clusters();
  if (options.cluster_index < 0 || options.cluster_index >= clusters) {
    return InvalidArgumentError("sparse exchange: cluster_index " + std::to_string(options.cluster_index) +
                                " out of range for " + std::to_string(clusters) + " clusters");
  }
  if (options.compression.momentum_correction != 0.0 && !options.compression.error_feedback) {
    return InvalidArgumentError("sparse exchange: momentum correction needs error feedback");
  }
  if (!options.cluster_workers.empty()) {
    int sum = 0;
    for (int w : options.cluster_workers) {
      if (w < 1) return InvalidArgumentError("sparse exchange: cluster_workers entries must be >= 1");
      sum += w;
    }
    if (static_cast<int>(options.cluster_workers.size()) != clusters || sum != options.world_size) {
      return InvalidArgumentError("sparse exchange: cluster_workers has " +
                                  std::to_string(options.cluster_workers.size()) + " entries summing to " +
                                  std::to_string(sum) + "; expected " + std::to_string(clusters) +
                                  " entries summing to world_size " + std::to_string(options.world_size));
    }
  }
  auto x = std::unique_ptr<SparseExchange>(new SparseExchange(options, mesh));
  x->layout_.tensor_sizes = options.tensor_sizes;
  x->layout_.num_control = options.num_control;
  x->layout_.block_size = CompressorBlockSize(options.compression.compressor.kind);
  x->layout_.state_floats = options.state_floats;
  for (int c = 0; c < clusters; ++c) {
    x->cluster_workers_.push_back(options.cluster_workers.empty() ? static_cast<double>(options.world_size) / clusters
                                                                  : options.cluster_workers[static_cast<size_t>(c)]);
  }
  for (size_t i = 0; i < options.tensor_sizes.size(); ++i) {
    const int64_t size = options.tensor_sizes[i];
    if (size < 0 || static_cast<uint64_t>(size) > compress::kMaxCompressElements) {
      return InvalidArgumentError("sparse exchange: tensor " + std::to_string(i) + " has " + std::to_string(size) +
                                  " elements");
    }
    x->total_elements_ += size;
    compress::CompressorOptions co = options.compression.compressor;
    // Distinct random-k streams per tensor and cluster: clusters that picked
    // the same indices would waste the union.
    co.seed = options.compression.compressor.seed + 1000003ull * static_cast<uint64_t>(options.cluster_index) + i;
    auto c = compress::CreateCompressor(co);
    if (!c.ok()) return c.status().WithContext("sparse exchange");
    x->compressors_.push_back(std::move(c).value());
    if (options.compression.error_feedback) {
      compress::ErrorFeedbackOptions eo;
      eo.num_elements = static_cast<size_t>(size);
      eo.momentum = options.compression.momentum_correction;
      auto ef = compress::ErrorFeedback::Create(eo);
      if (!ef.ok()) return ef.status().WithContext("sparse exchange");
      x->feedback_.push_back(std::move(ef).value());
    }
  }
  x->selected_.resize(options.tensor_sizes.size());
  return x;
}

std::vector<TensorExchangeState> SparseExchange::SaveState() const {
  std::vector<TensorExchangeState> out(compressors_.size());
  for (size_t i = 0; i < compressors_.size(); ++i) {
    out[i].compressor = compressors_[i]->SaveState();
    if (!feedback_.empty()) {
      const compress::ErrorFeedback& f = *feedback_[i];
      out[i].residual.assign(f.residual(), f.residual() + f.num_elements());
      out[i].velocity = f.velocity();
    }
  }
  return out;
}

Status SparseExchange::LoadState(const std::vector<TensorExchangeState>& state) {
  if (state.size() != compressors_.size()) {
    return InvalidArgumentError("sparse exchange: saved state for " + std::to_string(state.size()) +
                                " tensors, expected " + std::to_string(compressors_.size()));
  }
  for (size_t i = 0; i < state.size(); ++i) {
    Status st = compressors_[i]->LoadState(state[i].compressor);
    if (st.ok() && !feedback_.empty()) st = feedback_[i]->LoadState(state[i].residual, state[i].velocity);
    if (st.ok() && feedback_.empty() && !state[i].residual.empty()) {
      st = InvalidArgumentError("holds an error-feedback residual but error feedback is off");
    }
    if (!st.ok()) return st.WithContext("sparse exchange: tensor " + std::to_string(i));
  }
  return Status::Ok();
}

Status SparseExchange::Exchange(uint32_t step, double density, float* cluster_sum, const float* control,
                                float* aggregate, float* control_out, std::vector<std::vector<uint32_t>>* touched,
                                ExchangeStats* stats, Clock::TimePoint deadline, const float* state, float* state_out) {
  const Clock& clock = *options_.clock;
  ExchangeStats local;
  const auto t0 = clock.Now();

  // 1. Error feedback + selection per tensor, values rounded to the wire
  // precision BEFORE the residual update so rounding error is fed back too.
  int64_t offset = 0;
  for (size_t i = 0; i < compressors_.size(); ++i) {
    const size_t n = static_cast<size_t>(options_.tensor_sizes[i]);
    float* g = cluster_sum + offset;
    if (!feedback_.empty()) feedback_[i]->Accumulate(g, g, n);
    Status st = compressors_[i]->Compress(g, n, density, &selected_[i]);
    if (!st.ok()) {
      // Restore the Accumulate/Update alternation: nothing was sent.
      if (!feedback_.empty()) {
        compress::SparseGradient none;
        none.num_elements = n;
        none.block_size = layout_.block_size;
        feedback_[i]->Update(none);
      }
      return st.WithContext("step " + std::to_string(step) + " compressing tensor " + std::to_string(i));
    }
    compress::RoundValues(&selected_[i], options_.compression.precision);
    if (!feedback_.empty()) feedback_[i]->Update(selected_[i]);
    local.sent_elements += selected_[i].values.size();
    offset += options_.tensor_sizes[i];
  }
  // A diverged gateway says so, and carries its state when it can.
  uint32_t flags = diverged_ ? kPayloadDiverged : 0;
  const bool carry_state = wants_state() && state != nullptr && state_out != nullptr;
  if (carry_state) flags |= kPayloadHasState;
  STELLA_RETURN_IF_ERROR(EncodePayload(step, control, options_.num_control, selected_, options_.compression.precision,
                                       &mine_, flags, state, layout_.state_floats));
  local.payload_bytes = mine_.size();
  const auto t1 = clock.Now();

  // 2. The WAN round (skipped by single-cluster jobs).
  std::vector<const std::vector<uint8_t>*> payloads;  // present ones, cluster order
  std::vector<size_t> present;                        // their clusters
  if (mesh_ != nullptr && mesh_->num_clusters() > 1) {
    Status st = mesh_->AllGather(step, mine_, &gathered_, deadline);
    if (!st.ok()) return st.WithContext("step " + std::to_string(step) + " WAN all-gather");
    if (gathered_.payloads.size() != static_cast<size_t>(mesh_->num_clusters()) ||
        gathered_.outcome.size() != gathered_.payloads.size()) {
      return InternalError("WAN all-gather returned " + std::to_string(gathered_.payloads.size()) + " payloads for " +
                           std::to_string(mesh_->num_clusters()) + " clusters");
    }
    for (size_t c = 0; c < gathered_.payloads.size(); ++c) {
      if (gathered_.outcome[c] != exchange::PeerRound::kReceived) continue;
      payloads.push_back(&gathered_.payloads[c]);
      present.push_back(c);
    }
    local.missing = gathered_.missing();
    local.peer_left = gathered_.any_left();
    // Sent to the peers whose link was up (a down or departed peer got nothing).
    size_t reached = 0;
    for (size_t c = 0; c < gathered_.outcome.size(); ++c) {
      const auto o = gathered_.outcome[c];
      if (static_cast<int>(c) != options_.cluster_index && o != exchange::PeerRound::kLinkDown &&
          o != exchange::PeerRound::kPeerLeft) {
        ++reached;
      }
    }
    local.wan_bytes_sent = static_cast<uint64_t>(mine_.size()) * reached;
  } else {
    payloads.push_back(&mine_);
    present.push_back(static_cast<size_t>(options_.cluster_index));
  }
  const auto t2 = clock.Now();

  // 3. Decode everything first (a bad peer fails the step before any output
  // is written), then sum in cluster order.
  std::vector<DecodedPayload> decoded;
  decoded.reserve(payloads.size());
  for (size_t k = 0; k < payloads.size(); ++k) {
    auto d = DecodePayload(payloads[k]->data(), payloads[k]->size(), step, layout_);
    if (!d.ok()) {
      return d.status().WithContext("step " + std::to_string(step) + ": payload of cluster " +
                                    std::to_string(present[k]));
    }
    decoded.push_back(std::move(d).value());
  }
  std::fill(aggregate, aggregate + total_elements_, 0.0f);
  std::fill(control_out, control_out + options_.num_control, 0.0f);
  touched->assign(compressors_.size(), {});
  for (const auto& d : decoded) {
    for (size_t k = 0; k < options_.num_control; ++k) control_out[k] += d.control[k];
    offset = 0;
    for (size_t i = 0; i < d.tensors.size(); ++i) {
      const size_t n = static_cast<size_t>(options_.tensor_sizes[i]);
      STELLA_RETURN_IF_ERROR(compress::AddSparseTo(d.tensors[i], 1.0f, aggregate + offset, n));
      auto& u = (*touched)[i];
      u.insert(u.end(), d.tensors[i].indices.begin(), d.tensors[i].indices.end());
      offset += options_.tensor_sizes[i];
    }
  }
  if (decoded.size() > 1) {
    for (auto& u : *touched) {
      std::sort(u.begin(), u.end());
      u.erase(std::unique(u.begin(), u.end()), u.end());
    }
  }
  // The same float multiplication DenseAllReduce does after its sum; a
  // partial round averages over the workers whose gradients it holds.
  double workers = 0;
  for (size_t c : present) workers += cluster_workers_[c];
  const bool complete = local.missing.empty();
  const float inv = complete ? 1.0f / static_cast<float>(options_.world_size) : static_cast<float>(1.0 / workers);
  local.present_workers = complete ? options_.world_size : static_cast<int>(std::lround(workers));
  for (int64_t e = 0; e < total_elements_; ++e) aggregate[e] *= inv;
  for (size_t k = 0; k < options_.num_control; ++k) control_out[k] *= inv;

  // 4. Resynchronization: decided from the round's payloads alone, so every
  // gateway that saw the whole round decides alike.
  bool all_state = complete && layout_.state_floats > 0;
  bool any_diverged = false;
  for (const auto& d : decoded) {
    if ((d.flags & kPayloadHasState) == 0) all_state = false;
    if ((d.flags & kPayloadDiverged) != 0) any_diverged = true;
  }
  if (all_state) {
    // Weighted by workers, summed in cluster order: the same bits everywhere.
    // Every payload's state was validated to be state_floats finite floats.
    std::vector<double> sum(layout_.state_floats, 0.0);
    for (size_t k = 0; k < decoded.size(); ++k) {
      const double w = cluster_workers_[present[k]];
      const float* src = decoded[k].state.data();
      for (size_t e = 0; e < sum.size(); ++e) sum[e] += w * static_cast<double>(src[e]);
    }
    const double inv_world = 1.0 / static_cast<double>(options_.world_size);
    for (size_t e = 0; e < sum.size(); ++e) state_out[e] = static_cast<float>(sum[e] * inv_world);
    diverged_ = false;
    local.resynced = true;
  } else if (!complete || any_diverged) {
    diverged_ = true;
  }
  local.diverged = diverged_;
  const auto t3 = clock.Now();

  local.compress_seconds = SecondsBetween(t0, t1);
  local.wan_seconds = SecondsBetween(t1, t2);
  local.aggregate_seconds = SecondsBetween(t2, t3);
  if (stats != nullptr) *stats = std::move(local);
  return Status::Ok();
}

}  // namespace stella::pipeline
