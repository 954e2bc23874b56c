#include "operator/controller/gateway.h"

#include <algorithm>
#include <functional>
#include <initializer_list>

#include "operator/controller/json_read.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

using json_read::ArrayAt;
using json_read::At;
using json_read::Str;

std::string NodeName(const json& node) {
  const json* v = At(node, {"metadata", "name"});
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

bool MatchesSelector(const json& node, const spec::StringMap& selector) {
  const json* labels = nullptr;
  if (node.contains("metadata") && node["metadata"].contains("labels")) labels = &node["metadata"]["labels"];
  for (const auto& [k, v] : selector) {
    if (!labels || !labels->contains(k) || !(*labels)[k].is_string() || (*labels)[k].get<std::string>() != v) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool NodeReady(const json& node) {
  const json* unschedulable = At(node, {"spec", "unschedulable"});
  if (unschedulable && unschedulable->is_boolean() && unschedulable->get<bool>()) return false;
  for (const auto& c : ArrayAt(node, {"status", "conditions"})) {
    if (Str(c, "type") == "Ready") return Str(c, "status") == "True";
  }
  return false;
}

std::string NodeAddress(const json& node) {
  const json& addrs = ArrayAt(node, {"status", "addresses"});
  for (const char* type : {"ExternalIP", "InternalIP"}) {
    for (const auto& a : addrs) {
      if (Str(a, "type") == type && !Str(a, "address").empty()) return Str(a, "address");
    }
  }
  return "";
}

GatewayResolution ResolveGateway(const spec::ClusterSpec& cluster, const std::string& job_uid, const json* service,
                                 const std::vector<json>& nodes) {
  GatewayResolution r;
  const std::string port = std::to_string(cluster.gateway.port);
  switch (cluster.gateway.type) {
    case spec::GatewayType::kLoadBalancer: {
      if (!service) {
        r.waiting = "gateway Service of cluster " + cluster.name + " not created yet";
        return r;
      }
      for (const auto& in : ArrayAt(*service, {"status", "loadBalancer", "ingress"})) {
        std::string host = Str(in, "ip").empty() ? Str(in, "hostname") : Str(in, "ip");
        if (!host.empty()) {
          r.address = host + ":" + port;
          return r;
        }
      }
      r.waiting = "LoadBalancer of cluster " + cluster.name + " has no ingress address yet";
      return r;
    }
    case spec::GatewayType::kNodePort: {
      if (!service) {
        r.waiting = "gateway Service of cluster " + cluster.name + " not created yet";
        return r;
      }
      int node_port = 0;
      for (const auto& p : ArrayAt(*service, {"spec", "ports"})) {
        const json* np = At(p, {"nodePort"});
        // A port outside 1..65535 is no port (and would not fit an int).
        if (np && np->is_number_integer() && np->get<int64_t>() >= 1 && np->get<int64_t>() <= 65535) {
          node_port = static_cast<int>(np->get<int64_t>());
        }
      }
      std::vector<const json*> ready;
      for (const auto& n : nodes) {
        if (NodeReady(n) && !NodeAddress(n).empty()) ready.push_back(&n);
      }
      std::sort(ready.begin(), ready.end(), [](const json* a, const json* b) { return NodeName(*a) < NodeName(*b); });
      if (node_port == 0 || ready.empty()) {
        r.waiting = node_port == 0 ? "NodePort of cluster " + cluster.name + " not allocated yet"
                                   : "cluster " + cluster.name + " has no Ready node with an address";
        return r;
      }
      r.address = NodeAddress(*ready.front()) + ":" + std::to_string(node_port);
      return r;
    }
    case spec::GatewayType::kHostNetwork: {
      std::vector<const json*> fit;
      for (const auto& n : nodes) {
        if (NodeReady(n) && !NodeAddress(n).empty() && MatchesSelector(n, cluster.node_selector)) fit.push_back(&n);
      }
      if (fit.empty()) {
        r.waiting =
            "cluster " + cluster.name + " has no Ready node matching the nodeSelector for a host-network gateway";
        return r;
      }
      std::sort(fit.begin(), fit.end(), [](const json* a, const json* b) { return NodeName(*a) < NodeName(*b); });
      const json& pick = *fit[std::hash<std::string>{}(job_uid) % fit.size()];
      r.node = NodeName(pick);
      r.address = NodeAddress(pick) + ":" + port;
      return r;
    }
  }
  return r;
}

}  // namespace stella::op
