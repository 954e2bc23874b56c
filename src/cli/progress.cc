#include "src/cli/progress.h"

#include <algorithm>

#include "src/cli/format.h"

namespace stella::cli {
namespace {

constexpr char kClearLine[] = "\r\033[2K";
constexpr int kBarWidth = 24;

bool FromRankZero(const nlohmann::json& event) { return EventInt(event, "global_rank", -1) == 0; }

}  // namespace

ProgressView::ProgressView(std::ostream& out, bool tty, int columns) : out_(out), tty_(tty), columns_(columns) {}

void ProgressView::OnEvent(const std::string& process_name, const nlohmann::json& event) {
  std::string kind = EventString(event, "event", "");
  if (kind == "error") {
    PrintLine("error from " + process_name + ": " + EventString(event, "message", "(no message)"));
    return;
  }
  if (kind == "wan_link") {
    OnWanLink(event);
    return;
  }
  if (!FromRankZero(event)) return;
  if (kind == "start") {
    OnStart(event);
  } else if (kind == "progress") {
    OnProgress(event);
  } else if (kind == "eval") {
    OnEval(event);
  } else if (kind == "resume") {
    OnResume(event);
  } else if (kind == "checkpoint") {
    OnCheckpoint(event);
  }
}

void ProgressView::OnResume(const nlohmann::json& event) {
  const int64_t step = EventInt(event, "step", 0);
  step_ = resumed_step_ = step;
  next_decile_ = total_steps_ > 0 ? static_cast<int>(std::min<int64_t>(step * 10 / total_steps_, 10)) + 1 : 1;
  std::string line;
  if (event.contains("from_checkpoint") && event["from_checkpoint"].is_boolean() &&
      event["from_checkpoint"].get<bool>()) {
    line = "resumed from checkpoint at step " + std::to_string(step);
    if (total_steps_ > 0) line += "/" + std::to_string(total_steps_);
  } else {
    line = "no checkpoint that every worker holds complete; starting at step 0";
  }
  if (event.contains("skipped") && event["skipped"].is_array()) {
    for (const auto& why : event["skipped"]) {
      if (why.is_string()) line += "\n  skipped " + why.get<std::string>();
    }
  }
  PrintLine(line);
}

void ProgressView::OnCheckpoint(const nlohmann::json& event) {
  PrintLine("checkpoint step " + std::to_string(EventInt(event, "step", 0)) + " saved (" +
            HumanBytes(static_cast<uint64_t>(std::max(0.0, EventNumber(event, "bytes", 0)))) + " per worker, " +
            Fixed(EventNumber(event, "seconds", 0) * 1000, 1) + " ms)");
}

void ProgressView::OnStart(const nlohmann::json& event) {
  total_steps_ = EventInt(event, "total_steps", total_steps_);
  // A new attempt: its processes count elapsed time and WAN bytes from 0.
  resumed_step_ = 0;
  last_wan_bytes_ = 0;
  last_wan_elapsed_ = 0;
  std::string line = "start: world size " + std::to_string(EventInt(event, "world_size", 0)) + ", device " +
                     EventString(event, "device", "?") + ", mode " + EventString(event, "mode", "?") + ", " +
                     std::to_string(EventInt(event, "parameters", 0)) + " parameters, " + std::to_string(total_steps_) +
                     " steps";
  PrintLine(line);
}

void ProgressView::OnProgress(const nlohmann::json& event) {
  total_steps_ = EventInt(event, "total_steps", total_steps_);
  step_ = EventInt(event, "step", step_);
  samples_per_second_ = EventNumber(event, "samples_per_second", samples_per_second_);
  loss_ = EventNumber(event, "loss", loss_);
  double elapsed = EventNumber(event, "elapsed_seconds", elapsed_seconds_);
  double wan_bytes = EventNumber(event, "wan_bytes_sent", 0) + EventNumber(event, "wan_bytes_received", 0);
  // The rate over the interval since the previous progress event, so that it
  // follows the current phase of training rather than the whole-run average.
  if (elapsed > last_wan_elapsed_ && wan_bytes >= last_wan_bytes_) {
    wan_mb_per_second_ = (wan_bytes - last_wan_bytes_) / (elapsed - last_wan_elapsed_) / 1e6;
    last_wan_bytes_ = wan_bytes;
    last_wan_elapsed_ = elapsed;
  }
  elapsed_seconds_ = elapsed;

  if (tty_) {
    Redraw();
    return;
  }
  if (total_steps_ <= 0) return;
  int decile = static_cast<int>(std::min<int64_t>(step_ * 10 / total_steps_, 10));
  if (decile < next_decile_) return;
  next_decile_ = decile + 1;
  std::string line = "progress " + std::to_string(decile * 10) + "% step " + std::to_string(step_) + "/" +
                     std::to_string(total_steps_);
  if (samples_per_second_ >= 0) line += ", " + Fixed(samples_per_second_, 1) + " samples/s";
  if (loss_ >= 0) line += ", loss " + Fixed(loss_, 4);
  if (wan_mb_per_second_ >= 0) line += ", WAN " + Fixed(wan_mb_per_second_, 2) + " MB/s";
  line += ", elapsed " + HumanDuration(elapsed_seconds_) + ", ETA " + EtaText();
  out_ << line << "\n";
  out_.flush();
}

void ProgressView::OnEval(const nlohmann::json& event) {
  step_ = std::max(step_, EventInt(event, "step", step_));
  test_accuracy_ = EventNumber(event, "test_accuracy", test_accuracy_);
  double test_loss = EventNumber(event, "test_loss", -1);
  if (tty_) {
    Redraw();
    return;
  }
  std::string line = "eval step " + std::to_string(EventInt(event, "step", step_));
  if (total_steps_ > 0) line += "/" + std::to_string(total_steps_);
  line += ": test accuracy " + (test_accuracy_ >= 0 ? Fixed(test_accuracy_ * 100, 2) + "%" : "?");
  if (test_loss >= 0) line += ", test loss " + Fixed(test_loss, 4);
  line += ", elapsed " + HumanDuration(EventNumber(event, "elapsed_seconds", elapsed_seconds_));
  out_ << line << "\n";
  out_.flush();
}

void ProgressView::OnWanLink(const nlohmann::json& event) {
  const std::string link = EventString(event, "cluster_name", "?") + " -> " + EventString(event, "peer", "?");
  const std::string state = EventString(event, "state", "");
  std::string line = "WAN link " + link;
  if (state == "down") {
    links_down_.insert(link);
    line += " down: " + EventString(event, "reason", "(no reason)") + "; training on with the clusters reachable";
  } else if (state == "up") {
    links_down_.erase(link);
    line += " up again (connection " + std::to_string(EventInt(event, "connects", 0)) + ")";
  } else if (state == "left") {
    links_down_.erase(link);
    line += ": the peer left the job";
  } else {
    return;
  }
  PrintLine(line);
}

std::string ProgressView::EtaText() const {
  if (step_ <= resumed_step_ || elapsed_seconds_ <= 0 || total_steps_ <= 0) return "?";
  double steps_per_second = static_cast<double>(step_ - resumed_step_) / elapsed_seconds_;
  return HumanDuration(static_cast<double>(std::max<int64_t>(total_steps_ - step_, 0)) / steps_per_second);
}

void ProgressView::Redraw() {
  std::string line = kClearLine;
  double fraction = total_steps_ > 0 ? std::clamp(static_cast<double>(step_) / total_steps_, 0.0, 1.0) : 0;
  int filled = static_cast<int>(fraction * kBarWidth);
  line += "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "] ";
  line += std::to_string(step_) + "/" + (total_steps_ > 0 ? std::to_string(total_steps_) : "?");
  line += " " + Fixed(fraction * 100, 1) + "%";
  if (samples_per_second_ >= 0) line += " | " + Fixed(samples_per_second_, 0) + " samples/s";
  if (loss_ >= 0) line += " | loss " + Fixed(loss_, 3);
  if (test_accuracy_ >= 0) line += " | acc " + Fixed(test_accuracy_ * 100, 1) + "%";
  if (wan_mb_per_second_ >= 0) line += " | WAN " + Fixed(wan_mb_per_second_, 2) + " MB/s";
  if (!links_down_.empty()) line += " | WAN degraded (" + std::to_string(links_down_.size()) + " link down)";
  line += " | ETA " + EtaText();
  const size_t visible_max = columns_ > 1 ? static_cast<size_t>(columns_ - 1) : 0;
  const size_t prefix = sizeof(kClearLine) - 1;
  if (visible_max > 0 && line.size() - prefix > visible_max) line.resize(prefix + visible_max);
  out_ << line;
  out_.flush();
  live_line_shown_ = true;
}

void ProgressView::ClearLiveLine() {
  if (live_line_shown_) out_ << kClearLine;
}

void ProgressView::PrintLine(const std::string& line) {
  ClearLiveLine();
  out_ << line << "\n";
  if (tty_ && live_line_shown_) {
    Redraw();
  } else {
    out_.flush();
  }
}

void ProgressView::Finish() {
  if (live_line_shown_) {
    out_ << "\n";
    out_.flush();
    live_line_shown_ = false;
  }
}

}  // namespace stella::cli
