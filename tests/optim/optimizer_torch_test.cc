// Cross-checks TensorOptimizer::StepDense against libtorch's own optimizers
// (torch::optim::SGD, Adam, AdamW), which the runtime's dense mode uses.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/optim/optimizer.h"

namespace stella {
namespace optim {
namespace {

constexpr int kSteps = 20;
constexpr int64_t kSize = 10007;  // not a multiple of any vector width
constexpr double kTolerance = 1e-6;

// Largest elementwise difference relative to the tensor's largest magnitude
// (max_i |got_i - want_i| / max_i |want_i|). Elementwise ratios are no
// measure here: libtorch's vector kernels fuse p + alpha * d into one FMA and
// ours round the product first, a difference of half an ulp of the operands
// per step, which is unbounded relative to an element that cancels to ~0.
double Deviation(const float* got, const float* want, int64_t n) {
  double max_diff = 0;
  double max_abs = 0;
  for (int64_t i = 0; i < n; ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(want[i])));
  }
  return max_abs > 0 ? max_diff / max_abs : max_diff;
}

struct Result {
  double max_param = 0;
  double max_state = 0;
};

// Steps a libtorch optimizer (`make` builds it over one parameter) and a
// TensorOptimizer on the same random parameter and gradients.
template <typename MakeTorch>
Result Compare(const OptimizerOptions& options, MakeTorch make, const char* state_key) {
  torch::manual_seed(7);
  torch::Tensor param = torch::randn({kSize}, torch::kFloat32);
  std::vector<float> ours(param.data_ptr<float>(), param.data_ptr<float>() + kSize);
  torch::Tensor torch_param = param.clone().set_requires_grad(true);
  auto torch_opt = make(std::vector<torch::Tensor>{torch_param});

  auto opt = TensorOptimizer::Create(options, kSize);
  EXPECT_TRUE(opt.ok()) << opt.status().ToString();
  Result result;
  for (int s = 0; s < kSteps; ++s) {
    torch::Tensor grad = torch::randn({kSize}, torch::kFloat32) * 0.5;
    torch_param.mutable_grad() = grad.clone();
    torch_opt.step();
    (*opt)->StepDense(ours.data(), grad.data_ptr<float>());
  }
  const float* expected = torch_param.data_ptr<float>();
  result.max_param = Deviation(ours.data(), expected, kSize);
  // The first state buffer (momentum_buffer or exp_avg), through the state map.
  auto& state = torch_opt.state();
  EXPECT_EQ(state.size(), state_key != nullptr ? 1u : 0u);
  if (state_key != nullptr && !state.empty()) {
    torch::Tensor buffer;
    torch::optim::OptimizerParamState& s = *state.begin()->second;
    if (std::string(state_key) == "momentum_buffer") {
      buffer = static_cast<torch::optim::SGDParamState&>(s).momentum_buffer();
    } else if (std::string(state_key) == "adam") {
      buffer = static_cast<torch::optim::AdamParamState&>(s).exp_avg();
    } else {
      buffer = static_cast<torch::optim::AdamWParamState&>(s).exp_avg();
    }
    result.max_state = Deviation((*opt)->first_moment().data(), buffer.data_ptr<float>(), kSize);
  }
  return result;
}

void Report(const std::string& name, const Result& r) {
  std::printf("[ deviation] %-40s param %.3g  state %.3g\n", name.c_str(), r.max_param, r.max_state);
  EXPECT_LE(r.max_param, kTolerance) << name;
  EXPECT_LE(r.max_state, kTolerance) << name;
}

TEST(OptimTorchTest, SgdMatchesTorch) {
  struct Config {
    double momentum;
    bool nesterov;
    double wd;
  };
  for (const Config& c : {Config{0, false, 0}, Config{0.9, false, 0}, Config{0.9, true, 0}, Config{0.9, true, 1e-2},
                          Config{0, false, 1e-2}}) {
    OptimizerOptions o;
    o.name = "sgd";
    o.lr = 0.05;
    o.momentum = c.momentum;
    o.nesterov = c.nesterov;
    o.weight_decay = c.wd;
    auto make = [&](std::vector<torch::Tensor> params) {
      return torch::optim::SGD(
          params,
          torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
    };
    Report(
        "sgd momentum=" + std::to_string(c.momentum) + (c.nesterov ? " nesterov" : "") + " wd=" + std::to_string(c.wd),
        Compare(o, make, c.momentum != 0 ? "momentum_buffer" : nullptr));
  }
}

TEST(OptimTorchTest, AdamMatchesTorch) {
  for (double wd : {0.0, 1e-2}) {
    OptimizerOptions o;
    o.name = "adam";
    o.lr = 1e-2;
    o.weight_decay = wd;
    auto make = [&](std::vector<torch::Tensor> params) {
      return torch::optim::Adam(
          params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
    };
    Report("adam wd=" + std::to_string(wd), Compare(o, make, "adam"));
  }
}

TEST(OptimTorchTest, AdamWMatchesTorch) {
  for (double wd : {0.0, 1e-2, 0.1}) {
    OptimizerOptions o;
    o.name = "adamw";
    o.lr = 1e-2;
    o.weight_decay = wd;
    o.beta1 = 0.8;
    o.beta2 = 0.99;
    auto make = [&](std::vector<torch::Tensor> params) {
      return torch::optim::AdamW(
          params, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
    };
    Report("adamw wd=" + std::to_string(wd), Compare(o, make, "adamw"));
  }
}

}  // namespace
}  // namespace optim
}  // namespace stella
