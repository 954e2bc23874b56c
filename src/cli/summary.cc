#include "src/cli/summary.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "src/base/file.h"
#include "src/cli/format.h"

namespace stella::cli {

void SummaryCollector::OnEvent(const nlohmann::json& event) {
  if (EventString(event, "event", "") != "done") return;
  int64_t rank = EventInt(event, "global_rank", -1);
  if (rank < 0) return;
  done_by_rank_[rank] = event;
}

StatusOr<RunSummary> SummaryCollector::Summarize(const JobInfo& info) const {
  auto rank0 = done_by_rank_.find(0);
  if (rank0 == done_by_rank_.end()) {
    return FailedPreconditionError("no \"done\" event from global rank 0 (got " + std::to_string(done_by_rank_.size()) +
                                   " of " + std::to_string(info.workers) + "); the run did not report its results");
  }
  RunSummary s;
  s.info = info;
  s.steps = EventInt(rank0->second, "steps", 0);
  s.final_accuracy = EventNumber(rank0->second, "final_accuracy", 0);
  s.final_validation_loss = EventNumber(rank0->second, "final_validation_loss", -1);
  s.wall_seconds = EventNumber(rank0->second, "wall_seconds", 0);
  s.resumed_from = EventInt(rank0->second, "resumed_from", 0);
  for (const auto& [rank, event] : done_by_rank_) {
    s.samples += std::max<int64_t>(EventInt(event, "samples", 0), 0);
    s.wan_bytes += static_cast<uint64_t>(std::max<int64_t>(EventInt(event, "wan_bytes_sent", 0), 0));
    s.dense_wan_bytes += static_cast<uint64_t>(std::max<int64_t>(EventInt(event, "dense_wan_bytes", 0), 0));
    s.wan_degraded_steps = std::max(s.wan_degraded_steps, EventInt(event, "wan_degraded_steps", 0));
  }
  s.samples_per_second = s.wall_seconds > 0 ? static_cast<double>(s.samples) / s.wall_seconds : 0;
  s.done_workers = static_cast<int>(done_by_rank_.size());
  return s;
}

namespace {

int64_t StepsLost(const RunSummary& s) {
  int64_t lost = 0;
  for (const RestartRecord& r : s.restarts) lost += r.steps_lost;
  return lost;
}

// "1.2 GB (95.3x what was sent)": the bytes dense fp32 exchange would have
// sent over the same steps; what Stella saves on the WAN.
std::string DenseComparison(const RunSummary& s) {
  if (s.dense_wan_bytes == 0) return "-";
  std::string text = HumanBytes(s.dense_wan_bytes);
  if (s.wan_bytes > 0 && s.info.mode != "ddp") {
    text +=
        " (" + Fixed(static_cast<double>(s.dense_wan_bytes) / static_cast<double>(s.wan_bytes), 1) + "x what was sent)";
  }
  return text;
}

std::string RestartsText(const RunSummary& s) {
  if (s.restarts.empty()) return "0";
  return std::to_string(s.restarts.size()) + " (" + std::to_string(StepsLost(s)) + " steps lost; resumed at step " +
         std::to_string(s.resumed_from) + ")";
}

}  // namespace

std::string RenderSummaryTable(const RunSummary& s) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"wall time", HumanDuration(s.wall_seconds)},
      {"final accuracy", s.final_accuracy < 0 ? std::string("-") : Fixed(s.final_accuracy * 100, 2) + "%"},
      {"samples/s", Fixed(s.samples_per_second, 1)},
      {"steps", std::to_string(s.steps)},
      {"restarts", RestartsText(s)},
      {"WAN bytes sent", HumanBytes(s.wan_bytes) + " (" + std::to_string(s.wan_bytes) + " B)"},
      {"dense WAN", DenseComparison(s)},
      {"mode", s.info.mode},
      {"workers", std::to_string(s.info.workers)},
      {"clusters", std::to_string(s.info.clusters)},
      {"log dir", s.info.log_dir},
  };
  if (s.final_validation_loss >= 0)
    rows.insert(rows.begin() + 2, {"final val loss", Fixed(s.final_validation_loss, 4)});
  if (s.wan_degraded_steps > 0) {
    rows.insert(rows.end() - 4, {"WAN degraded steps", std::to_string(s.wan_degraded_steps) + " (a link was down)"});
  }
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  std::string out;
  for (const auto& [label, value] : rows) {
    out += "  " + label + std::string(width - label.size() + 3, ' ') + value + "\n";
  }
  return out;
}

nlohmann::json SummaryToJson(const RunSummary& s) {
  nlohmann::json log = nlohmann::json::array();
  for (const RestartRecord& r : s.restarts) {
    log.push_back({{"reason", r.reason},
                   {"failed_at_step", r.failed_at_step},
                   {"resumed_from", r.resumed_from},
                   {"steps_lost", r.steps_lost}});
  }
  return nlohmann::json{
      {"job", s.info.job},
      {"mode", s.info.mode},
      {"clusters", s.info.clusters},
      {"workers", s.info.workers},
      {"shaper", s.info.shaper},
      {"log_dir", s.info.log_dir},
      {"steps", s.steps},
      {"samples", s.samples},
      {"final_accuracy", s.final_accuracy},
      {"final_validation_loss", s.final_validation_loss},
      {"wall_seconds", s.wall_seconds},
      {"samples_per_second", s.samples_per_second},
      {"wan_bytes", s.wan_bytes},
      {"dense_wan_bytes", s.dense_wan_bytes},
      {"done_workers", s.done_workers},
      {"resumed_from", s.resumed_from},
      {"total_wall_seconds", s.total_wall_seconds},
      {"restarts", s.restarts.size()},
      {"steps_lost", StepsLost(s)},
      {"restart_log", log},
      {"wan_degraded_steps", s.wan_degraded_steps},
  };
}

Status WriteJsonAtomically(const std::string& path, const nlohmann::json& value) {
  return WriteFileAtomically(path, value.dump(2) + "\n");
}

}  // namespace stella::cli
