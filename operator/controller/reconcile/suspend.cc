// Phases that stop a job without it failing on its own: suspension (pods
// go, Services stay; resume recreates them) and the active deadline.
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

PhaseResult Suspend(const ReconcileDeps& d, JobState& st) {
  if (st.job.spec.run_policy.suspend) {
    STELLA_PHASE_RETURN_IF_ERROR(DeletePods(d, st, "suspended"));
    bool changed = SetCondition(&st.status, "Suspended", true, "Suspended", "spec.runPolicy.suspend is true",
                                st.generation, st.now);
    st.status.phase = kPhaseSuspended;
    st.status.start_time.clear();  // the deadline counts running time, as for batch Jobs
    SetCondition(&st.status, "Running", false, "Suspended", "the job is suspended", st.generation, st.now);
    STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
    if (changed) {
      RecordEvent(d, st, "Normal", "Suspended",
                  "workers deleted; the job resumes when spec.runPolicy.suspend is false");
    }
    return PhaseResult::Done();
  }
  if (ConditionTrue(st.status, "Suspended")) {
    SetCondition(&st.status, "Suspended", false, "Resumed", "spec.runPolicy.suspend is false", st.generation, st.now);
    st.status.phase = kPhaseCreated;
    RecordEvent(d, st, "Normal", "Resumed", "recreating the workers");
  }
  return PhaseResult::Continue();
}

PhaseResult Deadline(const ReconcileDeps& d, JobState& st) {
  // Counted from the first worker's creation (startTime).
  const auto& deadline = st.job.spec.run_policy.active_deadline_seconds;
  if (!deadline || st.status.start_time.empty()) return PhaseResult::Continue();
  auto start = ParseRfc3339(st.status.start_time);
  if (!start || st.now - *start < *deadline) return PhaseResult::Continue();
  Fail(d, st, "DeadlineExceeded", "ran longer than spec.runPolicy.activeDeadlineSeconds=" + std::to_string(*deadline));
  STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  return PhaseResult::Done();
}

}  // namespace stella::op
