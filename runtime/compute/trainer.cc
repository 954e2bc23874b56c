#include "runtime/compute/trainer.h"

#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <unordered_map>

#include "runtime/compute/model_zoo.h"

namespace stella::compute {
namespace {

// Fashion-MNIST pixel statistics: inputs are normalised to mean 0, std 1.
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;

std::pair<torch::Tensor, torch::Tensor> MakeBatch(const data::Dataset& d, const std::vector<int64_t>& idx) {
  const int64_t n = static_cast<int64_t>(idx.size());
  const int64_t pixels = int64_t{d.rows} * d.cols;
  auto x = torch::empty({n, 1, d.rows, d.cols}, torch::kFloat32);
  auto y = torch::empty({n}, torch::kInt64);
  float* xp = x.data_ptr<float>();
  int64_t* yp = y.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = d.images.data() + idx[static_cast<size_t>(i)] * pixels;
    for (int64_t p = 0; p < pixels; ++p) xp[i * pixels + p] = (src[p] / 255.0f - kPixelMean) / kPixelStd;
    yp[i] = d.labels[static_cast<size_t>(idx[static_cast<size_t>(i)])];
  }
  return {x, y};
}

}  // namespace

struct Trainer::Impl {
  torch::Device device{torch::kCPU};
  torch::nn::Sequential model{nullptr};
  std::vector<torch::Tensor> params;
  std::vector<int64_t> sizes;
  int64_t total = 0;
  std::vector<size_t> offsets;                 // flat offset per tensor
  std::vector<std::vector<size_t>> layers;     // tensor indices per Sequential entry
  std::vector<torch::Tensor> staging;          // pinned host copies (CUDA only), lazily made
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  // Set only during ForwardBackwardPipelined; the hooks read it.
  const GradientSink* sink = nullptr;

  // Autograd hook of tensor i: the gradient backward just produced for it.
  void OnGradient(size_t i, const torch::Tensor& grad) {
    if (sink == nullptr) return;
    torch::NoGradGuard no_grad;
    torch::Tensor host;
    if (grad.device().is_cpu()) {
      host = grad.contiguous();
    } else {
      if (!staging[i].defined()) {
        staging[i] = torch::empty(grad.sizes(), torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(true));
      }
      staging[i].copy_(grad);  // synchronous: the bytes are on the host when it returns
      host = staging[i];
    }
    const float* src = host.data_ptr<float>();
    float* dst = sink->buffer + offsets[i];
    const size_t n = static_cast<size_t>(sizes[i]);
    if (sink->scale == 1.0f) {
      std::memcpy(dst, src, sizeof(float) * n);
    } else {
      for (size_t k = 0; k < n; ++k) dst[k] = src[k] * sink->scale;
    }
    sink->ready(i);
  }
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& o, int rows, int cols, int classes) {
  auto impl = std::make_unique<Impl>();
  try {
    torch::set_num_threads(std::max(1, o.threads));
    if (o.device == "cuda" && !torch::cuda::is_available()) {
      return FailedPreconditionError("device \"cuda\" requested but CUDA is not available in this build/machine");
    }
    if (o.device != "auto" && o.device != "cpu" && o.device != "cuda") {
      return InvalidArgumentError("device must be auto, cpu or cuda, got \"" + o.device + "\"");
    }
    bool cuda = o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available());
    impl->device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);

    ModelOptions mo;
    mo.name = o.model;
    mo.hidden = o.hidden;
    mo.image_rows = rows;
    mo.image_cols = cols;
    mo.num_classes = classes;
    mo.seed = o.seed;
    STELLA_ASSIGN_OR_RETURN(impl->model, BuildModel(mo));
    impl->model->to(impl->device);
    impl->params = impl->model->parameters();
    std::unordered_map<const void*, size_t> index;
    for (size_t i = 0; i < impl->params.size(); ++i) {
      const auto& p = impl->params[i];
      index[p.unsafeGetTensorImpl()] = i;
      impl->offsets.push_back(static_cast<size_t>(impl->total));
      impl->sizes.push_back(p.numel());
      impl->total += p.numel();
    }
    for (const auto& layer : *impl->model) {
      std::vector<size_t> tensors;
      for (const auto& p : layer.ptr()->parameters()) tensors.push_back(index.at(p.unsafeGetTensorImpl()));
      impl->layers.push_back(std::move(tensors));
    }
    impl->staging.resize(impl->params.size());
    Impl* raw = impl.get();  // outlives the parameters' hooks: both die with the Trainer
    for (size_t i = 0; i < impl->params.size(); ++i) {
      impl->params[i].register_hook([raw, i](const torch::Tensor& grad) { raw->OnGradient(i, grad); });
    }
    if (o.optimizer == "sgd") {
      impl->optimizer = std::make_unique<torch::optim::SGD>(
          impl->params, torch::optim::SGDOptions(o.learning_rate)
                            .momentum(o.momentum)
                            .nesterov(o.nesterov)
                            .weight_decay(o.weight_decay));
    } else if (o.optimizer == "adam") {
      impl->optimizer = std::make_unique<torch::optim::Adam>(
          impl->params, torch::optim::AdamOptions(o.learning_rate)
                            .betas({o.beta1, o.beta2})
                            .eps(o.epsilon)
                            .weight_decay(o.weight_decay));
    } else if (o.optimizer == "adamw") {
      impl->optimizer = std::make_unique<torch::optim::AdamW>(
          impl->params, torch::optim::AdamWOptions(o.learning_rate)
                            .betas({o.beta1, o.beta2})
                            .eps(o.epsilon)
                            .weight_decay(o.weight_decay));
    } else {
      return InvalidArgumentError("spec.optimizer.name: must be one of sgd, adam, adamw, got \"" + o.optimizer + "\"");
    }
  } catch (const c10::Error& e) {
    return InternalError(std::string("libtorch: ") + e.what_without_backtrace());
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

std::string Trainer::device_name() const { return impl_->device.str(); }
int64_t Trainer::num_parameters() const { return impl_->total; }
const std::vector<int64_t>& Trainer::tensor_sizes() const { return impl_->sizes; }

StatusOr<float> Trainer::ForwardBackward(const data::Dataset& d, const std::vector<int64_t>& idx) {
  try {
    impl_->model->train();
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    for (auto& p : impl_->params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    auto logits = impl_->model->forward(x);
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    return loss.item<float>();
  } catch (const c10::Error& e) {
    return InternalError(std::string("forward/backward: ") + e.what_without_backtrace());
  }
}

StatusOr<float> Trainer::ForwardBackwardPipelined(const data::Dataset& d, const std::vector<int64_t>& idx,
                                                  const LayerGate& gate, const GradientSink& sink) {
  struct SinkScope {  // the hooks see the sink for this backward only
    Impl* impl;
    ~SinkScope() { impl->sink = nullptr; }
  } scope{impl_.get()};
  try {
    impl_->model->train();
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    for (auto& p : impl_->params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    size_t k = 0;
    for (auto& layer : *impl_->model) {
      const auto& tensors = impl_->layers[k++];
      if (!tensors.empty()) STELLA_RETURN_IF_ERROR(gate(tensors));
      x = layer.forward(x);
    }
    auto loss = torch::nn::functional::cross_entropy(x, y);
    impl_->sink = &sink;
    loss.backward();
    return loss.item<float>();
  } catch (const c10::Error& e) {
    return InternalError(std::string("forward/backward: ") + e.what_without_backtrace());
  }
}

const std::vector<std::vector<size_t>>& Trainer::layer_tensors() const { return impl_->layers; }

void Trainer::CopyGradientsTo(float* out) const {
  torch::NoGradGuard no_grad;
  for (const auto& p : impl_->params) {
    auto g = p.grad().defined() ? p.grad().detach().to(torch::kCPU).contiguous() : torch::zeros_like(p, torch::kCPU);
    std::memcpy(out, g.data_ptr<float>(), sizeof(float) * static_cast<size_t>(g.numel()));
    out += g.numel();
  }
}

void Trainer::SetGradients(const float* in) {
  torch::NoGradGuard no_grad;
  for (auto& p : impl_->params) {
    auto src = torch::from_blob(const_cast<float*>(in), p.sizes(), torch::kFloat32);
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    p.mutable_grad().copy_(src);
    in += p.numel();
  }
}

void Trainer::CopyParametersTo(float* out) const {
  torch::NoGradGuard no_grad;
  for (const auto& p : impl_->params) {
    auto c = p.detach().to(torch::kCPU).contiguous();
    std::memcpy(out, c.data_ptr<float>(), sizeof(float) * static_cast<size_t>(c.numel()));
    out += c.numel();
  }
}

void Trainer::SetParameters(const float* in) {
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    SetTensorParameters(i, in);
    in += impl_->sizes[i];
  }
}

void Trainer::SetTensorParameters(size_t i, const float* in) {
  torch::NoGradGuard no_grad;
  auto& p = impl_->params.at(i);
  p.copy_(torch::from_blob(const_cast<float*>(in), p.sizes(), torch::kFloat32));
}

void Trainer::OptimizerStep() { impl_->optimizer->step(); }

StatusOr<std::string> Trainer::SaveOptimizerState() const {
  try {
    torch::serialize::OutputArchive archive;
    impl_->optimizer->save(archive);
    std::ostringstream out;
    archive.save_to(out);
    return out.str();
  } catch (const c10::Error& e) {
    return InternalError(std::string("saving the optimizer state: ") + e.what_without_backtrace());
  }
}

Status Trainer::LoadOptimizerState(const std::string& bytes) {
  try {
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes);
    archive.load_from(in);
    impl_->optimizer->load(archive);
    return Status::Ok();
  } catch (const c10::Error& e) {
    return DataLossError(std::string("loading the optimizer state: ") + e.what_without_backtrace());
  }
}

EvalResult Trainer::Evaluate(const data::Dataset& d, int batch_size) {
  torch::NoGradGuard no_grad;
  impl_->model->eval();
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < d.size; start += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(d.size, start + batch_size); ++i) idx.push_back(i);
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    auto logits = impl_->model->forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  r.examples = d.size;
  r.accuracy = d.size ? static_cast<double>(correct) / d.size : 0;
  r.loss = d.size ? loss_sum / d.size : 0;
  return r;
}

}  // namespace stella::compute
