// Throughput of the gradient selectors against this machine's single-core
// streaming read bandwidth, measured in the same run so the ratio is
// meaningful on a shared, noisy machine.
//
//   compress_benchmark --benchmark_min_time=0.2
//
// Each selector runs repeatedly on one gradient (its adaptive threshold is
// therefore in steady state, as it is for a tensor across training steps).
// bytes_per_second counts the fp32 input read (4 bytes per element).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/compress/compressor.h"
#include "runtime/compress/wire.h"

namespace stella {
namespace compress {
namespace {

constexpr double kDensity = 0.01;

// Roughly normal values (Irwin-Hall sum of 4 uniforms), generated fast so
// that setup does not dominate the 16M-element runs.
std::vector<float> MakeGradient(size_t n) {
  std::vector<float> g(n);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  auto next = [&s] {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (float& v : g) {
    const uint64_t r = next();
    float sum = 0;
    for (int i = 0; i < 4; ++i) sum += static_cast<float>((r >> (16 * i)) & 0xFFFF) / 65536.0f;
    v = (sum - 2.0f) * 1.7320508f * 1e-3f;
  }
  return g;
}

void BM_Compress(benchmark::State& state, const std::string& kind) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> g = MakeGradient(n);
  CompressorOptions options;
  options.kind = kind;
  auto created = CreateCompressor(options);
  if (!created.ok()) {
    state.SkipWithError(created.status().ToString().c_str());
    return;
  }
  std::unique_ptr<Compressor> c = std::move(created).value();
  SparseGradient out;
  // Warm up: first-call estimate, scratch allocation.
  if (!c->Compress(g.data(), n, kDensity, &out).ok()) {
    state.SkipWithError("Compress failed");
    return;
  }
  const CompressorStats before = c->stats();
  for (auto _ : state) {
    Status st = c->Compress(g.data(), n, kDensity, &out);
    if (!st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(out.indices.data());
    benchmark::ClobberMemory();
  }
  const CompressorStats after = c->stats();
  const double calls = static_cast<double>(after.calls - before.calls);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n) *
                          static_cast<int64_t>(sizeof(float)));
  state.counters["selected"] = static_cast<double>(out.values.size());
  state.counters["passes/call"] = calls > 0 ? static_cast<double>(after.input_passes - before.input_passes) / calls : 0;
  state.counters["candidates"] = static_cast<double>(after.last_candidates);
}

// Single-core streaming read: a float sum into 8 independent 4-wide vector
// accumulators (GCC/Clang vector extensions, so it is SIMD and kept in
// registers), i.e. bounded by memory, not by
// arithmetic or a dependency chain. The fairest baseline for "read once".
void BM_MemoryReadBandwidth(benchmark::State& state) {
  typedef float V4 __attribute__((vector_size(16)));
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> g = MakeGradient(n);
  auto load = [](const float* q) {
    V4 v;
    std::memcpy(&v, q, sizeof(v));
    return v;
  };
  for (auto _ : state) {
    // Named accumulators (not an array) so they live in registers at -O2.
    V4 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
    const float* p = g.data();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 += load(p + i);
      a1 += load(p + i + 4);
      a2 += load(p + i + 8);
      a3 += load(p + i + 12);
      a4 += load(p + i + 16);
      a5 += load(p + i + 20);
      a6 += load(p + i + 24);
      a7 += load(p + i + 28);
    }
    float sum = 0;
    for (; i < n; ++i) sum += p[i];
    const V4 t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    sum += (t[0] + t[1]) + (t[2] + t[3]);
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n) *
                          static_cast<int64_t>(sizeof(float)));
}

// Wire encode/decode of a cache-line selection at fp16 (bytes = encoded).
void BM_EncodeDecodeFp16(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<float> g = MakeGradient(n);
  CompressorOptions options;
  options.kind = "cacheline";
  auto c = std::move(CreateCompressor(options)).value();
  SparseGradient sparse;
  if (!c->Compress(g.data(), n, kDensity, &sparse).ok()) {
    state.SkipWithError("Compress failed");
    return;
  }
  std::vector<uint8_t> buf;
  for (auto _ : state) {
    if (!EncodeSparse(sparse, ValuePrecision::kFp16, &buf).ok()) {
      state.SkipWithError("EncodeSparse failed");
      break;
    }
    auto decoded = DecodeSparse(buf.data(), buf.size(), DecodeLimits());
    if (!decoded.ok()) {
      state.SkipWithError(decoded.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(decoded->values.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(buf.size()));
  state.counters["wire_bytes"] = static_cast<double>(buf.size());
}

constexpr int64_t k1M = int64_t{1} << 20;
constexpr int64_t k16M = int64_t{16} << 20;

BENCHMARK(BM_MemoryReadBandwidth)->Arg(k1M)->Arg(k16M)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Compress, topk, std::string("topk"))->Arg(k1M)->Arg(k16M)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Compress, randomk, std::string("randomk"))->Arg(k1M)->Arg(k16M)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Compress, threshold, std::string("threshold"))->Arg(k1M)->Arg(k16M)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Compress, cacheline, std::string("cacheline"))->Arg(k1M)->Arg(k16M)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeDecodeFp16)->Arg(k1M)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace compress
}  // namespace stella

BENCHMARK_MAIN();
