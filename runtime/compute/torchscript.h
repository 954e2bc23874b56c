// Loading a user's TorchScript module with the checks of model_check.h.
// Private to runtime/compute (exposes torch types).
#ifndef STELLA_RUNTIME_COMPUTE_TORCHSCRIPT_H_
#define STELLA_RUNTIME_COMPUTE_TORCHSCRIPT_H_

#include <torch/script.h>

#include "runtime/compute/model_check.h"

namespace stella::compute {

// The module, after every check of CheckTorchScriptModel passed; its
// parameters require gradients (all of them are trained).
StatusOr<torch::jit::Module> LoadCheckedTorchScript(const ModelCheck& check);

}  // namespace stella::compute

#endif  // STELLA_RUNTIME_COMPUTE_TORCHSCRIPT_H_
