// Helpers shared by the reconcile phases: status writes, Events, pod deletion.
#include <random>

#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

std::string JobsPath(const std::string& ns, const std::string& name, const std::string& sub) {
  return kube::ResourcePath(kGroupVersion, kPlural, ns, name, sub);
}

std::string Name(const json& obj) { return kube::NameOf(obj); }

std::string Label(const json& obj, const char* key) {
  const json* labels =
      obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object() && obj["metadata"].contains("labels")
          ? &obj["metadata"]["labels"]
          : nullptr;
  if (!labels || !labels->is_object()) return "";
  auto it = labels->find(key);
  return it != labels->end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool Terminating(const json& obj) { return obj.contains("metadata") && obj["metadata"].contains("deletionTimestamp"); }

int Attempt(const json& pod) {
  const json ann = pod.value("/metadata/annotations"_json_pointer, json::object());
  auto it = ann.find(kAnnotationAttempt);
  if (it == ann.end() || !it->is_string()) return 0;
  return std::atoi(it->get<std::string>().c_str());
}

std::string JoinMessages(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

void RecordEvent(const ReconcileDeps& d, const JobState& st, const std::string& type, const std::string& reason,
                 const std::string& message) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::string suffix;
  for (int i = 0; i < 12; ++i) suffix += kHex[rd() % 16];
  const std::string now = Rfc3339(st.now);
  json ev = {{"apiVersion", "v1"},
             {"kind", "Event"},
             {"metadata", {{"name", st.name + "." + suffix}, {"namespace", st.ns}}},
             {"involvedObject",
              {{"apiVersion", kGroupVersion},
               {"kind", spec::kKind},
               {"namespace", st.ns},
               {"name", st.name},
               {"uid", st.uid}}},
             {"type", type},
             {"reason", reason},
             {"message", message},
             {"source", {{"component", "stella-operator"}}},
             {"firstTimestamp", now},
             {"lastTimestamp", now},
             {"count", 1}};
  auto r = kube::CheckResponse(d.hub->Create(kube::ResourcePath("v1", "events", st.ns), ev), "create event");
  // Events are best effort: a lost one must not fail the reconcile.
  if (!r.ok()) d.log->Debug("event " + reason + " for " + st.key + " not recorded: " + r.status().ToString());
  d.log->Info("job " + st.key + ": " + reason + ": " + message);
}

Status WriteStatus(const ReconcileDeps& d, JobState& st) {
  st.status.observed_generation = st.generation;
  json want = JobStatusToJson(st.status);
  if (st.obj.value("status", json::object()) == want) return Status::Ok();
  json body = st.obj;
  body["status"] = std::move(want);
  auto r = kube::CheckResponse(d.hub->Update(JobsPath(st.ns, st.name, "status"), body), "writing status of " + st.key,
                               {404});
  if (!r.ok()) return r.status();
  if (r->code == 404) return Status::Ok();  // deleted meanwhile
  st.obj = r->body;
  return Status::Ok();
}

Status DeletePods(const ReconcileDeps& d, JobState& st, const std::string& why) {
  for (size_t c = 0; c < st.ob.pods.size(); ++c) {
    for (const auto& p : st.ob.pods[c]) {
      if (Terminating(p)) continue;
      auto r = kube::CheckResponse(st.ob.members[c]->api()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p))),
                                   "deleting pod " + Name(p) + " (" + why + ")", {404});
      if (!r.ok()) return r.status();
    }
  }
  return Status::Ok();
}

void Fail(const ReconcileDeps& d, JobState& st, const std::string& reason, const std::string& message) {
  st.status.phase = kPhaseFailed;
  st.status.message = message;
  st.status.completion_time = Rfc3339(st.now);
  SetCondition(&st.status, "Running", false, reason, message, st.generation, st.now);
  if (SetCondition(&st.status, "Failed", true, reason, message, st.generation, st.now)) {
    RecordEvent(d, st, "Warning", reason, message);
  }
  // Failed pods stay for their logs; running ones would wait forever on the failed rank.
  for (size_t c = 0; c < st.ob.pods.size(); ++c) {
    if (!st.ob.members[c]) continue;
    for (const auto& p : st.ob.pods[c]) {
      const std::string phase = p.value("/status/phase"_json_pointer, std::string());
      if (phase == "Failed" || phase == "Succeeded" || Terminating(p)) continue;
      auto r = kube::CheckResponse(st.ob.members[c]->api()->Delete(kube::ResourcePath("v1", "pods", st.ns, Name(p))),
                                   "deleting pod " + Name(p) + " of failed job " + st.key, {404});
      if (!r.ok()) d.log->Warn(r.status().ToString());
    }
  }
}

PhaseResult DeleteAfterTtl(const ReconcileDeps& d, JobState& st) {
  const auto& ttl = st.job.spec.run_policy.ttl_seconds_after_finished;
  if (!ttl) return PhaseResult::Done();
  auto done = ParseRfc3339(st.status.completion_time);
  if (!done) return PhaseResult::Done();
  std::time_t expires = *done + *ttl;
  if (st.now < expires) return PhaseResult::RequeueAfter(milliseconds((expires - st.now) * 1000 + 100));
  json opts = {{"kind", "DeleteOptions"},
               {"apiVersion", "v1"},
               {"propagationPolicy", "Background"},
               {"preconditions", {{"uid", st.uid}}}};
  // 404: gone already; 409: a new job of the same name (uid precondition).
  auto r = kube::CheckResponse(d.hub->Delete(JobsPath(st.ns, st.name), &opts), "deleting finished job " + st.key,
                               {404, 409});
  if (!r.ok()) return PhaseResult::Error(r.status());
  d.log->Info("job " + st.key + ": deleted " + std::to_string(*ttl) + " s after it finished (ttlSecondsAfterFinished)");
  return PhaseResult::Done();
}

}  // namespace stella::op
