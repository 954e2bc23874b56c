// RunSummary: the result of one `stella run`, collected from the "done"
// events of the workers and rendered as an aligned table (for people) and as
// JSON (for scripts and benchmarks; written atomically so a reader never sees
// half a file).
//
// Where the numbers come from: steps, final_accuracy and wall_seconds from
// global rank 0's "done" event; samples and wan_bytes summed over every
// worker's "done" event (samples: what each worker itself trained on, so the
// sum is the job's throughput; wan_bytes: bytes each worker sent over the
// emulated WAN, so each byte is counted once); samples_per_second =
// samples / wall_seconds. A job restarted from a checkpoint reports the last
// attempt's wall time and samples (its workers count from the resume step),
// the whole run's time in total_wall_seconds, and the restarts with the
// steps they lost (restart.h).
//
// Thread safety: SummaryCollector is thread-compatible; the free functions
// are pure (WriteJsonAtomically touches only its own path).
#ifndef STELLA_SRC_CLI_SUMMARY_H_
#define STELLA_SRC_CLI_SUMMARY_H_

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "src/base/status.h"
#include "src/cli/restart.h"

namespace stella::cli {

// What the CLI knows about the job before it runs.
struct JobInfo {
  std::string job;   // metadata.name
  std::string mode;  // spec.sync.mode
  int clusters = 0;
  int workers = 0;  // over all clusters
  std::string log_dir;
  std::string shaper = "in-process";  // how the WAN is emulated
};

struct RunSummary {
  JobInfo info;
  int64_t steps = 0;
  int64_t samples = 0;
  double final_accuracy = 0;          // -1: no accuracy (a language model)
  double final_validation_loss = -1;  // mean validation loss; -1 = not reported
  double wall_seconds = 0;
  double samples_per_second = 0;
  uint64_t wan_bytes = 0;
  // What dense fp32 exchange (ddp mode) would have sent in the same steps.
  uint64_t dense_wan_bytes = 0;
  int done_workers = 0;                 // workers that sent a "done" event
  int64_t resumed_from = 0;             // step the last attempt started at (rank 0's "done")
  double total_wall_seconds = 0;        // the whole run, restarts included (set by the caller)
  std::vector<RestartRecord> restarts;  // set by the caller
  int64_t wan_degraded_steps = 0;       // most steps any worker applied without some cluster (a WAN link was down)
};

class SummaryCollector {
 public:
  // Records "done" events (keyed by global_rank, so a repeated event replaces
  // the earlier one); ignores every other kind.
  void OnEvent(const nlohmann::json& event);

  // The summary, or FailedPrecondition when global rank 0 sent no "done"
  // event (the run did not finish cleanly, so there are no results).
  StatusOr<RunSummary> Summarize(const JobInfo& info) const;

 private:
  std::map<int64_t, nlohmann::json> done_by_rank_;
};

// The table, one "  label   value" line per field, values aligned.
std::string RenderSummaryTable(const RunSummary& summary);

// Keys: job, mode, clusters, workers, shaper, log_dir, steps, samples,
// final_accuracy, final_validation_loss, wall_seconds, samples_per_second, wan_bytes,
// dense_wan_bytes, done_workers,
// resumed_from, total_wall_seconds, restarts (count), steps_lost (sum),
// restart_log (per restart: reason, failed_at_step, resumed_from,
// steps_lost), wan_degraded_steps.
nlohmann::json SummaryToJson(const RunSummary& summary);

// Writes `value` (pretty-printed, trailing newline) to a temporary file next
// to `path`, fsyncs it and renames it over `path`.
Status WriteJsonAtomically(const std::string& path, const nlohmann::json& value);

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_SUMMARY_H_
