#include "runtime/tuner/decision.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace stella {
namespace tuner {
namespace {

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::optional<int> Decision::BatchSizeFor(int worker_id) const {
  for (size_t i = 0; i < worker_ids.size() && i < batch_sizes.size(); ++i) {
    if (worker_ids[i] == worker_id) return batch_sizes[i];
  }
  return std::nullopt;
}

std::string Decision::ToLogLine() const {
  char head[160];
  std::snprintf(head, sizeof(head), "tuner round=%llu apply_at_step=%lld density=%.6g batches=[",
                static_cast<unsigned long long>(round), static_cast<long long>(apply_at_step), density);
  std::string line = head;
  for (size_t i = 0; i < worker_ids.size() && i < batch_sizes.size(); ++i) {
    if (i > 0) line += ' ';
    line += std::to_string(worker_ids[i]) + ":" + std::to_string(batch_sizes[i]);
  }
  line += "] reason=\"";
  for (char ch : reason) {
    if (ch == '"' || ch == '\\') line += '\\';
    line += (ch == '\n' || ch == '\r') ? ' ' : ch;
  }
  line += '"';
  return line;
}

Status ValidateDecision(const Decision& d) {
  if (!std::isfinite(d.density) || !(d.density > 0.0) || d.density > 1.0) {
    return InvalidArgumentError("decision.density: must be in (0, 1], got " + std::to_string(d.density));
  }
  if (d.apply_at_step < 0) {
    return InvalidArgumentError("decision.apply_at_step: must be >= 0, got " + std::to_string(d.apply_at_step));
  }
  if (d.worker_ids.size() != d.batch_sizes.size()) {
    return InvalidArgumentError("decision: " + std::to_string(d.worker_ids.size()) + " worker ids but " +
                                std::to_string(d.batch_sizes.size()) + " batch sizes");
  }
  if (d.worker_ids.size() > kMaxDecisionWorkers) {
    return InvalidArgumentError("decision: " + std::to_string(d.worker_ids.size()) + " workers, at most " +
                                std::to_string(kMaxDecisionWorkers));
  }
  for (size_t i = 0; i < d.worker_ids.size(); ++i) {
    if (d.worker_ids[i] < 0 || (i > 0 && d.worker_ids[i] <= d.worker_ids[i - 1])) {
      return InvalidArgumentError("decision.worker_ids[" + std::to_string(i) +
                                  "]: must be >= 0 and strictly ascending, got " + std::to_string(d.worker_ids[i]));
    }
    if (d.batch_sizes[i] < 1) {
      return InvalidArgumentError("decision.batch_sizes[" + std::to_string(i) + "]: must be >= 1, got " +
                                  std::to_string(d.batch_sizes[i]));
    }
  }
  if (d.reason.size() > kMaxDecisionReasonBytes) {
    return InvalidArgumentError("decision.reason: " + std::to_string(d.reason.size()) + " bytes, at most " +
                                std::to_string(kMaxDecisionReasonBytes));
  }
  return Status::Ok();
}

Status EncodeDecision(const Decision& d, std::vector<uint8_t>* out) {
  if (out == nullptr) return InvalidArgumentError("EncodeDecision output buffer is null");
  STELLA_RETURN_IF_ERROR(ValidateDecision(d));
  out->clear();
  out->reserve(kDecisionHeaderSize + 8 * d.worker_ids.size() + d.reason.size());
  PutU32(out, kDecisionMagic);
  out->push_back(kDecisionVersion);
  out->insert(out->end(), 3, 0);
  PutU64(out, d.round);
  PutU64(out, static_cast<uint64_t>(d.apply_at_step));
  uint64_t density_bits = 0;
  std::memcpy(&density_bits, &d.density, sizeof(density_bits));
  PutU64(out, density_bits);
  PutU32(out, static_cast<uint32_t>(d.worker_ids.size()));
  PutU32(out, static_cast<uint32_t>(d.reason.size()));
  STELLA_CHECK(out->size() == kDecisionHeaderSize);
  for (size_t i = 0; i < d.worker_ids.size(); ++i) {
    PutU32(out, static_cast<uint32_t>(d.worker_ids[i]));
    PutU32(out, static_cast<uint32_t>(d.batch_sizes[i]));
  }
  out->insert(out->end(), d.reason.begin(), d.reason.end());
  return Status::Ok();
}

StatusOr<Decision> DecodeDecision(const uint8_t* data, size_t n) {
  if (data == nullptr && n > 0) return InvalidArgumentError("DecodeDecision input is null");
  if (n < kDecisionHeaderSize) {
    return DataLossError("decision frame truncated: " + std::to_string(n) + " bytes, header needs " +
                         std::to_string(kDecisionHeaderSize));
  }
  const uint32_t magic = GetU32(data);
  if (magic != kDecisionMagic) {
    return DataLossError("decision frame: bad magic " + std::to_string(magic));
  }
  if (data[4] != kDecisionVersion) {
    return DataLossError("decision frame: unsupported version " + std::to_string(data[4]) + ", expected " +
                         std::to_string(kDecisionVersion));
  }
  if (data[5] != 0 || data[6] != 0 || data[7] != 0) {
    return DataLossError("decision frame: reserved bytes are not zero");
  }
  Decision d;
  d.round = GetU64(data + 8);
  d.apply_at_step = static_cast<int64_t>(GetU64(data + 16));
  const uint64_t density_bits = GetU64(data + 24);
  std::memcpy(&d.density, &density_bits, sizeof(d.density));
  const uint32_t num_workers = GetU32(data + 32);
  const uint32_t reason_length = GetU32(data + 36);
  if (num_workers > kMaxDecisionWorkers || reason_length > kMaxDecisionReasonBytes) {
    return DataLossError("decision frame: " + std::to_string(num_workers) + " workers and " +
                         std::to_string(reason_length) + " reason bytes exceed the limits " +
                         std::to_string(kMaxDecisionWorkers) + " and " + std::to_string(kMaxDecisionReasonBytes));
  }
  const uint64_t expected = kDecisionHeaderSize + 8ull * num_workers + static_cast<uint64_t>(reason_length);
  if (expected != n) {
    return DataLossError("decision frame: " + std::to_string(n) + " bytes, its header says " +
                         std::to_string(expected));
  }
  const uint8_t* p = data + kDecisionHeaderSize;
  d.worker_ids.resize(num_workers);
  d.batch_sizes.resize(num_workers);
  for (uint32_t i = 0; i < num_workers; ++i, p += 8) {
    d.worker_ids[i] = static_cast<int32_t>(GetU32(p));
    d.batch_sizes[i] = static_cast<int32_t>(GetU32(p + 4));
  }
  d.reason.assign(reinterpret_cast<const char*>(p), reason_length);
  Status valid = ValidateDecision(d);
  if (!valid.ok()) return valid.WithContext("decoded decision frame");
  return d;
}

}  // namespace tuner
}  // namespace stella
