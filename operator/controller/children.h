// The objects the operator creates for one StellaJob in one member cluster:
// one worker Pod per rank, a headless Service for the cluster's rendezvous
// (rank 0 runs the store; the others find it by DNS), and the gateway Service
// that exposes rank 0's WAN port to the other clusters.
//
// Pure functions of the job and the decisions already recorded in its status
// (gateway addresses, attempt), so a reconcile after a restart builds the very
// same objects.
#ifndef STELLA_OPERATOR_CONTROLLER_CHILDREN_H_
#define STELLA_OPERATOR_CONTROLLER_CHILDREN_H_

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/spec/stella_job.h"

namespace stella::op {

struct ChildContext {
  const spec::StellaJob* job = nullptr;
  std::string origin;         // this operator's origin label value
  std::string default_image;  // for clusters without spec.clusters[].image
  // "host:port" of every cluster's gateway as the others reach it.
  std::vector<std::string> gateway_addresses;
  // HostNetwork gateways: the node each cluster's gateway pod is pinned to
  // ("" = let the scheduler choose).
  std::vector<std::string> gateway_nodes;
  int attempt = 0;   // 0 for the first run, +1 per whole-job restart
  bool hub = false;  // the child lives in the hub: add an ownerReference
  int metrics_port = 9400;
};

// Labels every child of (job, cluster) carries.
nlohmann::json ChildLabels(const ChildContext& ctx, int cluster);

nlohmann::json BuildWorkerPod(const ChildContext& ctx, int cluster, int rank);
nlohmann::json BuildHeadlessService(const ChildContext& ctx, int cluster);
// The gateway's mutual-TLS Secret (type kubernetes.io/tls plus ca.crt).
nlohmann::json BuildTlsSecret(const ChildContext& ctx, int cluster, const std::string& ca_crt,
                              const std::string& tls_crt, const std::string& tls_key, const std::string& ca_id);
// Absent for HostNetwork gateways (the gateway pod binds the node's port).
std::optional<nlohmann::json> BuildGatewayService(const ChildContext& ctx, int cluster);

// The worker's resource requirements: the spec's, plus nvidia.com/gpu =
// devicesPerWorker when the cluster uses devices and names no GPU or MIG
// resource itself.
nlohmann::json WorkerResources(const spec::ClusterSpec& cluster);

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_CHILDREN_H_
