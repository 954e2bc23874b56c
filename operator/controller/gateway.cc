#include "operator/controller/gateway.h"

#include <algorithm>
#include <functional>

namespace stella::op {
namespace {

using json = nlohmann::json;

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
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
  if (node.value("/spec/unschedulable"_json_pointer, false)) return false;
  const json conds = node.value("/status/conditions"_json_pointer, json::array());
  for (const auto& c : conds) {
    if (Str(c, "type") == "Ready") return Str(c, "status") == "True";
  }
  return false;
}

std::string NodeAddress(const json& node) {
  const json addrs = node.value("/status/addresses"_json_pointer, json::array());
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
      const json ingress = service->value("/status/loadBalancer/ingress"_json_pointer, json::array());
      for (const auto& in : ingress) {
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
      for (const auto& p : service->value("/spec/ports"_json_pointer, json::array())) {
        if (p.contains("nodePort") && p["nodePort"].is_number_integer()) node_port = p["nodePort"].get<int>();
      }
      std::vector<const json*> ready;
      for (const auto& n : nodes) {
        if (NodeReady(n) && !NodeAddress(n).empty()) ready.push_back(&n);
      }
      std::sort(ready.begin(), ready.end(), [](const json* a, const json* b) {
        return a->value("/metadata/name"_json_pointer, "") < b->value("/metadata/name"_json_pointer, "");
      });
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
        r.waiting = "cluster " + cluster.name + " has no Ready node matching the nodeSelector for a host-network gateway";
        return r;
      }
      std::sort(fit.begin(), fit.end(), [](const json* a, const json* b) {
        return a->value("/metadata/name"_json_pointer, "") < b->value("/metadata/name"_json_pointer, "");
      });
      const json& pick = *fit[std::hash<std::string>{}(job_uid) % fit.size()];
      r.node = pick.value("/metadata/name"_json_pointer, "");
      r.address = NodeAddress(pick) + ":" + port;
      return r;
    }
  }
  return r;
}

}  // namespace stella::op
