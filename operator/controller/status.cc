#include "operator/controller/status.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "operator/controller/json_read.h"

namespace stella::op {

using json = nlohmann::json;

namespace {

using json_read::ArrayAt;
using json_read::At;
using json_read::Str;
using json_read::StringAt;

// A finite value that fits int64 (a cast of anything else is undefined).
bool FitsInt64(double v) { return std::isfinite(v) && v >= -9.2e18 && v <= 9.2e18; }

}  // namespace

std::string Rfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<std::time_t> ParseRfc3339(const std::string& text) {
  std::tm tm{};
  int y, mo, d, h, mi, s;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) != 6) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return timegm(&tm);
}

bool SetCondition(json* status, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation, std::time_t now) {
  // The operator owns status: anything that is not an object is replaced.
  if (!status->is_object()) *status = json::object();
  if (!status->contains("conditions") || !(*status)["conditions"].is_array()) (*status)["conditions"] = json::array();
  json& conds = (*status)["conditions"];
  const std::string v = value ? "True" : "False";
  for (auto& c : conds) {
    if (!c.is_object() || Str(c, "type") != type) continue;
    bool flipped = Str(c, "status") != v;
    if (flipped) c["lastTransitionTime"] = Rfc3339(now);
    c["status"] = v;
    c["reason"] = reason;
    c["message"] = message;
    c["observedGeneration"] = generation;
    return flipped;
  }
  conds.push_back({{"type", type},
                   {"status", v},
                   {"reason", reason},
                   {"message", message},
                   {"observedGeneration", generation},
                   {"lastTransitionTime", Rfc3339(now)}});
  return true;
}

bool ConditionTrue(const json& status, const std::string& type) {
  for (const auto& c : ArrayAt(status, {"conditions"})) {
    if (Str(c, "type") == type) return Str(c, "status") == "True";
  }
  return false;
}

bool SetCondition(spec::JobStatus* status, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation, std::time_t now) {
  const std::string v = value ? "True" : "False";
  for (auto& c : status->conditions) {
    if (c.type != type) continue;
    bool flipped = c.status != v;
    if (flipped) c.last_transition_time = Rfc3339(now);
    c.status = v;
    c.reason = reason;
    c.message = message;
    c.observed_generation = generation;
    return flipped;
  }
  status->conditions.push_back({type, v, reason, message, generation, Rfc3339(now)});
  return true;
}

bool ConditionTrue(const spec::JobStatus& status, const std::string& type) {
  for (const auto& c : status.conditions) {
    if (c.type == type) return c.status == "True";
  }
  return false;
}

namespace {

// Integers only where the API stores integers: a float there was not written
// by the operator (and converting a huge one would be undefined).
template <typename T>
void ReadInt(const json& j, const char* key, T* out) {
  const json* v = At(j, {key});
  if (v && v->is_number_integer()) *out = static_cast<T>(v->get<int64_t>());
}

void ReadDouble(const json& j, const char* key, double* out) {
  const json* v = At(j, {key});
  if (v && v->is_number()) *out = v->get<double>();
}

spec::ClusterStatus ClusterStatusFromJson(const json& j) {
  spec::ClusterStatus c;
  c.name = Str(j, "name");
  ReadInt(j, "workers", &c.workers);
  if (const json* r = At(j, {"reachable"}); r && r->is_boolean()) c.reachable = r->get<bool>();
  c.message = Str(j, "message");
  c.gateway_address = Str(j, "gatewayAddress");
  c.gateway_node = Str(j, "gatewayNode");
  for (const char* k : {"pending", "running", "ready", "succeeded", "failed"}) {
    if (At(j, {k})) c.counts.emplace();
  }
  if (c.counts) {
    ReadInt(j, "pending", &c.counts->pending);
    ReadInt(j, "running", &c.counts->running);
    ReadInt(j, "ready", &c.counts->ready);
    ReadInt(j, "succeeded", &c.counts->succeeded);
    ReadInt(j, "failed", &c.counts->failed);
  }
  return c;
}

json ClusterStatusToJson(const spec::ClusterStatus& c) {
  json j = {{"name", c.name}, {"workers", c.workers}, {"reachable", c.reachable}};
  if (!c.message.empty()) j["message"] = c.message;
  if (!c.gateway_address.empty()) j["gatewayAddress"] = c.gateway_address;
  if (!c.gateway_node.empty()) j["gatewayNode"] = c.gateway_node;
  if (c.counts) {
    j["pending"] = c.counts->pending;
    j["running"] = c.counts->running;
    j["ready"] = c.counts->ready;
    j["succeeded"] = c.counts->succeeded;
    j["failed"] = c.counts->failed;
  }
  return j;
}

}  // namespace

spec::JobStatus JobStatusFromJson(const json& j) {
  spec::JobStatus s;
  if (!j.is_object()) return s;
  s.phase = Str(j, "phase");
  s.message = Str(j, "message");
  ReadInt(j, "observedGeneration", &s.observed_generation);
  ReadInt(j, "step", &s.step);
  ReadDouble(j, "samplesPerSecond", &s.samples_per_second);
  ReadDouble(j, "density", &s.density);
  if (const json* b = At(j, {"batchSize"}); b && b->is_number_integer()) s.batch_size = b->get<int64_t>();
  for (const auto& c : ArrayAt(j, {"conditions"})) {
    if (!c.is_object() || Str(c, "type").empty()) continue;
    spec::JobCondition cond{
        Str(c, "type"), Str(c, "status"), Str(c, "reason"), Str(c, "message"), 0, Str(c, "lastTransitionTime")};
    ReadInt(c, "observedGeneration", &cond.observed_generation);
    s.conditions.push_back(std::move(cond));
  }
  for (const auto& c : ArrayAt(j, {"clusters"})) {
    if (c.is_object()) s.clusters.push_back(ClusterStatusFromJson(c));
  }
  s.clusters_ready = Str(j, "clustersReady");
  s.start_time = Str(j, "startTime");
  s.first_start_time = Str(j, "firstStartTime");
  s.completion_time = Str(j, "completionTime");
  ReadInt(j, "restarts", &s.restarts);
  s.certificates_rotation = Str(j, "certificatesRotation");
  return s;
}

json JobStatusToJson(const spec::JobStatus& s) {
  json j = json::object();
  if (!s.phase.empty()) j["phase"] = s.phase;
  if (!s.message.empty()) j["message"] = s.message;
  j["observedGeneration"] = s.observed_generation;
  if (s.batch_size || s.step != 0 || s.samples_per_second != 0 || s.density != 0) {
    j["step"] = s.step;
    j["samplesPerSecond"] = s.samples_per_second;
    j["density"] = s.density;
  }
  if (s.batch_size) j["batchSize"] = *s.batch_size;
  if (!s.conditions.empty()) {
    json conds = json::array();
    for (const auto& c : s.conditions) {
      conds.push_back({{"type", c.type},
                       {"status", c.status},
                       {"reason", c.reason},
                       {"message", c.message},
                       {"observedGeneration", c.observed_generation},
                       {"lastTransitionTime", c.last_transition_time}});
    }
    j["conditions"] = conds;
  }
  if (!s.clusters.empty()) {
    json clusters = json::array();
    for (const auto& c : s.clusters) clusters.push_back(ClusterStatusToJson(c));
    j["clusters"] = clusters;
  }
  for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"clustersReady", &s.clusters_ready},
                                   {"startTime", &s.start_time},
                                   {"firstStartTime", &s.first_start_time},
                                   {"completionTime", &s.completion_time},
                                   {"certificatesRotation", &s.certificates_rotation}}) {
    if (!value->empty()) j[key] = *value;
  }
  if (s.restarts != 0) j["restarts"] = s.restarts;
  return j;
}

PodCounts CountPods(const std::vector<const json*>& pods) {
  PodCounts n;
  for (const json* p : pods) {
    const std::string phase = StringAt(*p, {"status", "phase"}, "Pending");
    if (phase == "Running") {
      ++n.running;
      // The first Ready condition decides, as in ConditionTrue (a pod listing
      // Ready twice is still one pod).
      for (const auto& c : ArrayAt(*p, {"status", "conditions"})) {
        if (Str(c, "type") != "Ready") continue;
        if (Str(c, "status") == "True") ++n.ready;
        break;
      }
    } else if (phase == "Succeeded") {
      ++n.succeeded;
    } else if (phase == "Failed") {
      ++n.failed;
    } else {
      ++n.pending;  // Pending and Unknown
    }
  }
  return n;
}

std::string DescribeFailure(const json& pod) {
  std::string out = StringAt(pod, {"metadata", "name"}, "?");
  std::string reason = StringAt(pod, {"status", "reason"});
  std::string message = StringAt(pod, {"status", "message"});
  if (reason.empty()) {
    for (const auto& cs : ArrayAt(pod, {"status", "containerStatuses"})) {
      const json* t = At(cs, {"state", "terminated"});
      if (!t || !t->is_object()) continue;
      reason = StringAt(*t, {"reason"}, "Error");
      const json* code = At(*t, {"exitCode"});
      // Integers only: converting a huge float to an integer is undefined.
      const int64_t exit_code = code && code->is_number_integer() ? code->get<int64_t>() : -1;
      const std::string text = Str(*t, "message");
      message = "exit code " + std::to_string(exit_code) + (text.empty() ? "" : ": " + text);
      break;
    }
  }
  if (reason.empty()) reason = "Failed";
  return out + ": " + reason + (message.empty() ? "" : ": " + message);
}

RuntimeFigures ParseRuntimeMetrics(const std::string& text) {
  RuntimeFigures f;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) continue;
    std::string name = line.substr(0, name_end);
    size_t value_start = line[name_end] == '{' ? line.find("} ", name_end) : name_end;
    if (value_start == std::string::npos) continue;
    value_start = line.find_first_not_of("} ", value_start);
    if (value_start == std::string::npos) continue;
    char* stop = nullptr;
    double v = std::strtod(line.c_str() + value_start, &stop);
    if (stop == line.c_str() + value_start) continue;
    // NaN, +Inf and values past int64 read as absent: the figures go into
    // the job's status, and casting them to int64 would be undefined.
    if (!FitsInt64(v)) continue;
    if (name == "stella_steps_total")
      f.step = static_cast<int64_t>(v);
    else if (name == "stella_samples_per_second")
      f.samples_per_second = v;
    else if (name == "stella_density")
      f.density = v;
    else if (name == "stella_batch_size")
      f.batch_size = static_cast<int64_t>(v);
  }
  return f;
}

}  // namespace stella::op
