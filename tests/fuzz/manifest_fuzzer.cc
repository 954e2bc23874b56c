// Fuzzes the StellaJob manifest parser (src/spec/stella_job.h) with YAML and
// JSON (what the Kubernetes API server sends) seeds.
//
// Invariants (abort on violation):
//  - ParseStellaJob never throws and rejects only with a non-empty
//    InvalidArgument message;
//  - an accepted job passes ValidateStellaJob;
//  - ToYaml of an accepted job parses back (ToYaml's contract) to an equal
//    job, and emitting that job again gives the same text (a fixed point).
#include <cstddef>
#include <cstdint>
#include <string>

#include "src/spec/stella_job.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::spec {
namespace {

void Check(const std::string& text) {
  StatusOr<StellaJob> job = ParseStellaJob(text);
  if (!job.ok()) {
    FUZZ_CHECK(job.status().code() == StatusCode::kInvalidArgument,
               "unexpected ParseStellaJob error " + job.status().ToString());
    FUZZ_CHECK(!job.status().message().empty(), "rejection without a message");
    return;
  }
  const std::vector<FieldError> errors = ValidateStellaJob(*job);
  FUZZ_CHECK(errors.empty(), "accepted a job that fails validation:\n" + FormatFieldErrors(errors));

  const std::string yaml = ToYaml(*job);
  StatusOr<StellaJob> again = ParseStellaJob(yaml);
  FUZZ_CHECK(again.ok(), "ToYaml output does not parse back: " + again.status().ToString() + "\n--- input ---\n" +
                             text + "\n--- ToYaml ---\n" + yaml);
  FUZZ_CHECK(*again == *job, "ToYaml output parses back to a different job\n--- input ---\n" + text +
                                 "\n--- ToYaml ---\n" + yaml + "\n--- ToYaml of the re-parse ---\n" + ToYaml(*again));
  FUZZ_CHECK(ToYaml(*again) == yaml,
             "ToYaml is not a fixed point\n--- first ---\n" + yaml + "\n--- second ---\n" + ToYaml(*again));
}

}  // namespace
}  // namespace stella::spec

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stella::spec::Check(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
