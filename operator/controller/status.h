// Pure helpers for the StellaJob status the operator writes: the boundary
// between the API object's JSON status and the typed spec::JobStatus the
// reconciler works on, conditions that keep their transition time,
// per-cluster pod counts, RFC 3339 times.
#ifndef STELLA_OPERATOR_CONTROLLER_STATUS_H_
#define STELLA_OPERATOR_CONTROLLER_STATUS_H_

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/spec/stella_job.h"

namespace stella::op {

// Phases, in the order a job normally passes them.
inline constexpr char kPhasePending[] = "Pending";
inline constexpr char kPhaseCreated[] = "Created";
inline constexpr char kPhaseRunning[] = "Running";
inline constexpr char kPhaseSucceeded[] = "Succeeded";
inline constexpr char kPhaseFailed[] = "Failed";
inline constexpr char kPhaseSuspended[] = "Suspended";

std::string Rfc3339(std::time_t t);
// Parses "2026-11-23T10:00:00Z" (fractional seconds ignored); nullopt if malformed.
std::optional<std::time_t> ParseRfc3339(const std::string& text);

// Sets condition `type` in status.conditions (metav1.Condition shape). The
// lastTransitionTime changes only when the status flips. Returns true when
// the status flipped (or the condition is new), which callers turn into an
// Event.
bool SetCondition(nlohmann::json* status, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation, std::time_t now);
// The condition's status is "True".
bool ConditionTrue(const nlohmann::json& status, const std::string& type);

// The same on the typed status the reconciler works on.
bool SetCondition(spec::JobStatus* status, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation, std::time_t now);
bool ConditionTrue(const spec::JobStatus& status, const std::string& type);

// The JSON boundary. Reading is type-tolerant: the operator owns status, so
// members of the wrong type (written by someone else) read as absent and
// unknown members are dropped. Writing leaves out empty strings and lists,
// restarts 0, cluster entries' counts until counted, and the runtime's
// figures (step, samplesPerSecond, density) until the runtime reported them
// (batchSize present, or any of them non-zero).
spec::JobStatus JobStatusFromJson(const nlohmann::json& status);
nlohmann::json JobStatusToJson(const spec::JobStatus& status);

struct PodCounts {
  int pending = 0, running = 0, ready = 0, succeeded = 0, failed = 0;
  int total() const { return pending + running + succeeded + failed; }
};
// Counts pods by phase; a Running pod with condition Ready=True is also ready.
PodCounts CountPods(const std::vector<const nlohmann::json*>& pods);

// The first failed pod's "name: reason: message" (container exit code when
// the pod has none), for status.message and Events.
std::string DescribeFailure(const nlohmann::json& pod);

// What the runtime reports on its /metrics that the job's status shows; -1
// where the exposition lacks the series.
struct RuntimeFigures {
  int64_t step = -1;               // stella_steps_total
  double samples_per_second = -1;  // stella_samples_per_second
  double density = -1;             // stella_density (the tuner's decision)
  int64_t batch_size = -1;         // stella_batch_size (the tuner's decision)
};
// Reads Prometheus text exposition; label sets are ignored (one worker's
// endpoint has one series per name).
RuntimeFigures ParseRuntimeMetrics(const std::string& text);

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_STATUS_H_
