// LaunchPlan: how `stella run` lays a StellaJob out on one machine: one
// stella-runtime process per worker per cluster, with the loopback ports they
// use to find each other (a per-cluster rendezvous store, a per-cluster WAN
// gateway) and to expose Prometheus metrics.
//
// Worker naming and ranks: cluster c (0-based, in manifest order), local rank
// r is process "<cluster name>/<r>" with global rank = workers of clusters
// 0..c-1 + r. With spec.metrics.port = P > 0, global rank g serves metrics on
// P + g; with P = 0 metrics are off ("--metrics-port 0"). With
// gateway_tls_dirs, each cluster's gateway also gets "--tls-dir DIR".
//
// Thread safety: pure functions; safe from any thread.
#ifndef STELLA_SRC_CLI_LAUNCH_PLAN_H_
#define STELLA_SRC_CLI_LAUNCH_PLAN_H_

#include <string>
#include <vector>

#include "src/base/status.h"
#include "src/cli/supervisor.h"
#include "src/spec/stella_job.h"

namespace stella::cli {

struct LaunchPlanOptions {
  // The manifest the workers read; made absolute (against the current
  // directory) because workers may not share the CLI's working directory.
  // Required.
  std::string job_path;
  // The stella-runtime binary. Required.
  std::string runtime_path;
  // 0 (default): store and gateway ports are free loopback ports picked by
  // the kernel. > 0: cluster c gets store port base_port + c and gateway port
  // base_port + clusters + c (deterministic, for tests and fixed firewalls).
  int base_port = 0;
  // --tls-dir for each cluster's gateway (local rank 0), in spec.clusters
  // order; empty (default) = no --tls-dir, plain TCP WAN links. Ignored for
  // one-cluster jobs (no WAN).
  std::vector<std::string> gateway_tls_dirs;

  // Pass --resume to every worker: continue from the newest checkpoint they
  // all hold. Default false.
  bool resume = false;
};

struct WorkerLaunch {
  std::string name;  // "<cluster name>/<local rank>"
  int cluster_index = 0;
  std::string cluster_name;
  int local_rank = 0;
  int global_rank = 0;
  int metrics_port = 0;  // 0 = metrics off
};

struct LaunchPlan {
  std::vector<ProcessSpec> processes;  // one per worker, in global rank order
  std::vector<WorkerLaunch> workers;   // parallel to `processes`
  std::vector<int> store_ports;        // per cluster
  std::vector<int> wan_ports;          // per cluster (its gateway's WAN port)
};

// Builds the plan. Fails if a port range would exceed 65535, if metrics ports
// would collide with store/gateway ports, if free ports cannot be picked, or
// if gateway_tls_dirs is non-empty without one entry per cluster.
StatusOr<LaunchPlan> BuildLaunchPlan(const spec::StellaJob& job, const LaunchPlanOptions& options);

// Picks `count` distinct free TCP ports on 127.0.0.1 by binding port 0 and
// reading back what the kernel chose. The sockets are closed before this
// returns, so another process could take a port before a worker binds it;
// the kernel hands out ephemeral ports round-robin, which makes that race
// unlikely on a development machine, and a lost race fails the run loudly
// (the worker cannot bind) rather than silently.
StatusOr<std::vector<int>> PickFreeLoopbackPorts(int count);

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_LAUNCH_PLAN_H_
