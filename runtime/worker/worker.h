// Worker: one training process of a StellaJob. Wires the stages together —
// data shard, compute (libtorch), intra-cluster group, WAN mesh (gateways
// only), gradient exchange, optimizer, metrics — and runs the training loop.
//
// Two sync modes (spec.sync.mode): ddp (dense hierarchical all-reduce, the
// libtorch optimizer, everything inline) and stella (sparse WAN exchange with
// error feedback and the CPU optimizer on a master copy, run by the
// pipeline's communication thread with bounded staleness; see
// runtime/pipeline/).
//
// Every worker runs the same number of steps; decisions that must be taken
// together (stop on a signal, stop at the target accuracy) ride on the
// gradient all-reduce as extra values, so all workers stop at the same step.
// While a WAN link is down, a vote reaches only the clusters present in the
// round; a cluster stops on its own clusters' votes, and a peer that left the
// job (said Bye) counts as a vote to stop. A cluster that cannot reach the
// one that stopped trains on until its own end (steps, or a later Bye).
//
// Thread safety: Run is called once, from one thread. RequestStop may be
// called from any thread (it only sets an atomic flag).
#ifndef STELLA_RUNTIME_WORKER_WORKER_H_
#define STELLA_RUNTIME_WORKER_WORKER_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tuner/decision.h"
#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::worker {

struct WorkerOptions {
  spec::StellaJob job;
  int cluster_index = 0;
  int local_rank = 0;
  // Where local rank 0 serves the cluster's rendezvous store.
  std::string store_host = "127.0.0.1";
  int store_port = 0;
  // Gloo's own bind address; "" = store_host.
  std::string bind_host;
  // "host:port" of every cluster's gateway, in spec.clusters order.
  std::vector<std::string> wan_addresses;
  int metrics_port = 0;                 // 0 = no /metrics endpoint
  std::string metrics_bind = "127.0.0.1";
  int threads = 1;                      // libtorch intra-op threads
  std::string device = "auto";
  // Bound on every collective: a dead peer fails the run instead of hanging.
  std::chrono::milliseconds collective_timeout{120000};
  // WAN links between gateways (see runtime/exchange/wan_mesh.h): a link
  // silent this long is declared down (heartbeats go out every tenth of it);
  // a WAN round waits at most wan_round_timeout for a peer that is up but
  // late, then goes on without it. 0 = defaults: 10 s, and half the
  // collective timeout (the cluster's other workers wait in a collective
  // meanwhile).
  std::chrono::milliseconds wan_link_timeout{0};
  std::chrono::milliseconds wan_round_timeout{0};
  // Steps between "progress" events.
  int progress_every = 10;
  // If set, the final parameters are written here as raw little-endian fp32
  // (tests compare workers bit for bit).
  std::string dump_parameters_path;
};

class Worker {
 public:
  static StatusOr<std::unique_ptr<Worker>> Create(const WorkerOptions& options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Trains to the end (steps/epochs, or target accuracy, or a stop request).
  Status Run();

  void RequestStop() { stop_requested_.store(true); }

 private:
  struct State;
  struct Loop;
  explicit Worker(std::unique_ptr<State> state);
  Status RunDense(Loop& loop);
  Status RunStella(Loop& loop);
  // Stella mode with the tuner: telemetry out (compute thread), decision in
  // (communication thread). See worker.cc.
  void FillTelemetry(double compute_seconds, float* control);
  Status Tune(int64_t step, const float* control);
  int BatchAt(int64_t step, int rank) const;
  // Metrics, progress events and evaluation after a computed step.
  void AfterStep(Loop& loop, double compute_seconds, double step_seconds, float loss, double density);
  void Evaluate(Loop& loop);
  // WAN bytes sent/received by this gateway so far (0 elsewhere).
  std::pair<uint64_t, uint64_t> WanTotals();

  std::unique_ptr<State> state_;
  std::atomic<bool> stop_requested_{false};
  // Communication thread only (Tune): batch decisions made so far.
  std::vector<int> last_batches_;
  std::vector<tuner::Decision> batch_history_;
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_H_
