// BlockMask: which blocks of each tensor an aggregated sparse gradient
// touches, packed into floats so that the gateway can send it to the other
// workers of its cluster in the same float Broadcast as the dense aggregate.
//
// Each float carries 16 mask bits as an exact integer value 0..65535 (exact in
// fp32 and free of NaN bit patterns, so any float transport keeps it). Bit j
// of word w covers block 16 w + j of the concatenated block space (tensor 0's
// blocks, then tensor 1's, ...).
//
// Thread safety: pure functions.
#ifndef STELLA_RUNTIME_PIPELINE_BLOCK_MASK_H_
#define STELLA_RUNTIME_PIPELINE_BLOCK_MASK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/base/status.h"

namespace stella::pipeline {

inline constexpr size_t kMaskBitsPerWord = 16;

// Floats needed for the mask of tensors of these sizes at this block size.
size_t BlockMaskWords(const std::vector<int64_t>& tensor_sizes, uint32_t block_size);

// Writes BlockMaskWords() floats. touched[i] lists tensor i's blocks
// (ascending, in range; checked by STELLA_CHECK: the caller built them).
void PackBlockMask(const std::vector<std::vector<uint32_t>>& touched, const std::vector<int64_t>& tensor_sizes,
                   uint32_t block_size, float* words);

// The inverse: ascending block lists per tensor. DataLoss if a word is not an
// integer in 0..65535 or sets a bit past the last block.
Status UnpackBlockMask(const float* words, const std::vector<int64_t>& tensor_sizes, uint32_t block_size,
                       std::vector<std::vector<uint32_t>>* touched);

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_BLOCK_MASK_H_
