// Trainer: the compute stage. Owns a libtorch model (a zoo model or the
// user's TorchScript module) on the best available
// device (CUDA when present, else CPU), runs forward/backward on batches, and
// exposes gradients and parameters as flat fp32 host buffers so that the
// exchange and optimizer stages never see a tensor.
//
// Parameter order is the module's parameters() order; every worker builds the
// same model (seeded zoo model, or the same TorchScript file), so flat
// offsets and initial values agree across workers.
//
// Thread safety: not thread-safe; one training thread drives it.
#ifndef STELLA_RUNTIME_COMPUTE_TRAINER_H_
#define STELLA_RUNTIME_COMPUTE_TRAINER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/compute/trainer_options.h"
#include "runtime/data/dataset.h"
#include "src/base/status.h"

namespace stella::compute {

struct EvalResult {
  double accuracy = 0;  // -1 for a language model (no accuracy)
  double loss = 0;
  int64_t examples = 0;
};

class Trainer {
 public:
  // A trainer for batches of `data` (its format and example shape); labels
  // or target tokens are below `num_classes`. A TorchScript model is checked
  // first (model_check.h).
  static StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options, const data::Dataset& data,
                                                   int num_classes);
  // Fashion-MNIST-shaped (idx) data.
  static StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options, int image_rows, int image_cols,
                                                   int num_classes);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // "cpu" or "cuda:0".
  std::string device_name() const;
  int64_t num_parameters() const;
  // Element count of each parameter tensor, in order.
  const std::vector<int64_t>& tensor_sizes() const;

  // Zeroes gradients, runs forward and backward on the given examples and
  // returns the mean cross-entropy loss (per token for a language model).
  // Gradients stay in the model.
  StatusOr<float> ForwardBackward(const data::Dataset& data, const std::vector<int64_t>& indices);

  // The per-tensor pipeline's path. Before each layer of the model (in
  // forward order) `gate` gets that layer's tensor indices and may wait for
  // and install their parameters (layers without parameters are not gated);
  // an error from it aborts the step. During backward an autograd hook on
  // every parameter copies its gradient, times `scale`, into `buffer` at the
  // tensor's flat offset (through a pinned host tensor on CUDA) and then
  // calls ready(i) — possibly on an autograd device thread. Tensors that get
  // no gradient are not reported. The copied values equal what
  // CopyGradientsTo would give after ForwardBackward.
  struct GradientSink {
    float* buffer = nullptr;  // num_parameters() floats
    float scale = 1.0f;       // unequal batches weigh a worker's gradient
    std::function<void(size_t tensor)> ready;
  };
  using LayerGate = std::function<Status(const std::vector<size_t>& tensors)>;
  StatusOr<float> ForwardBackwardPipelined(const data::Dataset& data, const std::vector<int64_t>& indices,
                                           const LayerGate& gate, const GradientSink& sink);
  // Tensor indices of each layer, forward order (empty for parameterless
  // layers). A TorchScript module is one layer: its forward is opaque.
  const std::vector<std::vector<size_t>>& layer_tensors() const;

  // Flat fp32 copies of all gradients / parameters (num_parameters() floats).
  void CopyGradientsTo(float* out) const;
  void SetGradients(const float* in);
  void CopyParametersTo(float* out) const;
  void SetParameters(const float* in);
  // One tensor's parameters, for the per-tensor pipeline (tensor i).
  void SetTensorParameters(size_t i, const float* in);

  // Applies the libtorch optimizer to the gradients currently in the model.
  void OptimizerStep();

  // The libtorch optimizer's state (moments, step counts; ddp mode), for
  // checkpoints: opaque bytes in libtorch's archive format.
  StatusOr<std::string> SaveOptimizerState() const;
  // Restores what SaveOptimizerState returned for a trainer with the same
  // model and optimizer, so later steps are bit-identical to the saved
  // trainer's. DataLoss when libtorch cannot read the bytes.
  Status LoadOptimizerState(const std::string& bytes);

  // Accuracy and mean loss over a whole data set, in batches of `batch_size`.
  EvalResult Evaluate(const data::Dataset& data, int batch_size = 1000);

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  static Status BuildModel(const TrainerOptions& o, const data::Dataset& data, int classes, Impl& impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_TRAINER_H_
