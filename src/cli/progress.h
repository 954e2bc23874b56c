// ProgressView: turns the event stream of a running job (the "@stella {...}"
// lines of stella-runtime, see supervisor.h) into progress output.
//
// On a terminal it keeps one live line, redrawn in place (\r + ANSI
// clear-line): a bar, step/total, samples/s, loss, test accuracy, WAN MB/s
// and ETA. Otherwise (a pipe, a CI log) it prints deterministic plain lines:
// one for the start, one per eval event, one each time training crosses
// another 10% of its steps, and one per error event.
//
// Events used: "start", "progress", "eval", "resume" and "checkpoint" from
// global rank 0 (a line each for the last two); "error" and "wan_link" (a
// gateway's link to a peer cluster went down, came back, or the peer left)
// from any worker: each prints a line, and while some link is down the live
// line says so. Missing or mistyped fields are treated as absent. A restarted
// job (the CLI restarts it from a checkpoint) sends "start" and "resume"
// again; the view then continues from the resumed step.
//
// Thread safety: thread-compatible; feed it from one thread (the
// supervisor's Run thread).
#ifndef STELLA_SRC_CLI_PROGRESS_H_
#define STELLA_SRC_CLI_PROGRESS_H_

#include <cstdint>
#include <ostream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace stella::cli {

class ProgressView {
 public:
  // `out` is not owned and must outlive the view. `tty` selects the live
  // line; callers usually pass isatty(STDOUT_FILENO). `columns` > 0 cuts the
  // live line to fit a terminal that wide (a wrapped line could not be
  // redrawn in place); 0 (default) never cuts.
  ProgressView(std::ostream& out, bool tty, int columns = 0);

  // Consumes one event from the named worker process (e.g. "cloud/0").
  void OnEvent(const std::string& process_name, const nlohmann::json& event);

  // Prints a whole line (a warning, a notice) without garbling the live
  // line, which is redrawn after it.
  void PrintLine(const std::string& line);

  // Ends the live line so later output starts on a fresh line. Idempotent.
  void Finish();

 private:
  void OnStart(const nlohmann::json& event);
  void OnProgress(const nlohmann::json& event);
  void OnEval(const nlohmann::json& event);
  void OnResume(const nlohmann::json& event);
  void OnCheckpoint(const nlohmann::json& event);
  void OnWanLink(const nlohmann::json& event);
  void Redraw();
  void ClearLiveLine();
  std::string EtaText() const;

  std::ostream& out_;
  const bool tty_;
  const int columns_;
  bool live_line_shown_ = false;

  int64_t total_steps_ = 0;
  int64_t step_ = 0;
  int64_t resumed_step_ = 0;  // where the current attempt started
  double elapsed_seconds_ = 0;
  double samples_per_second_ = -1;  // < 0: not reported yet
  double loss_ = -1;                // < 0: not reported yet
  double test_accuracy_ = -1;       // < 0: not evaluated yet
  double wan_mb_per_second_ = -1;   // < 0: not measurable yet
  double last_wan_bytes_ = 0;
  double last_wan_elapsed_ = 0;
  int next_decile_ = 1;               // non-TTY: the next 10% mark to report
  std::set<std::string> links_down_;  // "cluster -> peer" of links reported down
};

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_PROGRESS_H_
