#include "runtime/data/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <numeric>

namespace stella::data {
namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // unsigned byte, 3 dims
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned byte, 1 dim

uint32_t ReadBigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string SplitPrefix(Split split) { return split == Split::kTrain ? "train" : "t10k"; }

}  // namespace

std::vector<std::string> FashionMnistFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (Split s : {Split::kTrain, Split::kTest}) {
    files.push_back(dir + "/" + SplitPrefix(s) + "-images-idx3-ubyte.gz");
    files.push_back(dir + "/" + SplitPrefix(s) + "-labels-idx1-ubyte.gz");
  }
  return files;
}

Status CheckFashionMnist(const std::string& dir) {
  for (const std::string& f : FashionMnistFiles(dir)) {
    struct stat st;
    if (stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return NotFoundError("spec.dataset.path: Fashion-MNIST file " + f +
                           " is missing; install the Debian package dataset-fashion-mnist "
                           "(make setup) or point spec.dataset.path at a copy");
    }
  }
  return Status::Ok();
}

StatusOr<std::vector<uint8_t>> ReadGzipFile(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return NotFoundError("cannot open " + path);
  std::vector<uint8_t> out;
  uint8_t buffer[1 << 16];
  while (true) {
    int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(file, &err);
      gzclose(file);
      return DataLossError("reading " + path + ": " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buffer, buffer + n);
  }
  gzclose(file);
  return out;
}

StatusOr<Dataset> ParseIdx(const std::vector<uint8_t>& images_idx, const std::vector<uint8_t>& labels_idx,
                           const std::string& source) {
  if (images_idx.size() < 16) return DataLossError(source + ": image file shorter than its 16-byte IDX header");
  if (labels_idx.size() < 8) return DataLossError(source + ": label file shorter than its 8-byte IDX header");
  uint32_t magic = ReadBigEndian32(images_idx.data());
  if (magic != kIdxImagesMagic) {
    return DataLossError(source + ": image file magic is " + std::to_string(magic) +
                         ", expected 2051 (IDX ubyte, 3 dims)");
  }
  magic = ReadBigEndian32(labels_idx.data());
  if (magic != kIdxLabelsMagic) {
    return DataLossError(source + ": label file magic is " + std::to_string(magic) +
                         ", expected 2049 (IDX ubyte, 1 dim)");
  }
  Dataset d;
  uint32_t count = ReadBigEndian32(images_idx.data() + 4);
  uint32_t rows = ReadBigEndian32(images_idx.data() + 8);
  uint32_t cols = ReadBigEndian32(images_idx.data() + 12);
  uint32_t label_count = ReadBigEndian32(labels_idx.data() + 4);
  if (count != label_count) {
    return DataLossError(source + ": " + std::to_string(count) + " images but " + std::to_string(label_count) +
                         " labels");
  }
  if (rows == 0 || cols == 0 || rows > 4096 || cols > 4096) {
    return DataLossError(source + ": implausible image size " + std::to_string(rows) + "x" + std::to_string(cols));
  }
  uint64_t pixels = uint64_t{count} * rows * cols;
  if (images_idx.size() - 16 != pixels) {
    return DataLossError(source + ": image file holds " + std::to_string(images_idx.size() - 16) +
                         " pixel bytes, header promises " + std::to_string(pixels));
  }
  if (labels_idx.size() - 8 != count) {
    return DataLossError(source + ": label file holds " + std::to_string(labels_idx.size() - 8) +
                         " labels, header promises " + std::to_string(count));
  }
  d.size = count;
  d.rows = static_cast<int>(rows);
  d.cols = static_cast<int>(cols);
  d.images.assign(images_idx.begin() + 16, images_idx.end());
  d.labels.assign(labels_idx.begin() + 8, labels_idx.end());
  uint8_t max_label = d.labels.empty() ? 0 : *std::max_element(d.labels.begin(), d.labels.end());
  d.num_classes = std::max(10, int{max_label} + 1);
  return d;
}

StatusOr<Dataset> LoadFashionMnist(const std::string& dir, Split split) {
  STELLA_RETURN_IF_ERROR(CheckFashionMnist(dir));
  std::string images_path = dir + "/" + SplitPrefix(split) + "-images-idx3-ubyte.gz";
  std::string labels_path = dir + "/" + SplitPrefix(split) + "-labels-idx1-ubyte.gz";
  STELLA_ASSIGN_OR_RETURN(std::vector<uint8_t> images, ReadGzipFile(images_path));
  STELLA_ASSIGN_OR_RETURN(std::vector<uint8_t> labels, ReadGzipFile(labels_path));
  return ParseIdx(images, labels, dir + " (" + SplitPrefix(split) + ")");
}

std::vector<int64_t> Dataset::InputShape() const {
  switch (format) {
    case Format::kIdx: return {1, rows, cols};
    case Format::kNpy: return sample_shape;
    case Format::kTokens: return {sequence_length};
  }
  return {};
}

int64_t Dataset::feature_bytes() const {
  int64_t n = 4;
  for (int64_t d : sample_shape) n *= d;
  return n;
}

int64_t Dataset::Label(int64_t i) const {
  if (format == Format::kIdx) return labels[static_cast<size_t>(i)];
  int64_t l;
  std::memcpy(&l, class_labels + 8 * i, sizeof(l));  // little-endian host (x86, arm64)
  return l;
}

uint16_t Dataset::Token(int64_t t) const { return static_cast<uint16_t>(tokens[2 * t] | tokens[2 * t + 1] << 8); }

StatusOr<Dataset> LoadDataset(const DataSource& src, Split split) {
  const bool train = split == Split::kTrain;
  StatusOr<Dataset> d = InvalidArgumentError("unknown dataset format");
  const char* field = train ? "spec.dataset.path" : "spec.dataset.validationPath";
  switch (src.format) {
    case Format::kIdx: return LoadFashionMnist(src.path, split);
    case Format::kTokens: d = LoadTokens(train ? src.path : src.validation_path, src.sequence_length); break;
    case Format::kNpy:
      d = LoadNpy(train ? src.path : src.validation_path, train ? src.labels_path : src.validation_labels_path);
      if (!d.ok() &&
          d.status().message().find(train ? src.labels_path : src.validation_labels_path) != std::string::npos &&
          d.status().message().find(train ? src.path : src.validation_path) == std::string::npos) {
        field = train ? "spec.dataset.labelsPath" : "spec.dataset.validationLabelsPath";
      }
      break;
  }
  if (!d.ok()) return d.status().WithContext(field);
  return d;
}

BatchSampler::BatchSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed)
    : dataset_size_(dataset_size), rank_(rank), world_size_(world_size), seed_(seed) {
  STELLA_CHECK(world_size > 0 && rank >= 0 && rank < world_size);
  STELLA_CHECK(dataset_size >= world_size);
  Reshuffle();
}

void BatchSampler::Reshuffle() {
  std::vector<int64_t> perm(static_cast<size_t>(dataset_size_));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  // Same permutation on every rank: seeded only by (seed, epoch).
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch_));
  std::shuffle(perm.begin(), perm.end(), rng);
  shard_.clear();
  for (int64_t i = rank_; i < dataset_size_; i += world_size_) shard_.push_back(perm[static_cast<size_t>(i)]);
  cursor_ = 0;
}

Status BatchSampler::Seek(int64_t epoch, int64_t cursor) {
  if (epoch < 0) return InvalidArgumentError("sampler epoch must be >= 0, got " + std::to_string(epoch));
  if (cursor < 0 || cursor > shard_size()) {
    return InvalidArgumentError("sampler position " + std::to_string(cursor) + " is outside this rank's shard of " +
                                std::to_string(shard_size()) + " examples");
  }
  if (epoch != epoch_) {
    epoch_ = epoch;
    Reshuffle();
  }
  cursor_ = static_cast<size_t>(cursor);
  return Status::Ok();
}

std::vector<int64_t> BatchSampler::Next(int batch_size) {
  std::vector<int64_t> batch;
  batch.reserve(static_cast<size_t>(batch_size));
  while (static_cast<int>(batch.size()) < batch_size) {
    if (cursor_ == shard_.size()) {
      ++epoch_;
      Reshuffle();
    }
    batch.push_back(shard_[cursor_++]);
  }
  return batch;
}

}  // namespace stella::data
