// OptimizerOptions: an optimizer's hyperparameters, shared by the CPU
// optimizer (stella mode) and the compute stage's libtorch optimizer (ddp
// mode), so both read one struct. A plain struct in its own header (and
// INTERFACE target) so the compute stage needs no optimizer code.
#ifndef STELLA_RUNTIME_OPTIM_OPTIMIZER_OPTIONS_H_
#define STELLA_RUNTIME_OPTIM_OPTIMIZER_OPTIONS_H_

#include <string>

namespace stella::optim {

// Hyperparameters, named after the StellaJob spec's optimizer section
// (error messages use the spec names: optimizer.learningRate, ...).
struct OptimizerOptions {
  // "sgd", "adam" or "adamw" (lower case). Default "sgd".
  std::string name = "sgd";
  // Learning rate, > 0. Default 0.01.
  double lr = 0.01;
  // SGD momentum in [0, 1); 0 (the default) keeps no momentum buffer. Must be
  // 0 for adam/adamw. Dampening is always 0.
  double momentum = 0.0;
  // SGD Nesterov momentum; needs momentum > 0. Default false.
  bool nesterov = false;
  // >= 0. SGD and Adam: L2 term added to the gradient (g += wd * p). AdamW:
  // decoupled decay, p *= 1 - lr * wd before the update. Default 0 (note:
  // torch's AdamW defaults to 0.01; set it explicitly to match).
  double weight_decay = 0.0;
  // Adam/AdamW moment decay rates, each in [0, 1). Defaults 0.9 and 0.999.
  double beta1 = 0.9;
  double beta2 = 0.999;
  // Adam/AdamW denominator term, >= 0. Default 1e-8.
  double eps = 1e-8;
};

}  // namespace stella::optim

#endif  // STELLA_RUNTIME_OPTIM_OPTIMIZER_OPTIONS_H_
