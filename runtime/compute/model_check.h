// Checks a user's TorchScript model against the data it will train on,
// before any worker starts: is the file TorchScript, written by a PyTorch
// this runtime's libtorch can read, does forward take one tensor, and does
// one forward on a dummy batch of the data's shape give outputs the task's
// loss accepts. No torch types here, so callers need no libtorch headers.
//
// Thread safety: pure functions.
#ifndef STELLA_RUNTIME_COMPUTE_MODEL_CHECK_H_
#define STELLA_RUNTIME_COMPUTE_MODEL_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"
#include "src/base/status.h"

namespace stella::compute {

struct ModelCheck {
  std::string path;                    // the TorchScript file
  bool language_model = false;         // logits [batch, seq, vocab], else [batch, classes]
  std::vector<int64_t> example_shape;  // one example's input (Dataset::InputShape)
  bool token_input = false;            // int64 token ids, else float32
  int num_classes = 0;                 // every label / target token is below this
};

// The check for a model trained on `train` and evaluated on `validation`.
ModelCheck ModelCheckFor(const std::string& path, bool language_model, const data::Dataset& train,
                         const data::Dataset& validation);

// InvalidArgument (FailedPrecondition for a too-new file) whose message
// starts with "spec.model.torchscript: PATH: " and says what is wrong.
Status CheckTorchScriptModel(const ModelCheck& check);

// The libtorch version this runtime was built with, e.g. "1.13.0".
std::string LibtorchVersion();

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_MODEL_CHECK_H_
