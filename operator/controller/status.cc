#include "operator/controller/status.h"

#include <cstdio>
#include <cstdlib>

namespace stella::op {

using json = nlohmann::json;

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
  if (!status->contains("conditions") || !(*status)["conditions"].is_array()) (*status)["conditions"] = json::array();
  json& conds = (*status)["conditions"];
  const std::string v = value ? "True" : "False";
  for (auto& c : conds) {
    if (c.value("type", "") != type) continue;
    bool flipped = c.value("status", "") != v;
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
  if (!status.contains("conditions") || !status["conditions"].is_array()) return false;
  for (const auto& c : status["conditions"]) {
    if (c.value("type", "") == type) return c.value("status", "") == "True";
  }
  return false;
}

PodCounts CountPods(const std::vector<const json*>& pods) {
  PodCounts n;
  for (const json* p : pods) {
    const std::string phase = p->value("/status/phase"_json_pointer, std::string("Pending"));
    if (phase == "Running") {
      ++n.running;
      for (const auto& c : p->value("/status/conditions"_json_pointer, json::array())) {
        if (c.value("type", "") == "Ready" && c.value("status", "") == "True") ++n.ready;
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
  std::string out = pod.value("/metadata/name"_json_pointer, std::string("?"));
  std::string reason = pod.value("/status/reason"_json_pointer, std::string());
  std::string message = pod.value("/status/message"_json_pointer, std::string());
  if (reason.empty()) {
    for (const auto& cs : pod.value("/status/containerStatuses"_json_pointer, json::array())) {
      if (cs.contains("state") && cs["state"].contains("terminated")) {
        const json& t = cs["state"]["terminated"];
        reason = t.value("reason", std::string("Error"));
        message = "exit code " + std::to_string(t.value("exitCode", -1)) +
                  (t.value("message", std::string()).empty() ? "" : ": " + t.value("message", std::string()));
        break;
      }
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
    if (name == "stella_steps_total") f.step = static_cast<int64_t>(v);
    else if (name == "stella_samples_per_second") f.samples_per_second = v;
    else if (name == "stella_density") f.density = v;
    else if (name == "stella_batch_size") f.batch_size = static_cast<int64_t>(v);
  }
  return f;
}

}  // namespace stella::op
