// Training data: image-classification sets read from IDX files (the MNIST
// family), or the user's own memory-mapped token / .npy files (own_data.h),
// and deterministic per-rank sharding and batching of them.
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

#include "runtime/data/own_data.h"
#include "src/base/status.h"

namespace stella::data {

// kIdx: a Fashion-MNIST directory; kTokens: flat uint16 token files;
// kNpy: float32 features and int64 labels as .npy arrays.
enum class Format { kIdx, kTokens, kNpy };

struct Dataset {
  Format format = Format::kIdx;
  int64_t size = 0;  // number of examples
  int rows = 0;      // idx
  int cols = 0;      // idx
  // Classes (idx, npy: largest label + 1, idx at least 10) or the smallest
  // vocabulary that covers the data (tokens: largest token + 1).
  int num_classes = 0;
  std::vector<uint8_t> images;  // idx: size * rows * cols pixels, row-major
  std::vector<uint8_t> labels;  // idx: size labels in [0, num_classes)

  // npy: example i's features are float32 at features + i * feature_bytes()
  // (shape sample_shape); its label an int64 at class_labels + 8 * i.
  // Unaligned: read them with memcpy.
  std::shared_ptr<const MappedFile> feature_file, label_file;
  const uint8_t* features = nullptr;
  const uint8_t* class_labels = nullptr;
  std::vector<int64_t> sample_shape;
  // tokens: example i is the window of sequence_length + 1 tokens starting at
  // token i * sequence_length (input, and the target shifted by one).
  std::shared_ptr<const MappedFile> token_file;
  const uint8_t* tokens = nullptr;  // little-endian uint16
  int64_t num_tokens = 0;
  int sequence_length = 0;

  // One example's model input shape: idx [1, rows, cols], npy sample_shape,
  // tokens [sequence_length] (int64 token ids).
  std::vector<int64_t> InputShape() const;
  int64_t feature_bytes() const;    // npy
  int64_t Label(int64_t i) const;   // idx, npy
  uint16_t Token(int64_t t) const;  // tokens
};

enum class Split { kTrain, kTest };

// Where a job's data lives (spec.dataset, without the spec library).
struct DataSource {
  Format format = Format::kIdx;
  std::string path;                    // idx: directory; tokens/npy: training file
  std::string labels_path;             // npy
  std::string validation_path;         // tokens/npy
  std::string validation_labels_path;  // npy
  int sequence_length = 0;             // tokens
};

// Loads one split (kTest = the validation files) of any format. Errors name
// the spec field and the file.
StatusOr<Dataset> LoadDataset(const DataSource& source, Split split);

// A flat little-endian uint16 token file cut into windows of
// sequence_length + 1 tokens. DataLoss naming the path for an odd size or
// fewer tokens than one window.
StatusOr<Dataset> LoadTokens(const std::string& path, int sequence_length);

// float32 features [N, ...] and int64 labels [N] from two .npy files.
// DataLoss naming the path and the expected size for truncated files, other
// element types, or counts that differ.
StatusOr<Dataset> LoadNpy(const std::string& features_path, const std::string& labels_path);

// The four files a Fashion-MNIST installation must hold under `dir`.
std::vector<std::string> FashionMnistFiles(const std::string& dir);

// Checks that every file exists; the error names the missing file and how to
// install the data set.
Status CheckFashionMnist(const std::string& dir);

// Reads one split of Fashion-MNIST (gzip'd IDX) from `dir`.
StatusOr<Dataset> LoadFashionMnist(const std::string& dir, Split split);

// Parses an IDX image file and a label file already decompressed in memory.
// Exposed for tests: malformed headers and truncated data give DataLoss.
StatusOr<Dataset> ParseIdx(const std::vector<uint8_t>& images_idx, const std::vector<uint8_t>& labels_idx,
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
