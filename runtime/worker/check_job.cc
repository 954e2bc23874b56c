#include "runtime/worker/check_job.h"

#include <algorithm>

#include "runtime/compute/model_check.h"
#include "runtime/data/dataset.h"
#include "runtime/worker/options_from_spec.h"

namespace stella::worker {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

Status CheckValidationShape(const spec::DatasetSpec& dataset, const data::Dataset& train,
                            const data::Dataset& validation) {
  if (validation.InputShape() == train.InputShape()) return Status::Ok();
  return InvalidArgumentError("spec.dataset.validationPath: " + dataset.validation_path + ": examples have shape " +
                              ShapeText(validation.InputShape()) + ", the training data's have " +
                              ShapeText(train.InputShape()));
}

Status CheckJobInputs(const spec::StellaJob& job) {
  const spec::JobSpec& s = job.spec;
  const data::DataSource source = DataSourceFrom(s.dataset);
  STELLA_ASSIGN_OR_RETURN(data::Dataset train, data::LoadDataset(source, data::Split::kTrain));
  STELLA_ASSIGN_OR_RETURN(data::Dataset validation, data::LoadDataset(source, data::Split::kTest));
  STELLA_RETURN_IF_ERROR(CheckValidationShape(s.dataset, train, validation));
  if (s.model.torchscript.empty()) return Status::Ok();
  return compute::CheckTorchScriptModel(
      compute::ModelCheckFor(s.model.torchscript, s.model.task == spec::ModelTask::kLanguageModel, train, validation));
}

}  // namespace stella::worker
