// sampler_order N WORLD SEED BATCH STEPS: prints, for each step, each rank's
// batch of example indices as drawn by data::BatchSampler (one line per
// step: rank 0's indices, then rank 1's, ...). Tests that compare against
// real PyTorch feed it the runtime's exact data order.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "runtime/data/dataset.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: sampler_order N WORLD SEED BATCH STEPS\n");
    return 2;
  }
  const int64_t n = std::atoll(argv[1]);
  const int world = std::atoi(argv[2]);
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  const int batch = std::atoi(argv[4]);
  const int steps = std::atoi(argv[5]);
  std::vector<stella::data::BatchSampler> samplers;
  for (int r = 0; r < world; ++r) samplers.emplace_back(n, r, world, seed);
  for (int s = 0; s < steps; ++s) {
    for (auto& sampler : samplers) {
      for (int64_t i : sampler.Next(batch)) std::printf("%lld ", static_cast<long long>(i));
    }
    std::printf("\n");
  }
  return 0;
}
