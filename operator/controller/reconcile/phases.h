// The reconcile phases of a StellaJob, in the order Reconciler runs them.
// Each is a small function of (deps, state) returning a PhaseResult; each
// file of this folder holds one phase (or two closely tied ones):
//
//   observe.cc      ReadJob         the job from the cache -> JobState
//   finalizer.cc    Finalizer       deleted: children go, then the finalizer;
//                                   else the finalizer goes on first
//   observe.cc      CheckSpec       a spec that cannot run -> Failed (terminal)
//   finalizer.cc    Finished        Succeeded/Failed: ttlSecondsAfterFinished
//   observe.cc      ObserveMembers  connect members, read children; unreachable
//                                   ones stop the pass (nothing is deleted)
//   suspend.cc      Suspend         pods go, Services stay; resume recreates
//   suspend.cc      Deadline        activeDeadlineSeconds -> Failed
//   services.cc     Services        headless + gateway Services per cluster
//   services.cc     Gateways        every WAN address decided and recorded
//                                   before any worker starts
//   restart.cc      RestartOrFail   a failed pod restarts the whole job up to
//                                   backoffLimit, then Failed
//   tls.cc          Tls             one job CA; rotation restarts the workers
//   pods.cc         Pods            stale attempts go, missing ranks created
//   status_phase.cc Status          counts, phase, conditions, runtime figures,
//                                   Events; always ends the pass
//
// Helpers shared by the phases (common.cc) write status, record Events and
// delete pods; every HTTP answer goes through kube::CheckResponse.
#ifndef STELLA_OPERATOR_CONTROLLER_RECONCILE_PHASES_H_
#define STELLA_OPERATOR_CONTROLLER_RECONCILE_PHASES_H_

#include <string>

#include "operator/controller/reconcile/types.h"

namespace stella::op {

using Phase = PhaseResult (*)(const ReconcileDeps& d, JobState& st);

// Reads `key` from the cache into *st; Done when the key is malformed or the
// job is gone (its finalizer already ran).
PhaseResult ReadJob(const ReconcileDeps& d, const std::string& key, JobState* st);

PhaseResult Finalizer(const ReconcileDeps& d, JobState& st);
PhaseResult CheckSpec(const ReconcileDeps& d, JobState& st);
PhaseResult Finished(const ReconcileDeps& d, JobState& st);
PhaseResult ObserveMembers(const ReconcileDeps& d, JobState& st);
PhaseResult Suspend(const ReconcileDeps& d, JobState& st);
PhaseResult Deadline(const ReconcileDeps& d, JobState& st);
PhaseResult Services(const ReconcileDeps& d, JobState& st);
PhaseResult Gateways(const ReconcileDeps& d, JobState& st);
PhaseResult RestartOrFail(const ReconcileDeps& d, JobState& st);
PhaseResult Tls(const ReconcileDeps& d, JobState& st);
PhaseResult Pods(const ReconcileDeps& d, JobState& st);
PhaseResult StatusPhase(const ReconcileDeps& d, JobState& st);

// --- Shared by the phases (common.cc) ---

// The StellaJob API path ("" name = the collection).
std::string JobsPath(const std::string& ns, const std::string& name = "", const std::string& sub = "");
// Writes st.status through /status when it differs from what was read
// (observedGeneration set); 404 (deleted meanwhile) is fine, 409 a conflict.
Status WriteStatus(const ReconcileDeps& d, JobState& st);
// Records a core/v1 Event on the job (best effort) and logs it.
void RecordEvent(const ReconcileDeps& d, const JobState& st, const std::string& type, const std::string& reason,
                 const std::string& message);
// Deletes every pod of the job that is not already terminating.
Status DeletePods(const ReconcileDeps& d, JobState& st, const std::string& why);
// Marks the job Failed (phase, message, conditions, Event) and deletes its
// pods that still run; failed ones stay for their logs. Status not written.
void Fail(const ReconcileDeps& d, JobState& st, const std::string& reason, const std::string& message);
// A finished job: deleted ttlSecondsAfterFinished after completion.
PhaseResult DeleteAfterTtl(const ReconcileDeps& d, JobState& st);

// Small readers of API objects.
std::string Name(const nlohmann::json& obj);
std::string Label(const nlohmann::json& obj, const char* key);
bool Terminating(const nlohmann::json& obj);
int Attempt(const nlohmann::json& pod);
// "a; b; c".
std::string JoinMessages(const std::vector<std::string>& parts);

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_RECONCILE_PHASES_H_
