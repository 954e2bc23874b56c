// Phase: the pods of the current attempt; a failed one restarts every rank
// (attempt + 1, resuming from checkpoints) up to backoffLimit, then the job
// fails.
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;

PhaseResult RestartOrFail(const ReconcileDeps& d, JobState& st) {
  const size_t nc = st.job.spec.clusters.size();
  const int attempt = st.attempt = st.status.restarts;
  st.current.assign(nc, {});
  const json* first_failed = nullptr;
  for (size_t c = 0; c < nc; ++c) {
    for (const auto& p : st.ob.pods[c]) {
      if (Attempt(p) != attempt || Terminating(p)) continue;
      st.current[c].push_back(&p);
      if (!first_failed && p.value("/status/phase"_json_pointer, std::string()) == "Failed") first_failed = &p;
    }
  }
  if (!first_failed) return PhaseResult::Continue();

  const std::string why = DescribeFailure(*first_failed);
  const auto& rp = st.job.spec.run_policy;
  const bool never = rp.restart_policy == spec::RestartPolicy::kNever;
  if (never || attempt >= rp.backoff_limit) {
    Fail(d, st, never ? "PodFailed" : "BackoffLimitExceeded",
         why + (never ? " (restartPolicy Never)"
                      : " (restarted " + std::to_string(attempt) + " times, backoffLimit " +
                            std::to_string(rp.backoff_limit) + ")"));
    STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
    return PhaseResult::Done();
  }
  // Count the restart first: a crash after this write cannot count it twice.
  st.status.restarts = attempt + 1;
  st.status.phase = kPhaseCreated;
  st.status.message = "restarting after " + why;
  SetCondition(&st.status, "Running", false, "Restarting", why, st.generation, st.now);
  STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  RecordEvent(d, st, "Warning", "Restarting",
              "attempt " + std::to_string(attempt + 1) + " of " + std::to_string(rp.backoff_limit) + " after " + why +
                  (st.job.spec.checkpoint.path.empty() ? "" : "; resuming from the latest checkpoint"));
  STELLA_PHASE_RETURN_IF_ERROR(DeletePods(d, st, "restart"));
  return PhaseResult::Done();
}

}  // namespace stella::op
