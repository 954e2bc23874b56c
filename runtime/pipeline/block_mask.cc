#include "runtime/pipeline/block_mask.h"

#include <string>

#include "runtime/compress/compressor.h"

namespace stella::pipeline {
namespace {

uint64_t TotalBlocks(const std::vector<int64_t>& sizes, uint32_t block_size) {
  uint64_t total = 0;
  for (int64_t n : sizes) total += compress::NumBlocks(static_cast<uint64_t>(n), block_size);
  return total;
}

}  // namespace

size_t BlockMaskWords(const std::vector<int64_t>& tensor_sizes, uint32_t block_size) {
  return static_cast<size_t>((TotalBlocks(tensor_sizes, block_size) + kMaskBitsPerWord - 1) / kMaskBitsPerWord);
}

void PackBlockMask(const std::vector<std::vector<uint32_t>>& touched, const std::vector<int64_t>& tensor_sizes,
                   uint32_t block_size, float* words) {
  STELLA_CHECK(touched.size() == tensor_sizes.size());
  const size_t num_words = BlockMaskWords(tensor_sizes, block_size);
  std::vector<uint32_t> bits(num_words, 0);
  uint64_t base = 0;
  for (size_t i = 0; i < tensor_sizes.size(); ++i) {
    const uint64_t blocks = compress::NumBlocks(static_cast<uint64_t>(tensor_sizes[i]), block_size);
    for (uint32_t b : touched[i]) {
      STELLA_CHECK(b < blocks);
      const uint64_t g = base + b;
      bits[g / kMaskBitsPerWord] |= 1u << (g % kMaskBitsPerWord);
    }
    base += blocks;
  }
  for (size_t w = 0; w < num_words; ++w) words[w] = static_cast<float>(bits[w]);
}

Status UnpackBlockMask(const float* words, const std::vector<int64_t>& tensor_sizes, uint32_t block_size,
                       std::vector<std::vector<uint32_t>>* touched) {
  const uint64_t total = TotalBlocks(tensor_sizes, block_size);
  const size_t num_words = BlockMaskWords(tensor_sizes, block_size);
  std::vector<uint32_t> bits(num_words);
  for (size_t w = 0; w < num_words; ++w) {
    const float f = words[w];
    // The negated comparison also rejects NaN.
    if (!(f >= 0.0f && f <= 65535.0f) || static_cast<float>(static_cast<uint32_t>(f)) != f) {
      return DataLossError("block mask word " + std::to_string(w) + " is " + std::to_string(f) +
                           ", expected an integer in 0..65535");
    }
    bits[w] = static_cast<uint32_t>(f);
  }
  if (total % kMaskBitsPerWord != 0 && num_words > 0) {
    const uint32_t valid = (1u << (total % kMaskBitsPerWord)) - 1;
    if ((bits.back() & ~valid) != 0) return DataLossError("block mask sets bits past the last block");
  }
  touched->assign(tensor_sizes.size(), {});
  uint64_t base = 0;
  for (size_t i = 0; i < tensor_sizes.size(); ++i) {
    const uint64_t blocks = compress::NumBlocks(static_cast<uint64_t>(tensor_sizes[i]), block_size);
    auto& out = (*touched)[i];
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t g = base + b;
      if ((bits[g / kMaskBitsPerWord] >> (g % kMaskBitsPerWord)) & 1u) out.push_back(static_cast<uint32_t>(b));
    }
    base += blocks;
  }
  return Status::Ok();
}

}  // namespace stella::pipeline
