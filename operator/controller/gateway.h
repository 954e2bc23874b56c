// Where the other clusters reach one cluster's WAN gateway. The operator
// decides every address before it creates any worker (each gateway is started
// with all the others' addresses) and records it in the job's status, so the
// decision survives operator restarts.
//
//   LoadBalancer  the gateway Service's first ingress IP (or hostname) : port
//   NodePort      a Ready node's ExternalIP (else InternalIP) : nodePort
//   HostNetwork   the node the gateway pod is pinned to : port; the node is
//                 picked from the Ready nodes matching the cluster's
//                 nodeSelector, spread over jobs by the job's uid
#ifndef STELLA_OPERATOR_CONTROLLER_GATEWAY_H_
#define STELLA_OPERATOR_CONTROLLER_GATEWAY_H_

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/spec/stella_job.h"

namespace stella::op {

struct GatewayResolution {
  std::string address;  // "host:port"; empty while not known yet
  std::string node;     // HostNetwork: the node the gateway pod must run on
  std::string waiting;  // why the address is not known yet (for status.message)
};

// `service` is the gateway Service as the member reports it (nullptr if not
// created or HostNetwork); `nodes` the member's Node objects.
GatewayResolution ResolveGateway(const spec::ClusterSpec& cluster, const std::string& job_uid,
                                 const nlohmann::json* service, const std::vector<nlohmann::json>& nodes);

// The address a node is reached at from outside its cluster, "" if none.
std::string NodeAddress(const nlohmann::json& node);
bool NodeReady(const nlohmann::json& node);

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_GATEWAY_H_
