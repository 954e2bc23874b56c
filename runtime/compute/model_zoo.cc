#include "runtime/compute/model_zoo.h"

namespace stella::compute {

std::vector<std::string> ModelNames() { return {"mlp", "cnn"}; }

StatusOr<torch::nn::Sequential> BuildModel(const ModelOptions& o) {
  if (o.hidden < 0) return InvalidArgumentError("spec.model.hidden: must be >= 0, got " + std::to_string(o.hidden));
  torch::manual_seed(o.seed);
  const int64_t pixels = int64_t{o.image_rows} * o.image_cols;
  if (o.name == "mlp") {
    const int64_t h = o.hidden > 0 ? o.hidden : 256;
    return torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(pixels, h), torch::nn::ReLU(),
                                 torch::nn::Linear(h, h / 2), torch::nn::ReLU(),
                                 torch::nn::Linear(h / 2, o.num_classes));
  }
  if (o.name == "cnn") {
    // Two 5x5 conv blocks then a small classifier: ~50k parameters at the
    // default width, enough for ~89% on Fashion-MNIST, cheap on 2 cores.
    if (o.image_rows < 12 || o.image_cols < 12) {
      return InvalidArgumentError("model cnn needs images of at least 12x12, got " + std::to_string(o.image_rows) +
                                  "x" + std::to_string(o.image_cols));
    }
    const int64_t h = o.hidden > 0 ? o.hidden : 64;
    const int64_t out_rows = ((o.image_rows - 4) / 2 - 4) / 2;
    const int64_t out_cols = ((o.image_cols - 4) / 2 - 4) / 2;
    return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 5)), torch::nn::ReLU(),
                                 torch::nn::MaxPool2d(2), torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 5)),
                                 torch::nn::ReLU(), torch::nn::MaxPool2d(2), torch::nn::Flatten(),
                                 torch::nn::Linear(32 * out_rows * out_cols, h), torch::nn::ReLU(),
                                 torch::nn::Linear(h, o.num_classes));
  }
  std::string names;
  for (const auto& n : ModelNames()) names += (names.empty() ? "" : ", ") + n;
  return InvalidArgumentError("spec.model.name: must be one of " + names + ", got \"" + o.name + "\"");
}

}  // namespace stella::compute
