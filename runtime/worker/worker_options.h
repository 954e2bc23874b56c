// WorkerOptions: how one stella-runtime process is placed in its job (the
// job itself, its cluster and rank, addresses, flags). Plain values, no
// libtorch, so the wiring from it (options_from_spec.h) is tested alone.
#ifndef STELLA_RUNTIME_WORKER_WORKER_OPTIONS_H_
#define STELLA_RUNTIME_WORKER_WORKER_OPTIONS_H_

#include <chrono>
#include <string>
#include <vector>

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
  int metrics_port = 0;  // 0 = no /metrics endpoint
  std::string metrics_bind = "127.0.0.1";
  int threads = 1;  // libtorch intra-op threads
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
  // Continue from the newest checkpoint every worker holds (see above);
  // needs spec.checkpoint.path. Default false: start at step 0.
  bool resume = false;
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_WORKER_OPTIONS_H_
