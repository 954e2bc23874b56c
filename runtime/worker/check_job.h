// The checks a job's own model and data get before any worker trains:
// `stella-runtime --check-model JOB.yaml` (which `stella validate` and
// `stella run` call) and every worker's start run the same code.
#ifndef STELLA_RUNTIME_WORKER_CHECK_JOB_H_
#define STELLA_RUNTIME_WORKER_CHECK_JOB_H_

#include "runtime/data/dataset.h"
#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::worker {

// Opens the training and validation data (headers, sizes, shapes agree) and,
// with spec.model.torchscript, checks the module against them
// (compute/model_check.h). Errors name the spec field and the file.
Status CheckJobInputs(const spec::StellaJob& job);

// InvalidArgument naming spec.dataset.validationPath when the validation
// examples' shape differs from the training examples'.
Status CheckValidationShape(const spec::DatasetSpec& dataset, const data::Dataset& train,
                            const data::Dataset& validation);

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_CHECK_JOB_H_
