#include "src/cli/restart.h"

#include <algorithm>

#include "src/cli/format.h"

namespace stella::cli {
namespace {

// The first line of a supervisor failure, without the "; last lines:" that
// introduces the log tail on the next lines.
std::string Reason(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  const std::string tail = "; last lines:";
  if (line.size() >= tail.size() && line.compare(line.size() - tail.size(), tail.size(), tail) == 0) {
    line.resize(line.size() - tail.size());
  }
  return line;
}

}  // namespace

RestartTracker::RestartTracker(const spec::StellaJob& job)
    : checkpointing_(!job.spec.checkpoint.path.empty() && job.spec.checkpoint.interval_steps > 0),
      backoff_limit_(job.spec.run_policy.backoff_limit),
      interval_steps_(job.spec.checkpoint.interval_steps) {}

void RestartTracker::BeginAttempt() { max_applied_ = 0; }

void RestartTracker::OnEvent(const nlohmann::json& event) {
  const std::string kind = EventString(event, "event", "");
  if (kind == "resume") {
    if (EventInt(event, "global_rank", -1) != 0) return;
    const int64_t step = std::max<int64_t>(0, EventInt(event, "step", 0));
    for (RestartRecord& r : records_) {
      if (r.resumed_from >= 0) continue;
      r.resumed_from = step;
      r.steps_lost = std::max<int64_t>(0, r.failed_at_step - step);
    }
    max_applied_ = std::max(max_applied_, step);
    return;
  }
  int64_t applied = -1;
  if (kind == "progress" || kind == "stopping" || kind == "error") {
    applied = EventInt(event, "applied", -1);
  } else if (kind == "checkpoint") {
    applied = EventInt(event, "step", -1);
  }
  max_applied_ = std::max(max_applied_, applied);
}

RestartTracker::Verdict RestartTracker::OnFailure(const Status& failure) {
  Verdict v;
  if (failure.code() != StatusCode::kInternal) {
    v.message = failure.message();
    return v;
  }
  if (!checkpointing_) {
    v.message = failure.message() +
                "\ncheckpointing would have allowed a restart: with spec.checkpoint.path and "
                "spec.checkpoint.intervalSteps > 0, stella run restarts the job from its last complete checkpoint "
                "(up to spec.runPolicy.backoffLimit times)";
    return v;
  }
  if (restarts() >= backoff_limit_) {
    v.message = failure.message() + "\nno restart left: the job was restarted " + std::to_string(restarts()) +
                " time(s), spec.runPolicy.backoffLimit is " + std::to_string(backoff_limit_);
    return v;
  }
  RestartRecord r;
  r.reason = Reason(failure.message());
  r.failed_at_step = max_applied_;
  records_.push_back(r);
  v.restart = true;
  v.message = "restart " + std::to_string(restarts()) + "/" + std::to_string(backoff_limit_) + ": " + r.reason +
              " (at step " + std::to_string(r.failed_at_step) +
              "); stopping the other workers and resuming the whole job from its newest complete checkpoint "
              "(every " +
              std::to_string(interval_steps_) + " steps)";
  return v;
}

int64_t RestartTracker::steps_lost() const {
  int64_t total = 0;
  for (const RestartRecord& r : records_) total += r.steps_lost;
  return total;
}

}  // namespace stella::cli
