// SparseExchange: the gateway's cross-cluster step of the `stella` sync mode.
//
// For one step it takes the cluster-summed flat gradient and, per parameter
// tensor, applies error feedback (optional) and compression at the current
// density; encodes every tensor's selection plus a small dense control
// section (stop flag, loss, ...) into one payload; all-gathers the payloads
// between the gateways over the WanMesh (frame tag = step); validates and
// decodes every cluster's payload; and sums them IN CLUSTER-INDEX ORDER into a
// dense aggregate scaled by 1/world_size, so every gateway computes the same
// bits. It also returns, per tensor, the sorted union of the blocks any
// cluster sent: the optimizer touches exactly those.
//
// A single-cluster job skips the WAN but still compresses (and decodes its own
// payload), so error feedback and value rounding behave as with peers.
//
// Numerics: with density 1 and fp32 values the aggregate is bit-identical to
// the dense hierarchical all-reduce (DenseAllReduce): 0 + c_0 + c_1 + ... in
// cluster order, then one multiplication by the float 1/world_size.
//
// Partial rounds (a WAN link is down, see exchange/wan_mesh.h): the aggregate
// sums the payloads that arrived, in cluster order, and is scaled by 1 / the
// workers of those clusters, so each cluster keeps training at full learning
// rate on the data it can reach. Error feedback is unaffected: what this
// gateway selected is applied here (it is in its own aggregate), what it did
// not select stays in the residual. The clusters' parameters then differ;
// they are re-joined by resynchronization:
//
// Resynchronization. A gateway is `diverged` from the moment a round misses a
// payload, or a payload says its sender is diverged, until a resync. While
// diverged, its payloads carry the flag and its range's full state (master
// parameters and optimizer buffers, given by the caller). A round in which
// every cluster's payload arrived and every one carries state is a resync
// round: every gateway averages the states (weighted by cluster workers, in
// cluster order, so every gateway computes the same bits), hands the average
// back to be installed before this round's update, and is no longer
// diverged. The decision depends only on the round's payloads, so all
// gateways that saw the whole round take it together; one that missed a
// payload of it stays diverged, says so in its next payload, and the others
// join another resync round (a flag needs one round to spread, so a resync
// normally happens on the second complete round after a link returns).
//
// Payload layout (little-endian, no padding):
//   u32 magic 0x59505453 ("STPY"), u32 step, u32 num_tensors, u32 num_control,
//   num_control x f32 control values,
//   u32 flags (kPayloadDiverged, kPayloadHasState), u32 state floats (0
//   unless kPayloadHasState),
//   per tensor: u32 length, then `length` bytes of compress/wire.h encoding,
//   state floats x f32.
//
// Thread safety: not thread-safe; one thread (the communication thread) drives
// an instance. Payload functions are pure.
#ifndef STELLA_RUNTIME_PIPELINE_SPARSE_EXCHANGE_H_
#define STELLA_RUNTIME_PIPELINE_SPARSE_EXCHANGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/compress/compressor.h"
#include "runtime/compress/error_feedback.h"
#include "runtime/compress/wire.h"
#include "runtime/exchange/wan_mesh.h"
#include "src/base/clock.h"
#include "src/base/status.h"

namespace stella::pipeline {

inline constexpr uint32_t kPayloadMagic = 0x59505453;  // "STPY" in byte order
inline constexpr size_t kPayloadHeaderSize = 16;
// Payload flags.
inline constexpr uint32_t kPayloadDiverged = 1;  // sender's state may differ from its peers'
inline constexpr uint32_t kPayloadHasState = 2;  // the state section is present

// The block size a compressor kind emits: 16 for "cacheline", else 1. All
// clusters run the spec's compressor, so all agree on it.
uint32_t CompressorBlockSize(const std::string& kind);

// What a receiver knows about every payload of the job.
struct PayloadLayout {
  std::vector<int64_t> tensor_sizes;  // elements per tensor, model order
  size_t num_control = 0;             // dense control floats
  uint32_t block_size = 1;            // block size every tensor must use
  size_t state_floats = 0;            // state floats a kPayloadHasState payload carries
};

struct DecodedPayload {
  std::vector<float> control;
  std::vector<compress::SparseGradient> tensors;
  uint32_t flags = 0;
  std::vector<float> state;  // empty unless flags has kPayloadHasState
};

// Appends nothing: replaces *out with the payload of one step. `state`
// (state_floats floats) is carried iff flags has kPayloadHasState.
Status EncodePayload(uint32_t step, const float* control, size_t num_control,
                     const std::vector<compress::SparseGradient>& tensors, compress::ValuePrecision precision,
                     std::vector<uint8_t>* out, uint32_t flags = 0, const float* state = nullptr,
                     size_t state_floats = 0);

// Decodes and validates a payload occupying exactly data[0, n): magic, step,
// tensor and control counts, flags, every tensor's element count and block
// size against `layout`, the state size, lengths against the buffer, finite
// values. DataLoss (or InvalidArgument from the wire decoder's limits) with a
// message naming the field on any mismatch; never reads out of bounds.
StatusOr<DecodedPayload> DecodePayload(const uint8_t* data, size_t n, uint32_t step, const PayloadLayout& layout);

// How a gateway compresses its cluster's gradient; the same for the whole
// job (spec.sync), handed unchanged from SparseSync to each bucket's exchange.
struct CompressionOptions {
  // Compressor kind (required) and its options; one instance per tensor.
  compress::CompressorOptions compressor;
  // Precision of values on the wire. Default fp32.
  compress::ValuePrecision precision = compress::ValuePrecision::kFp32;
  // Keep what was not sent and add it to the next step's gradient. Default
  // true; without it unsent gradient is dropped.
  bool error_feedback = true;
  // DGC momentum-correction coefficient in [0, 1) (needs error_feedback);
  // the receivers then run plain SGD. Default 0 (off).
  double momentum_correction = 0.0;
};

struct SparseExchangeOptions {
  // Elements per parameter tensor, in model order. Required (non-empty, each
  // >= 0).
  std::vector<int64_t> tensor_sizes;
  CompressionOptions compression;
  // Dense control floats carried beside the gradient. Default 0.
  size_t num_control = 0;
  // Workers in the whole job: the aggregate is the sum / world_size. >= 1.
  int world_size = 1;
  // Workers per cluster (cluster order), for the scale of partial rounds:
  // sum / (workers of the clusters present). Empty: world_size split evenly.
  // When given, it must have one entry per cluster and sum to world_size.
  std::vector<int> cluster_workers;
  // Floats of state per resync (see the file comment): this range's
  // parameters and optimizer buffers. 0 (the default) disables
  // resynchronization: partial rounds are still survived, but clusters keep
  // whatever difference they accumulated.
  size_t state_floats = 0;
  // This gateway's cluster (entry of the mesh). Default 0.
  int cluster_index = 0;
  // Time source for the stats. Default the system clock.
  const Clock* clock = &SystemClock::Get();
};

struct ExchangeStats {
  double compress_seconds = 0;   // error feedback + selection + encoding
  double wan_seconds = 0;        // the all-gather (0 for one cluster)
  double aggregate_seconds = 0;  // decoding + summing + union
  size_t payload_bytes = 0;      // this gateway's payload
  uint64_t wan_bytes_sent = 0;   // payload_bytes x peers whose link was up
  size_t sent_elements = 0;      // gradient elements this gateway sent
  std::vector<int> missing;      // clusters whose payload this round lacks
  bool peer_left = false;        // some peer cluster said Bye (ended its job)
  int present_workers = 0;       // workers of the clusters present (the scale)
  bool resynced = false;         // this round averaged the clusters' states
  bool diverged = false;         // after this round: state may differ from peers'
};

// One tensor's exchange state, for checkpoints.
struct TensorExchangeState {
  std::string compressor;       // Compressor::SaveState
  std::vector<float> residual;  // error feedback; empty without it
  std::vector<float> velocity;  // momentum correction only, else empty
};

class SparseExchange {
 public:
  // `mesh` is owned by the caller and outlives the exchange; null (or a mesh
  // of one cluster) means a single-cluster job. InvalidArgument for bad
  // options (unknown compressor, world_size < 1, ...).
  static StatusOr<std::unique_ptr<SparseExchange>> Create(const SparseExchangeOptions& options,
                                                          exchange::WanMesh* mesh);

  // One step. `cluster_sum` (sum of all tensors' elements, model order) is
  // used as scratch and overwritten; `control` holds num_control floats.
  // Outputs: aggregate (same length as cluster_sum) = job-wide mean of what
  // was sent, zero elsewhere; control_out = job-wide mean of the control
  // values; touched[i] = ascending union of the blocks of tensor i any
  // cluster sent. density in (0, 1]. The WAN round ends by `deadline`;
  // clusters whose payload did not arrive by then are left out (see the file
  // comment), which is not an error.
  // Resynchronization: when wants_state(), pass this range's state_floats of
  // state in `state`; when stats->resynced comes back true, `state_out`
  // holds the average to install before applying the aggregate. state_out
  // may equal state (it is written after state was read). Without them the
  // gateway never carries state, so no round resyncs.
  // A failed step leaves the outputs unspecified; error feedback state may
  // have advanced, so a failed exchange ends the run.
  Status Exchange(uint32_t step, double density, float* cluster_sum, const float* control, float* aggregate,
                  float* control_out, std::vector<std::vector<uint32_t>>* touched, ExchangeStats* stats,
                  Clock::TimePoint deadline, const float* state = nullptr, float* state_out = nullptr);

  // True while this gateway is diverged and resync is enabled: the next
  // Exchange should carry the state.
  bool wants_state() const { return diverged_ && layout_.state_floats > 0; }
  bool diverged() const { return diverged_; }

  uint32_t block_size() const { return layout_.block_size; }
  const PayloadLayout& layout() const { return layout_; }
  // Checkpoints: every tensor's compressor and error-feedback state, taken
  // between steps.
  std::vector<TensorExchangeState> SaveState() const;
  // Restores what SaveState returned (one entry per tensor). DataLoss or
  // InvalidArgument naming the tensor; on error the state is partly restored
  // and the exchange must not be used.
  Status LoadState(const std::vector<TensorExchangeState>& state);

  // Tensor i's residual (error feedback), for tests; null without feedback.
  const compress::ErrorFeedback* error_feedback(size_t i) const {
    return feedback_.empty() ? nullptr : feedback_[i].get();
  }

 private:
  SparseExchange(const SparseExchangeOptions& options, exchange::WanMesh* mesh);

  SparseExchangeOptions options_;
  exchange::WanMesh* mesh_;  // not owned; may be null
  PayloadLayout layout_;
  int64_t total_elements_ = 0;
  std::vector<std::unique_ptr<compress::Compressor>> compressors_;
  std::vector<std::unique_ptr<compress::ErrorFeedback>> feedback_;  // empty without feedback
  std::vector<compress::SparseGradient> selected_;                  // reused per step
  std::vector<uint8_t> mine_;
  exchange::GatherResult gathered_;
  std::vector<double> cluster_workers_;  // resolved: one entry per cluster
  bool diverged_ = false;
};

}  // namespace stella::pipeline

#endif  // STELLA_RUNTIME_PIPELINE_SPARSE_EXCHANGE_H_
