// Checkpoint files of a training job: the on-disk format, one worker's
// directory of checkpoints (atomic writes, retention, verified reads), and the
// rule the workers use to agree on the step to resume from.
//
// Layout: every worker owns one directory, <spec.checkpoint.path>/<cluster>-
// <local rank> (WorkerDirectory), holding step-<20-digit step>.ckpt files.
// Each worker writes only its own directory and each file holds everything
// that worker needs to continue, so a cluster's storage never depends on
// another cluster's (clusters need not share a file system).
//
// File format (little-endian), version kFormatVersion:
//   header:  u32 magic "STCK" (0x4B435453), u32 format version,
//            u32 header length (bytes, from the magic to the header CRC
//            inclusive), i64 step, u64 payload length, u32 payload CRC32C,
//            string job, string worker (u32 length + bytes each),
//            u32 header CRC32C (of every header byte before it)
//   payload: u32 section count, then per section: string name, u64 length,
//            the section's bytes
// A file is complete when both checksums match and its lengths add up to the
// file size exactly. Writes go to a temporary file that is fsynced, renamed
// over the final name and followed by an fsync of the directory, so a crash
// leaves either the old set of checkpoints or the new one, never a torn file
// under a final name.
//
// Thread safety: Sections and the free functions are plain values and pure
// functions. A CheckpointStore is driven by one thread, and one store (one
// process) owns a directory.
#ifndef STELLA_RUNTIME_CHECKPOINT_CHECKPOINT_H_
#define STELLA_RUNTIME_CHECKPOINT_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/base/status.h"

namespace stella::checkpoint {

inline constexpr uint32_t kMagic = 0x4B435453;  // "STCK" in byte order
inline constexpr uint32_t kFormatVersion = 1;

struct CheckpointHeader {
  uint32_t format_version = kFormatVersion;
  std::string job;     // metadata.name of the job that wrote it
  std::string worker;  // "<cluster name>/<local rank>"
  int64_t step = 0;    // updates applied to the state it holds, >= 0
};

// A checkpoint's contents: named byte strings, kept in insertion order.
class Sections {
 public:
  // Adds a section; replaces the bytes of one with the same name.
  void Put(const std::string& name, std::string bytes);
  bool Has(const std::string& name) const;
  // NotFound naming the section when absent.
  StatusOr<std::string_view> Get(const std::string& name) const;
  const std::vector<std::pair<std::string, std::string>>& all() const { return sections_; }
  // Bytes of all sections' contents.
  size_t content_bytes() const;

 private:
  std::vector<std::pair<std::string, std::string>> sections_;
};

// The file bytes of one checkpoint.
std::string EncodeCheckpoint(const CheckpointHeader& header, const Sections& sections);

// Decodes and verifies a whole file. DataLoss (naming `source` and the
// problem: "truncated", "checksum mismatch", ...) for anything torn or
// corrupt; FailedPrecondition for a well-formed file of another format
// version. Never reads out of bounds.
StatusOr<std::pair<CheckpointHeader, Sections>> DecodeCheckpoint(std::string_view bytes, const std::string& source);

// <root>/<cluster>-<local rank>.
std::string WorkerDirectory(const std::string& root, const std::string& cluster, int local_rank);

struct StoreOptions {
  // This worker's directory; created (with parents) by Create. Required.
  std::string dir;
  // Written into every header and required of every file read back: a file
  // of another job or worker is refused, not skipped. Required.
  std::string job;
  std::string worker;
  // Complete checkpoints kept after a save (the newest ones), >= 1.
  // Default 2: if the newest is found corrupt, the one before it is used.
  int keep = 2;
  // Fault injection for tests: called with the temporary file's path after
  // it is written and fsynced, right before the rename. Default none.
  std::function<void(const std::string& temp_path)> before_rename;
};

struct SaveResult {
  std::string path;              // the final file
  uint64_t bytes = 0;            // file size
  double seconds = 0;            // encode + write + fsyncs + rename
  std::vector<int64_t> removed;  // older steps deleted by retention
};

struct ScanResult {
  std::vector<int64_t> steps;        // complete checkpoints, newest first
  std::vector<std::string> skipped;  // "<path>: <why>" per torn or corrupt file
};

class CheckpointStore {
 public:
  // InvalidArgument for missing fields or keep < 1; IoError if the directory
  // cannot be created.
  static StatusOr<std::unique_ptr<CheckpointStore>> Create(const StoreOptions& options);

  // Writes step's checkpoint atomically (see the top of this file), then
  // deletes this directory's leftover temporary files and every checkpoint
  // older than the newest `keep` steps. A checkpoint of the same step is
  // replaced. On error nothing under a final name has changed.
  StatusOr<SaveResult> Save(int64_t step, const Sections& sections);

  // Reads and verifies every checkpoint file of the directory. Torn or
  // corrupt files are listed in `skipped` (the caller logs them); a file
  // written by another job or worker, or in another format version, fails
  // the scan with FailedPrecondition ("refusing ..."). A missing directory
  // is an empty result.
  StatusOr<ScanResult> Scan() const;

  // Loads and verifies step's checkpoint: NotFound if absent, DataLoss if
  // torn or corrupt, FailedPrecondition for another job/worker/version.
  StatusOr<Sections> Load(int64_t step) const;

  // Where step's checkpoint lives (whether or not it exists).
  std::string PathFor(int64_t step) const;
  const std::string& dir() const { return options_.dir; }

 private:
  explicit CheckpointStore(StoreOptions options) : options_(std::move(options)) {}
  // Steps named by the files present (unverified), ascending.
  StatusOr<std::vector<int64_t>> ListSteps() const;
  StatusOr<Sections> ReadVerified(int64_t step) const;

  StoreOptions options_;
};

// Resume agreement. Every worker contributes the steps it holds complete;
// the job resumes from the newest step that EVERY worker holds, or starts
// over (-1) when there is none. Pure.
int64_t NewestCommonStep(const std::vector<std::vector<int64_t>>& steps_per_worker);

// The agreement rides on a float mean-all-reduce over all workers (the only
// job-wide collective before training): each worker fills its own block of
// `slots` steps with StepsToFloats and zeros elsewhere, so the mean times the
// world size is every worker's list. Steps are split into 12-bit pieces so
// the float arithmetic stays exact. Steps must be in [0, 2^48).
inline constexpr size_t kFloatsPerStep = 4;
void StepsToFloats(const std::vector<int64_t>& steps, size_t slots, float* out);
// Inverse for one worker's block of the all-reduced mean (`world_size` undoes
// the mean).
std::vector<int64_t> FloatsToSteps(const float* block, size_t slots, int world_size);

}  // namespace stella::checkpoint

#endif  // STELLA_RUNTIME_CHECKPOINT_CHECKPOINT_H_
