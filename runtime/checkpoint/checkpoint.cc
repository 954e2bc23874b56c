#include "runtime/checkpoint/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "src/base/byte_io.h"
#include "src/base/crc32c.h"
#include "src/base/file.h"

namespace stella::checkpoint {
namespace {

constexpr char kPrefix[] = "step-";
constexpr char kSuffix[] = ".ckpt";
constexpr char kTempMarker[] = ".tmp";  // WriteFileAtomically writes <path>.tmp.XXXXXX
constexpr int kStepDigits = 20;
// Fixed header bytes before the two strings: magic, version, header length,
// step, payload length, payload CRC.
constexpr size_t kFixedHeaderBytes = 4 + 4 + 4 + 8 + 8 + 4;
constexpr uint64_t kPieceBits = 12;
constexpr uint64_t kMaxAgreedStep = (uint64_t{1} << (kPieceBits * kFloatsPerStep)) - 2;

std::string StepFileName(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%0*lld%s", kPrefix, kStepDigits, static_cast<long long>(step), kSuffix);
  return buf;
}

// The step of a final file name, or -1 for anything else (temporaries too).
int64_t ParseStepFileName(const std::string& name) {
  const size_t prefix = sizeof(kPrefix) - 1, suffix = sizeof(kSuffix) - 1;
  if (name.size() != prefix + kStepDigits + suffix) return -1;
  if (name.compare(0, prefix, kPrefix) != 0 || name.compare(name.size() - suffix, suffix, kSuffix) != 0) return -1;
  int64_t step = 0;
  for (size_t i = prefix; i < prefix + kStepDigits; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return -1;
    if (step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (c - '0');
  }
  return step;
}

bool IsTempFileName(const std::string& name) {
  return name.compare(0, sizeof(kPrefix) - 1, kPrefix) == 0 && name.find(kTempMarker) != std::string::npos;
}

Status MakeDirs(const std::string& path) {
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (prefix.empty()) continue;
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("spec.checkpoint.path: cannot create directory " + prefix, errno);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return FailedPreconditionError("spec.checkpoint.path: " + path + " is not a directory");
  }
  return Status::Ok();
}

}  // namespace

void Sections::Put(const std::string& name, std::string bytes) {
  for (auto& [n, b] : sections_) {
    if (n == name) {
      b = std::move(bytes);
      return;
    }
  }
  sections_.emplace_back(name, std::move(bytes));
}

bool Sections::Has(const std::string& name) const {
  return std::any_of(sections_.begin(), sections_.end(), [&](const auto& s) { return s.first == name; });
}

StatusOr<std::string_view> Sections::Get(const std::string& name) const {
  for (const auto& [n, b] : sections_) {
    if (n == name) return std::string_view(b);
  }
  return NotFoundError("checkpoint has no section \"" + name + "\"");
}

size_t Sections::content_bytes() const {
  size_t total = 0;
  for (const auto& s : sections_) total += s.second.size();
  return total;
}

std::string EncodeCheckpoint(const CheckpointHeader& header, const Sections& sections) {
  ByteWriter payload;
  payload.U32(static_cast<uint32_t>(sections.all().size()));
  for (const auto& [name, bytes] : sections.all()) {
    payload.String(name);
    payload.U64(bytes.size());
    payload.Raw(bytes);
  }
  const std::string body = payload.Release();

  ByteWriter head;
  head.U32(kMagic);
  head.U32(header.format_version);
  head.U32(static_cast<uint32_t>(kFixedHeaderBytes + 4 + header.job.size() + 4 + header.worker.size() + 4));
  head.I64(header.step);
  head.U64(body.size());
  head.U32(Crc32c(body.data(), body.size()));
  head.String(header.job);
  head.String(header.worker);
  head.U32(Crc32c(head.data().data(), head.data().size()));
  std::string out = head.Release();
  out += body;
  return out;
}

StatusOr<std::pair<CheckpointHeader, Sections>> DecodeCheckpoint(std::string_view bytes, const std::string& source) {
  const std::string what = "checkpoint " + source;
  ByteReader r(bytes, what);
  CheckpointHeader h;
  const uint32_t magic = r.U32("magic");
  h.format_version = r.U32("format version");
  const uint32_t header_length = r.U32("header length");
  if (!r.ok()) return r.status();
  if (magic != kMagic) return DataLossError(what + ": not a Stella checkpoint (bad magic)");
  if (h.format_version != kFormatVersion) {
    return FailedPreconditionError(what + ": format version " + std::to_string(h.format_version) +
                                   ", this build reads version " + std::to_string(kFormatVersion) + "; refusing it");
  }
  if (header_length < kFixedHeaderBytes + 12 || header_length > bytes.size()) {
    return DataLossError(what + ": truncated: the header claims " + std::to_string(header_length) +
                         " bytes, the file has " + std::to_string(bytes.size()));
  }
  // Verify the header before trusting any length in it.
  ByteReader header_crc(bytes.substr(header_length - 4, 4), what);
  if (Crc32c(bytes.data(), header_length - 4) != header_crc.U32("header checksum")) {
    return DataLossError(what + ": header checksum mismatch (corrupt)");
  }
  h.step = r.I64("step");
  const uint64_t payload_length = r.U64("payload length");
  const uint32_t payload_crc = r.U32("payload checksum");
  h.job = r.String("job name");
  h.worker = r.String("worker name");
  if (!r.ok()) return r.status();
  if (r.position() + 4 != header_length) {
    return DataLossError(what + ": header length " + std::to_string(header_length) + " does not match its fields");
  }
  if (h.step < 0) return DataLossError(what + ": negative step " + std::to_string(h.step));
  if (payload_length != bytes.size() - header_length) {
    return DataLossError(what + ": truncated or padded: the payload should be " + std::to_string(payload_length) +
                         " bytes, the file holds " + std::to_string(bytes.size() - header_length));
  }
  const std::string_view body = bytes.substr(header_length);
  if (Crc32c(body.data(), body.size()) != payload_crc) {
    return DataLossError(what + ": payload checksum mismatch (corrupt)");
  }
  ByteReader p(body, what);
  Sections sections;
  const uint32_t count = p.U32("section count");
  for (uint32_t i = 0; i < count && p.ok(); ++i) {
    std::string name = p.String("section name");
    const uint64_t length = p.U64("section length");
    std::string_view data = p.Raw(length, "section bytes");
    if (p.ok()) sections.Put(name, std::string(data));
  }
  p.ExpectEnd();
  if (!p.ok()) return p.status();
  return std::make_pair(std::move(h), std::move(sections));
}

std::string WorkerDirectory(const std::string& root, const std::string& cluster, int local_rank) {
  std::string base = root;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + "/" + cluster + "-" + std::to_string(local_rank);
}

StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Create(const StoreOptions& options) {
  if (options.dir.empty()) return InvalidArgumentError("StoreOptions.dir is empty");
  if (options.job.empty()) return InvalidArgumentError("StoreOptions.job is empty");
  if (options.worker.empty()) return InvalidArgumentError("StoreOptions.worker is empty");
  if (options.keep < 1) {
    return InvalidArgumentError("StoreOptions.keep must be >= 1, got " + std::to_string(options.keep));
  }
  STELLA_RETURN_IF_ERROR(MakeDirs(options.dir));
  return std::unique_ptr<CheckpointStore>(new CheckpointStore(options));
}

std::string CheckpointStore::PathFor(int64_t step) const { return options_.dir + "/" + StepFileName(step); }

StatusOr<std::vector<int64_t>> CheckpointStore::ListSteps() const {
  std::vector<int64_t> steps;
  DIR* d = opendir(options_.dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return steps;
    return ErrnoError("list checkpoint directory " + options_.dir, errno);
  }
  while (dirent* e = readdir(d)) {
    const int64_t step = ParseStepFileName(e->d_name);
    if (step >= 0) steps.push_back(step);
  }
  closedir(d);
  std::sort(steps.begin(), steps.end());
  return steps;
}

StatusOr<Sections> CheckpointStore::ReadVerified(int64_t step) const {
  const std::string path = PathFor(step);
  STELLA_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  STELLA_ASSIGN_OR_RETURN(auto decoded, DecodeCheckpoint(bytes, path));
  const CheckpointHeader& h = decoded.first;
  if (h.job != options_.job || h.worker != options_.worker) {
    return FailedPreconditionError("checkpoint " + path + " was written by job \"" + h.job + "\" worker \"" + h.worker +
                                   "\", not job \"" + options_.job + "\" worker \"" + options_.worker +
                                   "\"; refusing to resume from it (give each job its own spec.checkpoint.path)");
  }
  if (h.step != step) {
    return DataLossError("checkpoint " + path + ": header says step " + std::to_string(h.step) +
                         " but the file name says " + std::to_string(step));
  }
  return std::move(decoded.second);
}

StatusOr<Sections> CheckpointStore::Load(int64_t step) const { return ReadVerified(step); }

StatusOr<ScanResult> CheckpointStore::Scan() const {
  STELLA_ASSIGN_OR_RETURN(std::vector<int64_t> steps, ListSteps());
  ScanResult result;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    StatusOr<Sections> s = ReadVerified(*it);
    if (s.ok()) {
      result.steps.push_back(*it);
    } else if (s.status().code() == StatusCode::kDataLoss) {
      result.skipped.push_back(s.status().message());
    } else {
      return s.status();
    }
  }
  return result;
}

StatusOr<SaveResult> CheckpointStore::Save(int64_t step, const Sections& sections) {
  if (step < 0) return InvalidArgumentError("checkpoint step must be >= 0, got " + std::to_string(step));
  const auto start = std::chrono::steady_clock::now();
  CheckpointHeader header;
  header.job = options_.job;
  header.worker = options_.worker;
  header.step = step;
  const std::string bytes = EncodeCheckpoint(header, sections);
  SaveResult result;
  result.path = PathFor(step);
  result.bytes = bytes.size();
  // A crash before the rename leaves a temporary file that Save removes later.
  AtomicWriteOptions write_options;
  write_options.before_rename = options_.before_rename;
  Status written = WriteFileAtomically(result.path, bytes, write_options);
  if (!written.ok()) return written.WithContext("checkpoint of step " + std::to_string(step));

  // Retention: the newest `keep` steps stay; temporaries are leftovers of a
  // crashed save (this process owns the directory, so none is in progress).
  STELLA_ASSIGN_OR_RETURN(std::vector<int64_t> steps, ListSteps());
  if (steps.size() > static_cast<size_t>(options_.keep)) {
    for (size_t i = 0; i + static_cast<size_t>(options_.keep) < steps.size(); ++i) {
      if (unlink(PathFor(steps[i]).c_str()) == 0) result.removed.push_back(steps[i]);
    }
  }
  if (DIR* d = opendir(options_.dir.c_str())) {
    std::vector<std::string> temps;
    while (dirent* e = readdir(d)) {
      if (IsTempFileName(e->d_name)) temps.push_back(options_.dir + "/" + e->d_name);
    }
    closedir(d);
    for (const auto& t : temps) unlink(t.c_str());
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

int64_t NewestCommonStep(const std::vector<std::vector<int64_t>>& steps_per_worker) {
  if (steps_per_worker.empty()) return -1;
  std::set<int64_t> common(steps_per_worker[0].begin(), steps_per_worker[0].end());
  for (size_t w = 1; w < steps_per_worker.size(); ++w) {
    std::set<int64_t> mine(steps_per_worker[w].begin(), steps_per_worker[w].end());
    std::set<int64_t> both;
    for (int64_t s : common) {
      if (mine.count(s) != 0) both.insert(s);
    }
    common.swap(both);
  }
  return common.empty() ? -1 : *common.rbegin();
}

void StepsToFloats(const std::vector<int64_t>& steps, size_t slots, float* out) {
  const uint64_t mask = (uint64_t{1} << kPieceBits) - 1;
  for (size_t i = 0; i < slots; ++i) {
    // step + 1, so that an all-zero slot means "no step".
    uint64_t v = 0;
    if (i < steps.size()) {
      STELLA_CHECK(steps[i] >= 0 && static_cast<uint64_t>(steps[i]) <= kMaxAgreedStep);
      v = static_cast<uint64_t>(steps[i]) + 1;
    }
    for (size_t k = 0; k < kFloatsPerStep; ++k) {
      out[i * kFloatsPerStep + k] = static_cast<float>((v >> (kPieceBits * k)) & mask);
    }
  }
}

std::vector<int64_t> FloatsToSteps(const float* block, size_t slots, int world_size) {
  std::vector<int64_t> steps;
  for (size_t i = 0; i < slots; ++i) {
    uint64_t v = 0;
    for (size_t k = 0; k < kFloatsPerStep; ++k) {
      const double piece = std::round(static_cast<double>(block[i * kFloatsPerStep + k]) * world_size);
      v |= static_cast<uint64_t>(std::max(0.0, piece)) << (kPieceBits * k);
    }
    if (v != 0) steps.push_back(static_cast<int64_t>(v - 1));
  }
  return steps;
}

}  // namespace stella::checkpoint
