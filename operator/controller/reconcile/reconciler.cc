#include "operator/controller/reconcile/reconciler.h"

#include "operator/controller/reconcile/phases.h"

namespace stella::op {

namespace {

// In order; the first phase that does not continue ends the pass.
constexpr Phase kPhases[] = {
    Finalizer,       // deleted -> children go, finalizer removed; else it goes on
    CheckSpec,       // a spec that cannot run -> Failed
    Finished,        // Succeeded/Failed -> ttlSecondsAfterFinished
    ObserveMembers,  // members and children; unreachable -> retry later
    Suspend,         // suspended -> pods deleted
    Deadline,        // activeDeadlineSeconds exceeded -> Failed
    Services,        // headless + gateway Services
    Gateways,        // WAN addresses decided and recorded
    RestartOrFail,   // a failed pod -> restart all, or Failed
    Tls,             // gateway certificates; rotation -> restart
    Pods,            // missing ranks created
    StatusPhase,     // counts, phase, Events; ends the pass
};

}  // namespace

StatusOr<ReconcileResult> Reconciler::Reconcile(const std::string& key) const {
  JobState st;
  PhaseResult r = ReadJob(deps_, key, &st);
  for (Phase phase : kPhases) {
    if (!r.proceed()) break;
    r = phase(deps_, st);
  }
  return r.ToResult();
}

}  // namespace stella::op
