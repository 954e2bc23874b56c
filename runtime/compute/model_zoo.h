// The built-in model zoo: small image classifiers that train in minutes on a
// couple of CPU cores, selected by name from spec.model.
//
// Thread safety: BuildModel is a pure function; the returned module is owned
// by the caller and used by one thread at a time.
#ifndef STELLA_RUNTIME_COMPUTE_MODEL_ZOO_H_
#define STELLA_RUNTIME_COMPUTE_MODEL_ZOO_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella::compute {

struct ModelOptions {
  std::string name = "cnn";  // "mlp" or "cnn"
  int hidden = 0;            // width of the hidden layer; 0 = the model's default
  int image_rows = 28;
  int image_cols = 28;
  int num_classes = 10;
  uint64_t seed = 1;  // parameters are initialised identically on every worker
};

// Names the zoo knows, for error messages.
std::vector<std::string> ModelNames();

// Builds the model with deterministic initial parameters (seeded).
StatusOr<torch::nn::Sequential> BuildModel(const ModelOptions& options);

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_MODEL_ZOO_H_
