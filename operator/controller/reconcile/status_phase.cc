// Phase: the job's status from what the members report (per-cluster counts,
// phase, conditions, the runtime's figures), the Events of each transition,
// and when to look again. Always ends the pass.
#include <algorithm>

#include "operator/controller/names.h"
#include "operator/controller/reconcile/phases.h"
#include "operator/controller/runtime_scraper.h"
#include "operator/controller/status.h"

namespace stella::op {

using json = nlohmann::json;
using std::chrono::milliseconds;

namespace {

// Per-cluster counts of this attempt's pods; returns the job-wide sums and
// how many clusters are all running (or all done).
PodCounts CountWorkers(JobState& st, int* clusters_ready) {
  const auto& clusters = st.job.spec.clusters;
  PodCounts all;
  *clusters_ready = 0;
  for (size_t c = 0; c < clusters.size(); ++c) {
    PodCounts n = CountPods(st.current[c]);
    spec::WorkerCounts& counts = st.status.clusters[c].counts.emplace();
    counts.pending = n.pending + (clusters[c].workers - std::min(clusters[c].workers, n.total()));
    counts.running = n.running;
    counts.ready = n.ready;
    counts.succeeded = n.succeeded;
    counts.failed = n.failed;
    if (n.running == clusters[c].workers || n.succeeded == clusters[c].workers) ++*clusters_ready;
    all.pending += n.pending;
    all.running += n.running;
    all.ready += n.ready;
    all.succeeded += n.succeeded;
  }
  return all;
}

// While Running: rank 0 of the first cluster reports job-wide figures,
// reached through its API server's pod proxy (no network path from the hub
// needed). The scrape itself runs in the RuntimeScraper's thread; this only
// names the target and copies the latest figures.
void ShowRuntimeFigures(const ReconcileDeps& d, JobState& st) {
  if (!d.runtime || st.ob.members.empty() || !st.ob.members[0]) return;
  const auto& cl = st.job.spec.clusters[0];
  const std::string path = kube::ResourcePath(
      "v1", "pods", st.ns, PodName(st.name, cl.name, 0) + ":" + std::to_string(d.options.runtime_metrics_port),
      "proxy/metrics");
  d.runtime->Track(st.uid, st.key, st.ob.members[0]->api(), path);
  std::optional<RuntimeFigures> f = d.runtime->Latest(st.uid);
  if (!f) return;
  if (f->step >= 0) st.status.step = f->step;
  if (f->samples_per_second >= 0) st.status.samples_per_second = f->samples_per_second;
  if (f->density >= 0) st.status.density = f->density;
  if (f->batch_size >= 0) st.status.batch_size = f->batch_size;
}

}  // namespace

PhaseResult StatusPhase(const ReconcileDeps& d, JobState& st) {
  const size_t nc = st.job.spec.clusters.size();
  int clusters_ready = 0;
  PodCounts all = CountWorkers(st, &clusters_ready);
  const int total = st.job.TotalWorkers();
  st.status.clusters_ready = std::to_string(clusters_ready) + "/" + std::to_string(nc);
  std::vector<std::pair<std::string, std::string>> events;
  if (SetCondition(&st.status, "Created", true, "WorkersCreated",
                   "services and " + std::to_string(total) + " workers created", st.generation, st.now)) {
    events.emplace_back("Created",
                        "created " + std::to_string(total) + " workers in " + std::to_string(nc) + " clusters");
  }
  if (all.succeeded == total) {
    st.status.phase = kPhaseSucceeded;
    st.status.completion_time = Rfc3339(st.now);
    st.status.message.clear();
    SetCondition(&st.status, "Running", false, "Completed", "every worker finished", st.generation, st.now);
    if (SetCondition(&st.status, "Succeeded", true, "Completed", "every worker exited 0", st.generation, st.now)) {
      events.emplace_back("Succeeded", "every worker exited 0");
    }
  } else if (all.running + all.succeeded == total && all.running > 0) {
    st.status.phase = kPhaseRunning;
    st.status.message.clear();
    if (SetCondition(&st.status, "Running", true, "WorkersRunning", "every worker is running", st.generation, st.now)) {
      events.emplace_back("Running", "all " + std::to_string(total) + " workers are running");
    }
    ShowRuntimeFigures(d, st);
  } else {
    st.status.phase = kPhaseCreated;
    st.status.message = std::to_string(all.running) + "/" + std::to_string(total) + " workers running";
  }
  if (st.status.phase != kPhaseRunning && d.runtime) d.runtime->Forget(st.uid);
  STELLA_PHASE_RETURN_IF_ERROR(WriteStatus(d, st));
  for (const auto& [reason, msg] : events) RecordEvent(d, st, "Normal", reason, msg);

  if (st.status.phase == kPhaseSucceeded) return DeleteAfterTtl(d, st);
  milliseconds after{0};
  if (st.status.phase == kPhaseRunning) after = d.options.runtime_poll;
  if (st.job.spec.run_policy.active_deadline_seconds) {
    if (auto start = ParseRfc3339(st.status.start_time)) {
      milliseconds left((*start + *st.job.spec.run_policy.active_deadline_seconds - st.now) * 1000 + 100);
      if (after.count() == 0 || left < after) after = std::max(left, milliseconds(100));
    }
  }
  return PhaseResult::RequeueAfter(after);
}

}  // namespace stella::op
