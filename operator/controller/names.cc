#include "operator/controller/names.h"

namespace stella::op {

std::string JobKey(const std::string& ns, const std::string& name) { return ns + "/" + name; }

bool SplitJobKey(const std::string& key, std::string* ns, std::string* name) {
  size_t slash = key.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == key.size()) return false;
  *ns = key.substr(0, slash);
  *name = key.substr(slash + 1);
  return true;
}

std::string PodName(const std::string& job, const std::string& cluster, int rank) {
  return job + "-" + cluster + "-" + std::to_string(rank);
}
std::string HeadlessServiceName(const std::string& job, const std::string& cluster) { return job + "-" + cluster; }
std::string GatewayServiceName(const std::string& job, const std::string& cluster) {
  return job + "-" + cluster + "-gw";
}

std::string TlsSecretName(const std::string& job, const std::string& cluster) { return job + "-" + cluster + "-tls"; }

Status CheckChildNames(const spec::StellaJob& job) {
  for (size_t c = 0; c < job.spec.clusters.size(); ++c) {
    const auto& cl = job.spec.clusters[c];
    std::string longest = PodName(job.metadata.name, cl.name, cl.workers - 1);
    std::string gw = GatewayServiceName(job.metadata.name, cl.name);
    if (longest.size() < gw.size()) longest = gw;
    if (longest.size() > 63) {
      return InvalidArgumentError("spec.clusters[" + std::to_string(c) + "].name: child name \"" + longest +
                                  "\" (job name + cluster name) is " + std::to_string(longest.size()) +
                                  " characters, Kubernetes allows 63; shorten metadata.name or the cluster name");
    }
  }
  return Status::Ok();
}

std::string OriginSelector(const std::string& origin) {
  return std::string(kLabelManagedBy) + "=" + kManagedByValue + "," + kLabelOrigin + "=" + origin;
}

StatusOr<spec::StellaJob> JobFromApiObject(const nlohmann::json& obj) {
  if (!obj.is_object()) return InvalidArgumentError("StellaJob object is not a JSON object");
  nlohmann::json clean = nlohmann::json::object();
  for (const char* f : {"apiVersion", "kind", "spec"}) {
    if (obj.contains(f)) clean[f] = obj[f];
  }
  nlohmann::json meta = nlohmann::json::object();
  if (obj.contains("metadata") && obj["metadata"].is_object()) {
    const auto& m = obj["metadata"];
    for (const char* f : {"name", "namespace", "labels", "annotations", "generation", "uid", "resourceVersion"}) {
      if (m.contains(f)) meta[f] = m[f];
    }
  }
  clean["metadata"] = meta;
  return spec::ParseStellaJob(clean.dump());
}

std::string WorkerManifest(const spec::StellaJob& job) {
  spec::StellaJob copy = job;
  copy.status.reset();
  copy.metadata.generation.reset();
  copy.metadata.resource_version.clear();
  copy.metadata.uid.clear();
  copy.metadata.annotations.clear();
  return spec::ToYaml(copy);
}

}  // namespace stella::op
