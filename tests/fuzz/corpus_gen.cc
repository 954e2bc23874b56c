// fuzz_corpus_gen: writes the binary seed corpora of the fuzz targets, built
// with the real encoders so every "valid" seed is valid by construction.
//
//   fuzz_corpus_gen <corpus dir>     # e.g. tests/fuzz/corpus
//
// Writes <dir>/{frame,sparse_wire,decision,idx}_fuzzer/<name>; deterministic,
// so rerunning it reproduces the committed files. The manifest_fuzzer seeds
// are text and written by hand.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runtime/compress/wire.h"
#include "runtime/tuner/decision.h"
#include "src/net/frame.h"
#include "src/net/memory_stream.h"

namespace stella {
namespace {

using Bytes = std::vector<uint8_t>;

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("mkdir " + path, errno);
  return Status::Ok();
}

Status WriteFile(const std::string& path, const Bytes& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return ErrnoError("cannot create " + path, errno);
  const size_t n = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = n == bytes.size() && std::fclose(f) == 0;
  if (!ok) return IoError("cannot write " + std::to_string(bytes.size()) + " bytes to " + path);
  return Status::Ok();
}

// One encoded frame, as WriteFrame puts it on the wire.
StatusOr<Bytes> Frame(net::FrameType type, uint32_t tag, const Bytes& payload) {
  const Clock::TimePoint deadline = SystemClock::Get().Now() + std::chrono::seconds(10);
  net::MemoryStreamOptions options;
  options.capacity_bytes = net::kFrameOverheadBytes + payload.size();
  auto [writer, reader] = net::CreateMemoryStreamPair(options);
  STELLA_RETURN_IF_ERROR(net::WriteFrame(*writer, type, tag, payload.data(), payload.size(), deadline));
  Bytes out(options.capacity_bytes);
  STELLA_RETURN_IF_ERROR(reader->ReadAll(out.data(), out.size(), deadline));
  return out;
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

compress::SparseGradient Sparse(uint64_t num_elements, uint32_t block_size, std::vector<uint32_t> indices) {
  compress::SparseGradient sg;
  sg.num_elements = num_elements;
  sg.block_size = block_size;
  sg.indices = std::move(indices);
  sg.values.resize(compress::CoveredElements(sg));
  for (size_t i = 0; i < sg.values.size(); ++i) {
    sg.values[i] = (static_cast<float>(i % 7) - 3.0f) * 0.125f;
  }
  return sg;
}

tuner::Decision SampleDecision() {
  tuner::Decision d;
  d.round = 3;
  d.apply_at_step = 120;
  d.density = 0.00631;
  d.worker_ids = {0, 1, 4};
  d.batch_sizes = {43, 21, 64};
  d.reason = "link onprem->cloud at 92 Mbit/s";
  return d;
}

// IDX files in memory, prefixed by the fuzzer's 2-byte split point.
Bytes IdxSeed(uint32_t count, uint32_t rows, uint32_t cols, uint8_t label_base) {
  auto be32 = [](Bytes* out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
  };
  Bytes images;
  be32(&images, 0x803);
  be32(&images, count);
  be32(&images, rows);
  be32(&images, cols);
  for (uint32_t i = 0; i < count * rows * cols; ++i) images.push_back(static_cast<uint8_t>(i * 37));
  Bytes labels;
  be32(&labels, 0x801);
  be32(&labels, count);
  for (uint32_t i = 0; i < count; ++i) labels.push_back(static_cast<uint8_t>(label_base + i % 10));
  Bytes seed = {static_cast<uint8_t>(images.size()), static_cast<uint8_t>(images.size() >> 8)};
  return Concat({seed, images, labels});
}

Status Generate(const std::string& root) {
  using net::FrameType;
  STELLA_RETURN_IF_ERROR(MakeDir(root));
  auto put = [&](const std::string& target, const std::string& name, const Bytes& b) {
    STELLA_RETURN_IF_ERROR(MakeDir(root + "/" + target));
    return WriteFile(root + "/" + target + "/" + name, b);
  };

  // sparse_wire_fuzzer: every precision with both index encodings (the
  // encoder picks chunked for clustered indices, absolute for spread ones),
  // partial last blocks, special values and the empty gradient.
  std::vector<std::pair<std::string, compress::SparseGradient>> gradients = {
      {"clustered_b1", Sparse(1000, 1, {0, 1, 2, 5, 900, 999})},
      {"spread_b1", Sparse(300000, 1, {7, 70000, 140000, 299999})},
      {"clustered_b4_partial", Sparse(1001, 4, {0, 3, 250})},
      {"spread_b16", Sparse(16u * 200000 + 3, 16, {1, 65536, 131072, 200000})},
      {"empty", Sparse(10, 2, {})},
  };
  compress::SparseGradient special = Sparse(8, 1, {0, 1, 2, 3, 4, 5, 6, 7});
  special.values = {
      0.0f,     -0.0f,   std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 1e-7f,
      70000.0f, 3.0e38f, std::numeric_limits<float>::quiet_NaN()};
  gradients.emplace_back("special_values", special);
  const compress::ValuePrecision precisions[] = {compress::ValuePrecision::kFp32, compress::ValuePrecision::kFp16,
                                                 compress::ValuePrecision::kBf16};
  Bytes sparse_payload;
  for (const auto& [name, sg] : gradients) {
    for (compress::ValuePrecision p : precisions) {
      Bytes out;
      STELLA_RETURN_IF_ERROR(compress::EncodeSparse(sg, p, &out));
      STELLA_RETURN_IF_ERROR(put("sparse_wire_fuzzer", name + "_" + compress::ValuePrecisionName(p), out));
      if (name == "clustered_b1" && p == compress::ValuePrecision::kFp16) sparse_payload = out;
    }
  }

  // decision_fuzzer.
  Bytes decision;
  STELLA_RETURN_IF_ERROR(tuner::EncodeDecision(SampleDecision(), &decision));
  STELLA_RETURN_IF_ERROR(put("decision_fuzzer", "three_workers", decision));
  tuner::Decision bare;
  bare.round = 1;
  bare.density = 1.0;
  Bytes bare_bytes;
  STELLA_RETURN_IF_ERROR(tuner::EncodeDecision(bare, &bare_bytes));
  STELLA_RETURN_IF_ERROR(put("decision_fuzzer", "no_workers", bare_bytes));

  // frame_fuzzer: one frame of each type, a stream of several, and damaged
  // frames (checksum, truncation); plus a bare Hello payload.
  STELLA_ASSIGN_OR_RETURN(Bytes hello, net::EncodeHello({"fashion-cnn-demo", 1}));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "hello_payload", hello));
  Bytes dense(64);
  for (size_t i = 0; i < dense.size(); ++i) dense[i] = static_cast<uint8_t>(i * 13);
  STELLA_ASSIGN_OR_RETURN(Bytes f_hello, Frame(FrameType::kHello, 0, hello));
  STELLA_ASSIGN_OR_RETURN(Bytes f_dense, Frame(FrameType::kDense, 7, dense));
  STELLA_ASSIGN_OR_RETURN(Bytes f_sparse, Frame(FrameType::kSparse, 8, sparse_payload));
  STELLA_ASSIGN_OR_RETURN(Bytes f_control, Frame(FrameType::kControl, 9, decision));
  STELLA_ASSIGN_OR_RETURN(Bytes f_bye, Frame(FrameType::kBye, 0, {}));
  STELLA_ASSIGN_OR_RETURN(Bytes f_heartbeat, Frame(FrameType::kHeartbeat, 42, {}));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "hello", f_hello));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "dense", f_dense));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "sparse", f_sparse));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "control", f_control));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "bye", f_bye));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "heartbeat", f_heartbeat));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "session", Concat({f_hello, f_heartbeat, f_dense, f_control, f_bye})));
  Bytes bad_crc = f_dense;
  bad_crc.back() ^= 0x01;
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "dense_bad_checksum", bad_crc));
  STELLA_RETURN_IF_ERROR(put("frame_fuzzer", "dense_truncated", Bytes(f_dense.begin(), f_dense.begin() + 30)));

  // idx_fuzzer: a tiny valid pair, an empty data set, labels past 10 classes.
  STELLA_RETURN_IF_ERROR(put("idx_fuzzer", "three_2x2", IdxSeed(3, 2, 2, 0)));
  STELLA_RETURN_IF_ERROR(put("idx_fuzzer", "empty_28x28", IdxSeed(0, 28, 28, 0)));
  STELLA_RETURN_IF_ERROR(put("idx_fuzzer", "twelve_1x3_many_classes", IdxSeed(12, 1, 3, 5)));
  return Status::Ok();
}

}  // namespace
}  // namespace stella

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  stella::Status s = stella::Generate(argv[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "fuzz_corpus_gen: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
