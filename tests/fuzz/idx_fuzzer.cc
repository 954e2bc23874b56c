// Fuzzes the IDX (MNIST-family) parser of runtime/data/dataset.h on split
// input: the first two bytes (little-endian) choose where the rest is cut
// into the image file and the label file.
//
// Invariants (abort on violation):
//  - rejections are DataLoss and name the source;
//  - an accepted data set has the shape its headers promise, its pixels and
//    labels are exactly the bytes after the headers, every label is below
//    num_classes (>= 10);
//  - for such a data set BatchSampler's shards, for a few world sizes, are
//    disjoint and together cover every example exactly once per epoch.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::data {
namespace {

constexpr char kSource[] = "fuzz-input";

void CheckSharding(int64_t size, uint64_t seed) {
  const int max_world = static_cast<int>(std::min<int64_t>(size, 3));
  for (int world = 1; world <= max_world; ++world) {
    std::vector<int> seen(static_cast<size_t>(size), 0);
    for (int rank = 0; rank < world; ++rank) {
      BatchSampler sampler(size, rank, world, seed);
      const int64_t shard = sampler.shard_size();
      FUZZ_CHECK(shard == (size - rank + world - 1) / world,
                 "rank " + std::to_string(rank) + " of " + std::to_string(world) + " has " + std::to_string(shard) +
                     " of " + std::to_string(size) + " examples");
      for (int64_t index : sampler.Next(static_cast<int>(shard))) {
        FUZZ_CHECK(index >= 0 && index < size, "sampled index " + std::to_string(index));
        ++seen[static_cast<size_t>(index)];
      }
      FUZZ_CHECK(sampler.epoch() == 0, "one shard's worth of examples crossed an epoch");
    }
    FUZZ_CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }),
               "shards of world size " + std::to_string(world) + " do not cover every example exactly once");
  }
}

void Check(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const size_t rest = size - 2;
  const size_t cut = (static_cast<size_t>(data[0]) | static_cast<size_t>(data[1]) << 8) % (rest + 1);
  const std::vector<uint8_t> images(data + 2, data + 2 + cut);
  const std::vector<uint8_t> labels(data + 2 + cut, data + size);

  StatusOr<Dataset> parsed = ParseIdx(images, labels, kSource);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == StatusCode::kDataLoss,
               "unexpected ParseIdx error " + parsed.status().ToString());
    FUZZ_CHECK(parsed.status().message().rfind(kSource, 0) == 0,
               "error does not name the source: " + parsed.status().message());
    return;
  }
  const Dataset& d = *parsed;
  FUZZ_CHECK(d.rows >= 1 && d.rows <= 4096 && d.cols >= 1 && d.cols <= 4096,
             "accepted image size " + std::to_string(d.rows) + "x" + std::to_string(d.cols));
  FUZZ_CHECK(d.size >= 0 && static_cast<uint64_t>(d.images.size()) == static_cast<uint64_t>(d.size) * d.rows * d.cols,
             "pixel count does not match size x rows x cols");
  FUZZ_CHECK(static_cast<int64_t>(d.labels.size()) == d.size, "label count does not match size");
  FUZZ_CHECK(std::equal(d.images.begin(), d.images.end(), images.begin() + 16) &&
                 std::equal(d.labels.begin(), d.labels.end(), labels.begin() + 8),
             "pixels or labels differ from the file bytes after the headers");
  FUZZ_CHECK(d.num_classes >= 10, "num_classes " + std::to_string(d.num_classes));
  for (uint8_t label : d.labels) {
    FUZZ_CHECK(label < d.num_classes,
               "label " + std::to_string(label) + " >= num_classes " + std::to_string(d.num_classes));
  }
  if (d.size > 0) CheckSharding(d.size, /*seed=*/data[0]);
}

}  // namespace
}  // namespace stella::data

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stella::data::Check(data, size);
  return 0;
}
