// The types every reconcile phase shares: what a phase tells the dispatcher
// (PhaseResult), what it acts through (ReconcileDeps) and the state of one
// pass over one job (JobState, Observed).
//
// Thread safety: a JobState belongs to one reconcile pass (one worker
// thread); ReconcileDeps points at thread-safe collaborators.
#ifndef STELLA_OPERATOR_CONTROLLER_RECONCILE_TYPES_H_
#define STELLA_OPERATOR_CONTROLLER_RECONCILE_TYPES_H_

#include <chrono>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/controller/log.h"
#include "operator/controller/reconcile/members.h"
#include "operator/kube/api.h"
#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::op {

class RuntimeScraper;

// The result of one reconcile: done, or come back after a delay.
struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};  // 0 = not needed
};

// What a phase tells the dispatcher: go on with the next phase, or end this
// pass (done, come back after a delay, or an error the work queue retries
// with backoff; kAborted errors are conflicts, retried on a fresh read).
class PhaseResult {
 public:
  enum class Kind { kContinue, kDone, kError };

  static PhaseResult Continue() { return PhaseResult(Kind::kContinue, {}, Status::Ok()); }
  static PhaseResult Done() { return PhaseResult(Kind::kDone, {}, Status::Ok()); }
  static PhaseResult RequeueAfter(std::chrono::milliseconds after) {
    return PhaseResult(Kind::kDone, after, Status::Ok());
  }
  static PhaseResult Error(Status error) { return PhaseResult(Kind::kError, {}, std::move(error)); }

  Kind kind() const { return kind_; }
  bool proceed() const { return kind_ == Kind::kContinue; }
  std::chrono::milliseconds requeue_after() const { return requeue_after_; }
  const Status& error() const { return error_; }
  // The pass's outcome (a kContinue that reached the end is done).
  StatusOr<ReconcileResult> ToResult() const {
    if (kind_ == Kind::kError) return error_;
    return ReconcileResult{requeue_after_};
  }

 private:
  PhaseResult(Kind k, std::chrono::milliseconds after, Status error)
      : kind_(k), requeue_after_(after), error_(std::move(error)) {}
  Kind kind_;
  std::chrono::milliseconds requeue_after_{0};
  Status error_;
};

// A failed Status ends the pass as that error.
#define STELLA_PHASE_RETURN_IF_ERROR(expr)                           \
  do {                                                               \
    ::stella::Status stella_phase_status_ = (expr);                  \
    if (!stella_phase_status_.ok()) {                                \
      return ::stella::op::PhaseResult::Error(stella_phase_status_); \
    }                                                                \
  } while (0)

struct ReconcileOptions {
  std::string origin = "hub";  // value of the stella.dev/origin label
  std::string default_image = "stella:0.1.0";
  std::chrono::milliseconds unreachable_retry{5000};
  std::chrono::milliseconds runtime_poll{10000};  // requeue of a Running job (fresh runtime figures)
  int runtime_metrics_port = 9400;
};

// What the phases act through. Everything outlives the reconciler.
struct ReconcileDeps {
  kube::Api* hub = nullptr;            // the hub's API (jobs, their status, Events)
  MemberDirectory* members = nullptr;  // member clusters and their caches
  RuntimeScraper* runtime = nullptr;   // the runtime's figures; nullptr = none shown
  Logger* log = nullptr;
  ReconcileOptions options;
  // Reads a job from the cache: nullopt when it does not exist.
  std::function<std::optional<nlohmann::json>(const std::string& ns, const std::string& name)> get_job;
  // Wall clock for status times (a test pins it).
  std::function<std::time_t()> clock = [] { return std::time(nullptr); };
};

// Children of the job as the members report them, per spec cluster.
struct Observed {
  std::vector<MemberView*> members;  // nullptr when unusable
  std::vector<std::string> errors;   // why unusable
  std::vector<std::vector<nlohmann::json>> pods, services;
};

// One reconcile pass over one job; later phases read what earlier ones found.
struct JobState {
  std::string key, ns, name, uid;
  int64_t generation = 0;
  nlohmann::json obj;           // the API object as last read or written
  spec::JobStatus status;       // what this pass wants status to be
  spec::JobStatus read_status;  // status as read (for "flipped back" Events)
  spec::StellaJob job;          // valid once the spec phase passed
  Status spec_error;            // why the spec cannot run (parse or child names)
  std::time_t now = 0;

  Observed ob;                                              // observe
  std::vector<std::string> gateway_addresses;               // gateways
  std::vector<std::string> gateway_nodes;                   // gateways
  int attempt = 0;                                          // restart
  std::vector<std::vector<const nlohmann::json*>> current;  // restart: this attempt's pods (into ob.pods)
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_RECONCILE_TYPES_H_
