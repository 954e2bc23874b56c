#include "operator/controller/children.h"

#include "operator/controller/names.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

const spec::ClusterSpec& ClusterAt(const ChildContext& ctx, int cluster) {
  return ctx.job->spec.clusters[static_cast<size_t>(cluster)];
}

json Meta(const ChildContext& ctx, int cluster, const std::string& name) {
  json meta = {{"name", name}, {"namespace", ctx.job->metadata.namespace_name}, {"labels", ChildLabels(ctx, cluster)}};
  if (ctx.hub) {
    // Hub children are garbage-collected with the job; member children rely
    // on the finalizer and the orphan sweep.
    meta["ownerReferences"] = json::array({{{"apiVersion", kGroupVersion},
                                            {"kind", spec::kKind},
                                            {"name", ctx.job->metadata.name},
                                            {"uid", ctx.job->metadata.uid},
                                            {"controller", true},
                                            {"blockOwnerDeletion", true}}});
  }
  return meta;
}

bool IsGpuResource(const std::string& name) {
  return name == "nvidia.com/gpu" || name.rfind("nvidia.com/mig-", 0) == 0;
}

std::string JoinCommas(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + v[i];
  return out;
}

}  // namespace

json ChildLabels(const ChildContext& ctx, int cluster) {
  const auto& job = *ctx.job;
  return {{kLabelManagedBy, kManagedByValue}, {kLabelOrigin, ctx.origin},
          {kLabelJobName, job.metadata.name}, {kLabelJobNamespace, job.metadata.namespace_name},
          {kLabelJobUid, job.metadata.uid},   {kLabelCluster, ClusterAt(ctx, cluster).name}};
}

json WorkerResources(const spec::ClusterSpec& cluster) {
  json limits = json::object(), requests = json::object();
  bool names_gpu = false;
  for (const auto& [k, v] : cluster.resources.limits) {
    limits[k] = v;
    names_gpu = names_gpu || IsGpuResource(k);
  }
  for (const auto& [k, v] : cluster.resources.requests) {
    requests[k] = v;
    names_gpu = names_gpu || IsGpuResource(k);
  }
  if (cluster.devices_per_worker > 0 && !names_gpu) {
    // Extended resources are requested through limits (requests default to them).
    limits["nvidia.com/gpu"] = std::to_string(cluster.devices_per_worker);
  }
  json out = json::object();
  if (!limits.empty()) out["limits"] = limits;
  if (!requests.empty()) out["requests"] = requests;
  return out;
}

json BuildWorkerPod(const ChildContext& ctx, int cluster, int rank) {
  const auto& job = *ctx.job;
  const auto& cl = ClusterAt(ctx, cluster);
  const std::string name = PodName(job.metadata.name, cl.name, rank);
  const std::string subdomain = HeadlessServiceName(job.metadata.name, cl.name);
  const bool host_network_gateway = rank == 0 && cl.gateway.type == spec::GatewayType::kHostNetwork;

  // The gateway binds its own entry; the others are dialled.
  std::vector<std::string> wan = ctx.gateway_addresses;
  if (static_cast<size_t>(cluster) < wan.size())
    wan[static_cast<size_t>(cluster)] = "0.0.0.0:" + std::to_string(cl.gateway.port);

  json args = {"--job",           "env:STELLA_JOB",
               "--cluster-index", std::to_string(cluster),
               "--local-rank",    std::to_string(rank),
               "--store-host",    PodName(job.metadata.name, cl.name, 0) + "." + subdomain,
               "--store-port",    std::to_string(kStorePort),
               "--bind-host",     "$(POD_IP)",
               "--metrics-port",  std::to_string(ctx.metrics_port)};
  if (job.spec.clusters.size() > 1) {
    args.push_back("--wan-addresses");
    args.push_back(JoinCommas(wan));
  }
  // A recreated worker (restart, suspend/resume, certificate rotation, a
  // deleted pod) continues from the job's latest complete checkpoint; with none
  // yet, --resume starts at step 0.
  if (!job.spec.checkpoint.path.empty()) args.push_back("--resume");
  const bool wan_tls = rank == 0 && job.spec.clusters.size() > 1;
  if (wan_tls) {
    args.push_back("--tls-dir");
    args.push_back(kTlsMountPath);
  }

  json ports = json::array(
      {{{"name", "store"}, {"containerPort", kStorePort}}, {{"name", "metrics"}, {"containerPort", ctx.metrics_port}}});
  if (rank == 0 && job.spec.clusters.size() > 1) ports.push_back({{"name", "wan"}, {"containerPort", cl.gateway.port}});

  json container = {
      {"name", "worker"},
      {"image", cl.image.empty() ? ctx.default_image : cl.image},
      {"command", {"stella-runtime"}},
      {"args", args},
      {"env",
       {{{"name", "STELLA_JOB"}, {"value", WorkerManifest(job)}},
        {{"name", "POD_IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}},
        {{"name", "POD_NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}}}},
      {"ports", ports},
      {"resources", WorkerResources(cl)},
      {"securityContext",
       {{"allowPrivilegeEscalation", false}, {"readOnlyRootFilesystem", true}, {"capabilities", {{"drop", {"ALL"}}}}}},
      {"volumeMounts", {{{"name", "tmp"}, {"mountPath", "/tmp"}}}},
  };
  if (wan_tls) {
    container["volumeMounts"].push_back({{"name", "tls"}, {"mountPath", kTlsMountPath}, {"readOnly", true}});
  }
  const spec::CheckpointSpec& ckpt = job.spec.checkpoint;
  if (!ckpt.path.empty()) {
    // The root filesystem is read-only: the checkpoint directory is a volume,
    // the user's claim (outlives pods) or an emptyDir (does not).
    container["volumeMounts"].push_back({{"name", "checkpoints"}, {"mountPath", ckpt.path}});
  }
  json pod_spec = {
      {"restartPolicy", "Never"},  // the operator restarts whole attempts
      {"hostname", name},
      {"subdomain", subdomain},
      {"enableServiceLinks", false},
      {"automountServiceAccountToken", false},  // workers never call the API
      {"securityContext",
       {{"runAsNonRoot", true},
        {"runAsUser", 65532},
        {"runAsGroup", 65532},
        {"fsGroup", 65532},
        {"seccompProfile", {{"type", "RuntimeDefault"}}}}},
      {"containers", {container}},
      {"volumes", {{{"name", "tmp"}, {"emptyDir", json::object()}}}},
  };
  if (wan_tls) {
    // 0440 + fsGroup: readable by the non-root worker, by nobody else.
    pod_spec["volumes"].push_back(
        {{"name", "tls"},
         {"secret", {{"secretName", TlsSecretName(job.metadata.name, cl.name)}, {"defaultMode", 0440}}}});
  }
  if (!ckpt.path.empty()) {
    pod_spec["volumes"].push_back(
        ckpt.claim_name.empty()
            ? json{{"name", "checkpoints"}, {"emptyDir", json::object()}}
            : json{{"name", "checkpoints"}, {"persistentVolumeClaim", {{"claimName", ckpt.claim_name}}}});
  }
  if (!cl.node_selector.empty()) pod_spec["nodeSelector"] = cl.node_selector;
  if (!cl.tolerations.empty()) {
    json tols = json::array();
    for (const auto& t : cl.tolerations) {
      json j = {{"operator", spec::ToString(t.op)}};
      if (!t.key.empty()) j["key"] = t.key;
      if (!t.value.empty()) j["value"] = t.value;
      if (t.effect != spec::TolerationEffect::kAll) j["effect"] = spec::ToString(t.effect);
      if (t.toleration_seconds) j["tolerationSeconds"] = *t.toleration_seconds;
      tols.push_back(j);
    }
    pod_spec["tolerations"] = tols;
  }
  if (host_network_gateway) {
    pod_spec["hostNetwork"] = true;
    pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet";
    if (static_cast<size_t>(cluster) < ctx.gateway_nodes.size() &&
        !ctx.gateway_nodes[static_cast<size_t>(cluster)].empty()) {
      // Its address was handed to the other clusters before it was created.
      pod_spec["nodeName"] = ctx.gateway_nodes[static_cast<size_t>(cluster)];
    }
  }
  json meta = Meta(ctx, cluster, name);
  meta["labels"][kLabelRank] = std::to_string(rank);
  meta["annotations"] = {{kAnnotationAttempt, std::to_string(ctx.attempt)}};
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", meta}, {"spec", pod_spec}};
}

json BuildTlsSecret(const ChildContext& ctx, int cluster, const std::string& ca_crt, const std::string& tls_crt,
                    const std::string& tls_key, const std::string& ca_id) {
  json meta = Meta(ctx, cluster, TlsSecretName(ctx.job->metadata.name, ClusterAt(ctx, cluster).name));
  meta["annotations"] = {{kAnnotationCa, ca_id}};
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"type", "kubernetes.io/tls"},
          {"metadata", meta},
          {"stringData", {{"ca.crt", ca_crt}, {"tls.crt", tls_crt}, {"tls.key", tls_key}}}};
}

json BuildHeadlessService(const ChildContext& ctx, int cluster) {
  const auto& cl = ClusterAt(ctx, cluster);
  json selector = ChildLabels(ctx, cluster);
  selector.erase(kLabelOrigin);
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", Meta(ctx, cluster, HeadlessServiceName(ctx.job->metadata.name, cl.name))},
          {"spec",
           {{"clusterIP", "None"},
            // Ranks must find the store before they pass readiness.
            {"publishNotReadyAddresses", true},
            {"selector", selector},
            {"ports", {{{"name", "store"}, {"port", kStorePort}, {"targetPort", kStorePort}}}}}}};
}

std::optional<json> BuildGatewayService(const ChildContext& ctx, int cluster) {
  const auto& cl = ClusterAt(ctx, cluster);
  if (cl.gateway.type == spec::GatewayType::kHostNetwork) return std::nullopt;
  json selector = ChildLabels(ctx, cluster);
  selector.erase(kLabelOrigin);
  selector[kLabelRank] = "0";
  return json{{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", Meta(ctx, cluster, GatewayServiceName(ctx.job->metadata.name, cl.name))},
              {"spec",
               {{"type", spec::ToString(cl.gateway.type)},
                {"publishNotReadyAddresses", true},
                {"selector", selector},
                {"ports", {{{"name", "wan"}, {"port", cl.gateway.port}, {"targetPort", cl.gateway.port}}}}}}};
}

}  // namespace stella::op
