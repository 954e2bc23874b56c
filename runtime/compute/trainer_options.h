// TrainerOptions: what the compute stage is built from. A plain struct in
// its own header (and INTERFACE target) so that code wiring a job to it
// needs no libtorch.
#ifndef STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_
#define STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_

#include <cstdint>
#include <string>

namespace stella::compute {

struct TrainerOptions {
  std::string model = "cnn";  // zoo name
  int hidden = 0;             // 0 = model default
  uint64_t seed = 1;          // same on every worker -> identical initial parameters
  std::string device = "auto";  // "auto" (CUDA if available), "cpu" or "cuda"
  int threads = 1;            // intra-op CPU threads; 1 keeps co-located workers off each other's cores
  // Optimizer used when the runtime applies updates with libtorch (ddp mode).
  std::string optimizer = "adam";  // "sgd" | "adam" | "adamw"
  double learning_rate = 1e-3;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
};

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_
