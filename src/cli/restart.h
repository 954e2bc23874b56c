// RestartTracker: whether `stella run` restarts a job whose worker failed,
// and what the restarts cost.
//
// Policy: with checkpointing on (spec.checkpoint.path set and intervalSteps
// > 0) a worker failure stops the remaining workers and restarts the whole
// job with --resume, so every worker continues from the newest checkpoint
// they all hold; at most spec.runPolicy.backoffLimit times, then the run
// fails with the last failure. Without checkpointing a failure ends the run
// at once, and the message says that checkpointing would have allowed a
// restart. Stop requests and deadlines are never restarted.
//
// Steps lost: the updates applied before a failure that the restarted job
// has to redo, i.e. the highest applied step any worker reported in the
// failed attempt ("progress" of rank 0, "checkpoint", and the "stopping" or
// "error" events survivors send when they are stopped) minus the step the
// next attempt resumed from (rank 0's "resume" event). Reports can only lag
// the truth (a worker killed between reports reports nothing), so the count
// is a lower bound; a worker that survives reports its exact step when it is
// stopped.
//
// Thread safety: thread-compatible; one thread feeds it.
#ifndef STELLA_SRC_CLI_RESTART_H_
#define STELLA_SRC_CLI_RESTART_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::cli {

struct RestartRecord {
  std::string reason;          // the failure that caused it (its first line)
  int64_t failed_at_step = 0;  // highest applied step reported before it
  int64_t resumed_from = -1;   // where the next attempt resumed; -1 until known
  int64_t steps_lost = 0;      // failed_at_step - resumed_from (>= 0) once known
};

class RestartTracker {
 public:
  explicit RestartTracker(const spec::StellaJob& job);

  bool checkpointing() const { return checkpointing_; }

  // Call before each attempt's workers start.
  void BeginAttempt();
  // Every event of the current attempt, from any worker.
  void OnEvent(const nlohmann::json& event);

  struct Verdict {
    bool restart = false;
    // For a restart: the progress line announcing it. Otherwise: the final
    // error message (the failure, plus why there is no restart).
    std::string message;
  };
  // After an attempt failed with `failure` (the supervisor's status, which
  // names the worker that failed). Restarts only worker failures (kInternal).
  Verdict OnFailure(const Status& failure);

  int restarts() const { return static_cast<int>(records_.size()); }
  // Sum over restarts whose resume step is known.
  int64_t steps_lost() const;
  const std::vector<RestartRecord>& records() const { return records_; }

 private:
  bool checkpointing_ = false;
  int backoff_limit_ = 0;
  int interval_steps_ = 0;
  int64_t max_applied_ = 0;  // in the current attempt
  std::vector<RestartRecord> records_;
};

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_RESTART_H_
