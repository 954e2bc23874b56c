// Scatter helpers the exchange uses to merge received sparse gradients into a
// dense buffer in O(k) per message (the prototype built one dense tensor per
// peer, O(W * N)).
//
// Thread safety: pure functions; callers must not write the same dense
// buffer from two threads at once.
#ifndef STELLA_RUNTIME_COMPRESS_AGGREGATE_H_
#define STELLA_RUNTIME_COMPRESS_AGGREGATE_H_

#include <cstddef>

#include "runtime/compress/compressor.h"
#include "src/base/status.h"

namespace stella {
namespace compress {

// dense[e] += scale * v for every element e the sparse gradient covers.
// InvalidArgument (dense untouched) if sparse.num_elements != n or the
// structure is invalid (ValidateSparseGradient), so a mismatched peer cannot
// write out of bounds.
Status AddSparseTo(const SparseGradient& sparse, float scale, float* dense, size_t n);

// dense = the tensor the sparse gradient describes (zeros elsewhere).
// Same checks as AddSparseTo.
Status DecompressInto(const SparseGradient& sparse, float* dense, size_t n);

}  // namespace compress
}  // namespace stella

#endif  // STELLA_RUNTIME_COMPRESS_AGGREGATE_H_
