// Image-classification datasets read from IDX files (the MNIST family), and
// deterministic per-rank sharding and batching of them.
//
// Pure C++ (zlib only): the compute stage converts batches to tensors.
// Thread safety: a loaded Dataset is immutable and can be shared; a
// BatchSampler is used by one thread.
#ifndef STELLA_RUNTIME_DATA_DATASET_H_
#define STELLA_RUNTIME_DATA_DATASET_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella::data {

struct Dataset {
  int64_t size = 0;   // number of examples
  int rows = 0;
  int cols = 0;
  int num_classes = 0;
  std::vector<uint8_t> images;  // size * rows * cols pixels, row-major
  std::vector<uint8_t> labels;  // size labels in [0, num_classes)
};

enum class Split { kTrain, kTest };

// The four files a Fashion-MNIST installation must hold under `dir`.
std::vector<std::string> FashionMnistFiles(const std::string& dir);

// Checks that every file exists; the error names the missing file and how to
// install the data set.
Status CheckFashionMnist(const std::string& dir);

// Reads one split of Fashion-MNIST (gzip'd IDX) from `dir`.
StatusOr<Dataset> LoadFashionMnist(const std::string& dir, Split split);

// Parses an IDX image file and a label file already decompressed in memory.
// Exposed for tests: malformed headers and truncated data give DataLoss.
StatusOr<Dataset> ParseIdx(const std::vector<uint8_t>& images_idx,
                           const std::vector<uint8_t>& labels_idx,
                           const std::string& source);

// Reads a whole gzip (or plain) file into memory.
StatusOr<std::vector<uint8_t>> ReadGzipFile(const std::string& path);

// Yields the example indices of one rank's shard, epoch after epoch, in an
// order reshuffled every epoch from (seed, epoch). Every rank draws the same
// permutation and takes the slice [rank, rank + world, rank + 2*world, ...],
// so shards are disjoint and together cover the data set.
class BatchSampler {
 public:
  BatchSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed);

  // Indices of the next batch of `batch_size` examples of this rank's shard.
  // Wraps into the next epoch when the shard is used up.
  std::vector<int64_t> Next(int batch_size);

  int64_t epoch() const { return epoch_; }
  int64_t shard_size() const { return static_cast<int64_t>(shard_.size()); }
  // Examples of this epoch's shard already handed out.
  int64_t cursor() const { return static_cast<int64_t>(cursor_); }

  // Continues from a saved (epoch, cursor): the next Next() returns what the
  // saved sampler's would have. The order within an epoch is a function of
  // (seed, epoch) alone, so this position is the sampler's whole state.
  // InvalidArgument when epoch < 0 or cursor is not in [0, shard_size()].
  Status Seek(int64_t epoch, int64_t cursor);

 private:
  void Reshuffle();

  int64_t dataset_size_;
  int rank_;
  int world_size_;
  uint64_t seed_;
  int64_t epoch_ = 0;
  size_t cursor_ = 0;
  std::vector<int64_t> shard_;
};

}  // namespace stella::data

#endif  // STELLA_RUNTIME_DATA_DATASET_H_
