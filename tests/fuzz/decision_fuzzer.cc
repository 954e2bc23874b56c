// Fuzzes the tuner's Decision control frame decoder (runtime/tuner/decision.h).
//
// Invariants (abort on violation):
//  - rejections are DataLoss (framing) or InvalidArgument (a well-formed frame
//    whose decision is invalid);
//  - an accepted decision passes ValidateDecision, and EncodeDecision gives
//    back the input byte for byte (the layout has exactly one encoding per
//    decision, density bits included);
//  - BatchSizeFor finds every listed worker's batch and nothing for an id
//    that is not listed; ToLogLine is one line naming the round.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/tuner/decision.h"
#include "tests/fuzz/fuzz_check.h"

namespace stella::tuner {
namespace {

void Check(const uint8_t* data, size_t size) {
  StatusOr<Decision> d = DecodeDecision(data, size);
  if (!d.ok()) {
    const StatusCode c = d.status().code();
    FUZZ_CHECK(c == StatusCode::kDataLoss || c == StatusCode::kInvalidArgument,
               "unexpected DecodeDecision error " + d.status().ToString());
    return;
  }
  Status valid = ValidateDecision(*d);
  FUZZ_CHECK(valid.ok(), "decoded decision is invalid: " + valid.ToString());

  std::vector<uint8_t> out;
  Status encoded = EncodeDecision(*d, &out);
  FUZZ_CHECK(encoded.ok(), "EncodeDecision of a decoded decision: " + encoded.ToString());
  FUZZ_CHECK(out.size() == size && std::memcmp(out.data(), data, size) == 0,
             "EncodeDecision(DecodeDecision(x)) != x (" + std::to_string(out.size()) + " vs " + std::to_string(size) +
                 " bytes)");

  for (size_t i = 0; i < d->worker_ids.size(); ++i) {
    const std::optional<int> batch = d->BatchSizeFor(d->worker_ids[i]);
    FUZZ_CHECK(batch.has_value() && *batch == d->batch_sizes[i],
               "BatchSizeFor(" + std::to_string(d->worker_ids[i]) + ") lost its batch");
  }
  // Ids are >= 0 and ascending: -1 and last + 1 (when it fits) are absent.
  FUZZ_CHECK(!d->BatchSizeFor(-1).has_value(), "BatchSizeFor(-1) found a batch");
  if (!d->worker_ids.empty() && d->worker_ids.back() < 0x7FFFFFFF) {
    FUZZ_CHECK(!d->BatchSizeFor(d->worker_ids.back() + 1).has_value(), "BatchSizeFor(an unlisted id) found a batch");
  }
  // One log line, whatever the reason holds.
  const std::string line = d->ToLogLine();
  FUZZ_CHECK(line.find("round=" + std::to_string(d->round)) != std::string::npos,
             "ToLogLine does not name the round: " + line);
  FUZZ_CHECK(line.find_first_of("\r\n") == std::string::npos, "ToLogLine spans several lines: " + line);
}

}  // namespace
}  // namespace stella::tuner

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stella::tuner::Check(data, size);
  return 0;
}
