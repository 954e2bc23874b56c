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
  // --tls-dir: ca.crt, tls.crt, tls.key for mutual TLS on every WAN link
  // (gateways only; other workers ignore it). "" = plain TCP, with a warning.
  std::string tls_dir;
  int metrics_port = 0;                 // 0 = no /metrics endpoint
  std::string metrics_bind = "127.0.0.1";
  int threads = 1;                      // libtorch intra-op threads
  std::string device = "auto";
  // Bound on every collective: a dead peer fails the run instead of hanging.
  std::chrono::milliseconds collective_timeout{120000};
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
