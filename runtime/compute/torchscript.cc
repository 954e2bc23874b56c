// TorchScript loading and checking. Each check runs before the next can be
// trusted: the archive (zip, version record, TorchScript records), then the
// module (loads, forward's schema, parameters), then one dummy forward.
#include "runtime/compute/torchscript.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/versions.h>
#include <torch/version.h>

#include <algorithm>
#include <regex>
#include <sstream>

namespace stella::compute {
namespace {

std::string ShapeText(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// The line of a libtorch error that says what went wrong: the first one,
// without the C++ backtrace, or for an error raised inside TorchScript code
// the last one ("RuntimeError: ..."), after the interpreter's traceback.
std::string Reason(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string m = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  while (!m.empty() && m.back() == '\n') m.pop_back();
  if (m.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    return m.substr(m.rfind('\n') + 1);
  }
  return m.substr(0, m.find('\n'));
}

Status Bad(const ModelCheck& c, const std::string& what) {
  return InvalidArgumentError("spec.model.torchscript: " + c.path + ": " + what);
}

const char kReExport[] =
    "; export it with PyTorch 1.13 (pip install torch==1.13.1; torch.jit.save(torch.jit.script(model), PATH)), "
    "see docs/models.md";

// The zip: readable, a version this libtorch reads, and TorchScript records.
Status CheckArchive(const ModelCheck& c) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(c.path);
    if (!reader.hasRecord("constants.pkl") || !reader.hasRecord("data.pkl")) {
      return Bad(c,
                 "a PyTorch zip archive but not TorchScript (no constants.pkl: torch.save output?); save the "
                 "module with torch.jit.save(torch.jit.script(model), PATH) or torch.jit.trace");
    }
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    std::smatch v;
    if (std::regex_search(
            m, v, std::regex(R"(with version (\d+), but the maximum supported version for reading is (\d+))"))) {
      return FailedPreconditionError("spec.model.torchscript: " + c.path +
                                     ": written by a newer PyTorch than this "
                                     "runtime's libtorch " +
                                     LibtorchVersion() + ": file format version " + v[1].str() +
                                     ", libtorch reads up to version " + v[2].str() + kReExport);
    }
    return Bad(c, "not a TorchScript file (torch.jit.save writes a zip archive; libtorch says: " + Reason(e) + ")");
  }
  return Status::Ok();
}

// forward(self, x: Tensor) -> ...
Status CheckSchema(const ModelCheck& c, const torch::jit::Module& m) {
  auto forward = m.find_method("forward");
  if (!forward) return Bad(c, "the module has no forward method");
  const auto& args = forward->function().getSchema().arguments();
  const bool one_tensor = args.size() == 2 && args[1].type()->kind() == c10::TypeKind::TensorType;
  if (!one_tensor) {
    std::ostringstream schema;
    schema << forward->function().getSchema();
    return Bad(c, "forward must take exactly one tensor (the batch), got " + schema.str());
  }
  int64_t count = 0;
  for (const auto& p : m.named_parameters()) {
    if (p.value.scalar_type() != torch::kFloat32) {
      return Bad(c, "parameter " + p.name + " is " + std::string(c10::toString(p.value.scalar_type())) +
                        "; the runtime trains float32 parameters (call model.float() before exporting)");
    }
    ++count;
  }
  if (count == 0) return Bad(c, "the module has no parameters to train");
  return Status::Ok();
}

// One forward on a batch of 2 examples of the data's shape.
Status CheckForward(const ModelCheck& c, torch::jit::Module& m) {
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), c.example_shape.begin(), c.example_shape.end());
  auto x = torch::zeros(shape, c.token_input ? torch::kInt64 : torch::kFloat32);
  c10::IValue out;
  try {
    torch::NoGradGuard no_grad;
    out = m.forward({x});
  } catch (const std::exception& e) {  // c10::Error, or a JITException from the module's code
    return Bad(c, "forward fails on a batch of shape " + ShapeText(shape) + " (" +
                      (c.token_input ? "int64 token ids" : "float32") + ", the data's shape): " + Reason(e));
  }
  if (!out.isTensor()) return Bad(c, "forward must return one tensor of logits, got " + out.tagKind());
  const auto y = out.toTensor();
  const std::string got =
      "forward on a batch of shape " + ShapeText(shape) + " gave logits of shape " + ShapeText(y.sizes()) + "; ";
  if (c.language_model) {
    if (y.dim() != 3 || y.size(0) != 2 || y.size(1) != shape[1] || y.size(2) < c.num_classes) {
      return Bad(c, got + "task language-model needs [batch, seq, vocab] = [2, " + std::to_string(shape[1]) +
                        ", >= " + std::to_string(c.num_classes) + "] (the data's largest token is " +
                        std::to_string(c.num_classes - 1) + ")");
    }
  } else if (y.dim() != 2 || y.size(0) != 2 || y.size(1) < c.num_classes) {
    return Bad(c, got + "task classification needs [batch, classes] = [2, >= " + std::to_string(c.num_classes) +
                      "] (the labels go up to " + std::to_string(c.num_classes - 1) + ")");
  }
  if (!y.is_floating_point())
    return Bad(c, got + "logits must be floating point, got " + std::string(c10::toString(y.scalar_type())));
  return Status::Ok();
}

}  // namespace

std::string LibtorchVersion() { return TORCH_VERSION; }

ModelCheck ModelCheckFor(const std::string& path, bool language_model, const data::Dataset& train,
                         const data::Dataset& validation) {
  ModelCheck c;
  c.path = path;
  c.language_model = language_model;
  c.example_shape = train.InputShape();
  c.token_input = train.format == data::Format::kTokens;
  c.num_classes = std::max(train.num_classes, validation.num_classes);
  return c;
}

StatusOr<torch::jit::Module> LoadCheckedTorchScript(const ModelCheck& c) {
  STELLA_RETURN_IF_ERROR(CheckArchive(c));
  torch::jit::Module m;
  try {
    m = torch::jit::load(c.path, torch::kCPU);
  } catch (const std::exception& e) {
    return Bad(c, "libtorch " + LibtorchVersion() + " cannot load it: " + Reason(e) +
                      " (written by a newer PyTorch? its operators may be unknown to 1.13" + kReExport + ")");
  }
  STELLA_RETURN_IF_ERROR(CheckSchema(c, m));
  STELLA_RETURN_IF_ERROR(CheckForward(c, m));
  for (auto p : m.parameters()) p.requires_grad_(true);
  return m;
}

Status CheckTorchScriptModel(const ModelCheck& c) { return LoadCheckedTorchScript(c).status(); }

}  // namespace stella::compute
