// Throughput of the CPU optimizer: element updates per second for SGD
// (momentum 0.9, Nesterov, weight decay) and Adam, on dense gradients and on
// sparse ones at density 0.01 with block size 1 and 16, for 1M- and
// 16M-element tensors, on 1 and 2 threads.
//
// Args: {elements, mode, threads}; mode 0 = dense, 1 = sparse block 1,
// 16 = sparse block 16. items_per_second counts updated elements.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/optim/optimizer.h"
#include "runtime/optim/thread_pool.h"

namespace stella {
namespace optim {
namespace {

constexpr double kDensity = 0.01;

OptimizerOptions Options(bool adam) {
  OptimizerOptions o;
  if (adam) {
    o.name = "adam";
    o.lr = 1e-3;
  } else {
    o.name = "sgd";
    o.lr = 0.01;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 1e-4;
  }
  return o;
}

void BM_Step(benchmark::State& state, bool adam) {
  const size_t n = static_cast<size_t>(state.range(0));
  const uint32_t mode = static_cast<uint32_t>(state.range(1));
  const size_t threads = static_cast<size_t>(state.range(2));

  ThreadPool::Options pool_options;
  pool_options.num_threads = threads;
  auto pool_or = ThreadPool::Create(pool_options);
  if (!pool_or.ok()) {
    state.SkipWithError(pool_or.status().ToString().c_str());
    return;
  }
  auto opt_or = TensorOptimizer::Create(Options(adam), n);
  if (!opt_or.ok()) {
    state.SkipWithError(opt_or.status().ToString().c_str());
    return;
  }
  std::unique_ptr<ThreadPool> pool = std::move(pool_or).value();
  std::unique_ptr<TensorOptimizer> opt = std::move(opt_or).value();

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> param(n);
  for (float& x : param) x = dist(rng);

  std::vector<uint32_t> indices;
  std::vector<float> grad;
  size_t updated = n;
  if (mode == 0) {
    grad.resize(n);
  } else {
    const size_t num_blocks = (n + mode - 1) / mode;
    const size_t want = static_cast<size_t>(kDensity * static_cast<double>(num_blocks));
    // Every stride-th block with a random offset: ascending, evenly spread.
    const size_t stride = num_blocks / want;
    for (size_t b = rng() % stride; b < num_blocks && indices.size() < want; b += stride) {
      indices.push_back(static_cast<uint32_t>(b));
    }
    updated = indices.size() * mode;
    grad.resize(updated);
  }
  // Small gradients keep the parameters bounded across many iterations.
  for (float& x : grad) x = 1e-3f * dist(rng);

  for (auto _ : state) {
    if (mode == 0) {
      opt->StepDense(param.data(), grad.data(), pool.get());
    } else {
      Status st = opt->StepSparse(param.data(), indices.data(), indices.size(), mode, grad.data(), pool.get());
      if (!st.ok()) {
        state.SkipWithError(st.ToString().c_str());
        break;
      }
    }
    benchmark::DoNotOptimize(param.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(updated));
  state.SetLabel(mode == 0 ? "dense" : "sparse block " + std::to_string(mode));
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "mode", "threads"});
  for (int64_t n : {int64_t{1} << 20, int64_t{1} << 24}) {
    for (int64_t mode : {0, 1, 16}) {
      for (int64_t threads : {1, 2}) b->Args({n, mode, threads});
    }
  }
  b->UseRealTime();
}

void BM_Sgd(benchmark::State& state) { BM_Step(state, false); }
void BM_Adam(benchmark::State& state) { BM_Step(state, true); }

BENCHMARK(BM_Sgd)->Apply(Args);
BENCHMARK(BM_Adam)->Apply(Args);

}  // namespace
}  // namespace optim
}  // namespace stella

BENCHMARK_MAIN();
