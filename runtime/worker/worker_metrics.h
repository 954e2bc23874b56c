// The worker's Prometheus series: WorkerMetrics (training progress, phase
// times, tuner and WAN counters) and WanMetrics (per-peer link series, which
// also report link changes as "wan_link" events).
//
// Thread safety: handles are taken once at construction and the hot path
// keeps references; updates are lock-free, so the compute and communication
// threads both write them. WanMetrics::Update from one thread at a time.
#ifndef STELLA_RUNTIME_WORKER_WORKER_METRICS_H_
#define STELLA_RUNTIME_WORKER_WORKER_METRICS_H_

#include <vector>

#include "runtime/exchange/wan_mesh.h"
#include "runtime/worker/events.h"
#include "src/metrics/registry.h"

namespace stella::worker {

struct WorkerMetrics {
  WorkerMetrics(metrics::Registry& r, const metrics::Labels& l);

  // In stella mode compute and wait are observed on the compute thread, the
  // others on the communication thread.
  enum Phase { kCompute = 0, kCommunication = 1, kOptimizer = 2, kWait = 3, kCompression = 4 };
  void ObservePhase(Phase p, double seconds) {
    phase_total[p]->Increment(seconds);
    phase_last[p]->Set(seconds);
  }

  metrics::Counter& steps;
  metrics::Counter& samples;
  metrics::Gauge& samples_per_second;
  metrics::Gauge& loss;
  metrics::Gauge& test_accuracy;
  metrics::Gauge& test_loss;
  metrics::Histogram& step_seconds;
  metrics::Gauge& compute_busy;
  metrics::Gauge& parameters;
  metrics::Gauge& density;
  metrics::Gauge& wan_bytes_per_step;
  metrics::Gauge& batch_size;
  metrics::Gauge& inflight_steps;
  metrics::Counter& tuner_decisions;
  metrics::Counter& degraded_steps;
  metrics::Counter& resyncs;
  std::vector<metrics::Counter*> phase_total;  // owned by the registry
  std::vector<metrics::Gauge*> phase_last;
};

// Per-peer WAN series, refreshed from the mesh's counters; link changes seen
// between two refreshes are also reported as "wan_link" events.
struct WanMetrics {
  WanMetrics(metrics::Registry& r, const metrics::Labels& l, const std::vector<exchange::PeerLinkStats>& peers);
  void Update(const std::vector<exchange::PeerLinkStats>& peers, EventSink& events);

  std::vector<metrics::Gauge*> sent, received, goodput, up;  // owned by the registry
  std::vector<metrics::Counter*> reconnects, losses;         // owned by the registry
  std::vector<exchange::PeerLinkStats> last;                 // at the previous refresh
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_METRICS_H_
