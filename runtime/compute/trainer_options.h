// TrainerOptions: what the compute stage is built from. A plain struct in
// its own header (and INTERFACE target) so that code wiring a job to it
// needs no libtorch.
#ifndef STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_
#define STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_

#include <cstdint>
#include <string>

#include "runtime/optim/optimizer_options.h"

namespace stella::compute {

struct TrainerOptions {
  std::string model = "cnn";    // zoo name, used when torchscript is ""
  std::string torchscript;      // path of the user's TorchScript module
  bool language_model = false;  // next-token loss over [batch, seq, vocab] logits
  int hidden = 0;               // 0 = model default
  uint64_t seed = 1;            // same on every worker -> identical initial parameters
  std::string device = "auto";  // "auto" (CUDA if available), "cpu" or "cuda"
  int threads = 1;              // intra-op CPU threads; 1 keeps co-located workers off each other's cores
  // The libtorch optimizer of ddp mode (the same struct as stella mode's
  // CPU optimizer).
  optim::OptimizerOptions optimizer;
};

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_TRAINER_OPTIONS_H_
