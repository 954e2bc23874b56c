#include "runtime/compute/trainer.h"

#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <unordered_map>

#include "runtime/compute/model_zoo.h"
#include "runtime/compute/torchscript.h"

namespace stella::compute {
namespace {

// Fashion-MNIST pixel statistics: inputs are normalised to mean 0, std 1.
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;

// npy: raw float32 features; tokens: windows of ids and the next tokens.
std::pair<torch::Tensor, torch::Tensor> MakeOwnBatch(const data::Dataset& d, const std::vector<int64_t>& idx) {
  const int64_t n = static_cast<int64_t>(idx.size());
  if (d.format == data::Format::kTokens) {
    const int64_t len = d.sequence_length;
    auto x = torch::empty({n, len}, torch::kInt64);
    auto y = torch::empty({n, len}, torch::kInt64);
    int64_t* xp = x.data_ptr<int64_t>();
    int64_t* yp = y.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t start = idx[static_cast<size_t>(i)] * len;
      for (int64_t t = 0; t < len; ++t) {
        xp[i * len + t] = d.Token(start + t);
        yp[i * len + t] = d.Token(start + t + 1);
      }
    }
    return {x, y};
  }
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), d.sample_shape.begin(), d.sample_shape.end());
  auto x = torch::empty(shape, torch::kFloat32);
  auto y = torch::empty({n}, torch::kInt64);
  auto* xp = static_cast<uint8_t*>(x.data_ptr());
  const int64_t bytes = d.feature_bytes();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t e = idx[static_cast<size_t>(i)];
    std::memcpy(xp + i * bytes, d.features + e * bytes, static_cast<size_t>(bytes));
    y.data_ptr<int64_t>()[i] = d.Label(e);
  }
  return {x, y};
}

std::pair<torch::Tensor, torch::Tensor> MakeBatch(const data::Dataset& d, const std::vector<int64_t>& idx) {
  if (d.format != data::Format::kIdx) return MakeOwnBatch(d, idx);
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

// Mean cross-entropy: over examples, or over every token of a language model.
torch::Tensor Loss(const torch::Tensor& logits, const torch::Tensor& y, bool language_model,
                   torch::nn::functional::CrossEntropyFuncOptions o = {}) {
  if (!language_model) return torch::nn::functional::cross_entropy(logits, y, o);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}), o);
}

}  // namespace

struct Trainer::Impl {
  torch::Device device{torch::kCPU};
  torch::nn::Sequential model{nullptr};      // a zoo model, or
  std::optional<torch::jit::Module> script;  // the user's TorchScript module
  bool language_model = false;
  std::vector<torch::Tensor> params;
  std::vector<int64_t> sizes;
  int64_t total = 0;
  std::vector<size_t> offsets;              // flat offset per tensor
  std::vector<std::vector<size_t>> layers;  // tensor indices per Sequential entry
  std::vector<torch::Tensor> staging;       // pinned host copies (CUDA only), lazily made
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  // Set only during ForwardBackwardPipelined; the hooks read it.
  const GradientSink* sink = nullptr;

  torch::Tensor Forward(const torch::Tensor& x) { return script ? script->forward({x}).toTensor() : model->forward(x); }
  void SetTraining(bool on) {
    if (script) {
      script->train(on);
    } else {
      model->train(on);
    }
  }

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

namespace {

StatusOr<torch::Device> ChooseDevice(const std::string& device) {
  if (device == "cuda" && !torch::cuda::is_available()) {
    return FailedPreconditionError("device \"cuda\" requested but CUDA is not available in this build/machine");
  }
  if (device != "auto" && device != "cpu" && device != "cuda") {
    return InvalidArgumentError("device must be auto, cpu or cuda, got \"" + device + "\"");
  }
  const bool cuda = device == "cuda" || (device == "auto" && torch::cuda::is_available());
  return cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(const TrainerOptions& o,
                                                                 const std::vector<torch::Tensor>& params) {
  const optim::OptimizerOptions& oo = o.optimizer;
  if (oo.name == "sgd") {
    return std::unique_ptr<torch::optim::Optimizer>(std::make_unique<torch::optim::SGD>(
        params,
        torch::optim::SGDOptions(oo.lr).momentum(oo.momentum).nesterov(oo.nesterov).weight_decay(oo.weight_decay)));
  }
  if (oo.name == "adam") {
    return std::unique_ptr<torch::optim::Optimizer>(std::make_unique<torch::optim::Adam>(
        params,
        torch::optim::AdamOptions(oo.lr).betas({oo.beta1, oo.beta2}).eps(oo.eps).weight_decay(oo.weight_decay)));
  }
  if (oo.name == "adamw") {
    return std::unique_ptr<torch::optim::Optimizer>(std::make_unique<torch::optim::AdamW>(
        params,
        torch::optim::AdamWOptions(oo.lr).betas({oo.beta1, oo.beta2}).eps(oo.eps).weight_decay(oo.weight_decay)));
  }
  return InvalidArgumentError("spec.optimizer.name: must be one of sgd, adam, adamw, got \"" + oo.name + "\"");
}

}  // namespace

// The model's parameters, in order (zoo: per layer; TorchScript: one layer).
Status Trainer::BuildModel(const TrainerOptions& o, const data::Dataset& data, int classes, Impl& impl) {
  if (!o.torchscript.empty()) {
    data::Dataset none;
    ModelCheck check = ModelCheckFor(o.torchscript, o.language_model, data, none);
    check.num_classes = std::max(check.num_classes, classes);
    STELLA_ASSIGN_OR_RETURN(torch::jit::Module m, LoadCheckedTorchScript(check));
    m.to(impl.device);
    for (const auto& p : m.parameters()) impl.params.push_back(p);
    impl.script = std::move(m);
  } else {
    ModelOptions mo;
    mo.name = o.model;
    mo.hidden = o.hidden;
    mo.image_rows = data.rows;
    mo.image_cols = data.cols;
    mo.num_classes = classes;
    mo.seed = o.seed;
    STELLA_ASSIGN_OR_RETURN(impl.model, compute::BuildModel(mo));
    impl.model->to(impl.device);
    impl.params = impl.model->parameters();
  }
  std::unordered_map<const void*, size_t> index;
  for (size_t i = 0; i < impl.params.size(); ++i) {
    const auto& p = impl.params[i];
    index[p.unsafeGetTensorImpl()] = i;
    impl.offsets.push_back(static_cast<size_t>(impl.total));
    impl.sizes.push_back(p.numel());
    impl.total += p.numel();
  }
  if (impl.script) {
    std::vector<size_t> all(impl.params.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    impl.layers.push_back(std::move(all));
    return Status::Ok();
  }
  for (const auto& layer : *impl.model) {
    std::vector<size_t> tensors;
    for (const auto& p : layer.ptr()->parameters()) tensors.push_back(index.at(p.unsafeGetTensorImpl()));
    impl.layers.push_back(std::move(tensors));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& o, int rows, int cols, int classes) {
  data::Dataset shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.num_classes = classes;
  return Create(o, shape, classes);
}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& o, const data::Dataset& data, int classes) {
  auto impl = std::make_unique<Impl>();
  try {
    torch::set_num_threads(std::max(1, o.threads));
    STELLA_ASSIGN_OR_RETURN(impl->device, ChooseDevice(o.device));
    impl->language_model = o.language_model;
    STELLA_RETURN_IF_ERROR(BuildModel(o, data, classes, *impl));
    impl->staging.resize(impl->params.size());
    Impl* raw = impl.get();  // outlives the parameters' hooks: both die with the Trainer
    for (size_t i = 0; i < impl->params.size(); ++i) {
      impl->params[i].register_hook([raw, i](const torch::Tensor& grad) { raw->OnGradient(i, grad); });
    }
    STELLA_ASSIGN_OR_RETURN(impl->optimizer, MakeOptimizer(o, impl->params));
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
    impl_->SetTraining(true);
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    for (auto& p : impl_->params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    auto loss = Loss(impl_->Forward(x), y, impl_->language_model);
    loss.backward();
    return loss.item<float>();
  } catch (const c10::Error& e) {
    return InternalError(std::string("forward/backward: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {  // raised by a TorchScript module's own code
    return InternalError(std::string("forward/backward: ") + e.what());
  }
}

StatusOr<float> Trainer::ForwardBackwardPipelined(const data::Dataset& d, const std::vector<int64_t>& idx,
                                                  const LayerGate& gate, const GradientSink& sink) {
  struct SinkScope {  // the hooks see the sink for this backward only
    Impl* impl;
    ~SinkScope() { impl->sink = nullptr; }
  } scope{impl_.get()};
  try {
    impl_->SetTraining(true);
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    for (auto& p : impl_->params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    if (impl_->script) {
      STELLA_RETURN_IF_ERROR(gate(impl_->layers[0]));
      x = impl_->Forward(x);
    } else {
      size_t k = 0;
      for (auto& layer : *impl_->model) {
        const auto& tensors = impl_->layers[k++];
        if (!tensors.empty()) STELLA_RETURN_IF_ERROR(gate(tensors));
        x = layer.forward(x);
      }
    }
    auto loss = Loss(x, y, impl_->language_model);
    impl_->sink = &sink;
    loss.backward();
    return loss.item<float>();
  } catch (const c10::Error& e) {
    return InternalError(std::string("forward/backward: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {  // raised by a TorchScript module's own code
    return InternalError(std::string("forward/backward: ") + e.what());
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
  impl_->SetTraining(false);
  const bool lm = impl_->language_model;
  if (lm) batch_size = std::max(1, batch_size / std::max(1, d.sequence_length));  // ~batch_size tokens
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < d.size; start += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(d.size, start + batch_size); ++i) idx.push_back(i);
    auto [x, y] = MakeBatch(d, idx);
    x = x.to(impl_->device);
    y = y.to(impl_->device);
    auto logits = impl_->Forward(x);
    loss_sum +=
        Loss(logits, y, lm, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    if (!lm) correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  EvalResult r;
  const int64_t targets = lm ? d.size * d.sequence_length : d.size;
  r.examples = d.size;
  r.accuracy = lm ? -1 : (d.size ? static_cast<double>(correct) / d.size : 0);
  r.loss = targets ? loss_sum / targets : 0;
  return r;
}

}  // namespace stella::compute
