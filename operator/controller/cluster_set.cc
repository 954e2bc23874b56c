#include "operator/controller/cluster_set.h"

#include "operator/controller/names.h"

namespace stella::op {
namespace {

using json = nlohmann::json;

// The caches hold thousands of children: keep only what reconciles read
// (measured: 500 jobs x 8 pods took 877 MiB with whole objects).
json Pick(const json& from, std::initializer_list<const char*> keys) {
  json out = json::object();
  if (!from.is_object()) return out;
  for (const char* k : keys) {
    auto it = from.find(k);
    if (it != from.end()) out[k] = *it;
  }
  return out;
}

json SlimMeta(const json& obj) {
  json meta = Pick(obj.value("metadata", json::object()),
                   {"name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp"});
  const json ann = obj.value("/metadata/annotations"_json_pointer, json::object());
  if (ann.contains(kAnnotationAttempt)) meta["annotations"] = {{kAnnotationAttempt, ann[kAnnotationAttempt]}};
  return meta;
}

void SlimPod(json* pod) {
  const json status = pod->value("status", json::object());
  json slim_status = Pick(status, {"phase", "reason", "message", "podIP", "hostIP"});
  json conds = json::array();
  for (const auto& c : status.value("conditions", json::array())) {
    if (c.value("type", "") == "Ready") conds.push_back(Pick(c, {"type", "status"}));
  }
  slim_status["conditions"] = conds;
  json containers = json::array();
  for (const auto& cs : status.value("containerStatuses", json::array())) {
    json state = json::object();
    if (cs.contains("state") && cs["state"].contains("terminated")) {
      state["terminated"] = Pick(cs["state"]["terminated"], {"exitCode", "reason", "message"});
    }
    containers.push_back({{"name", cs.value("name", "")}, {"state", state}});
  }
  slim_status["containerStatuses"] = containers;
  *pod = {{"metadata", SlimMeta(*pod)},
          {"spec", Pick(pod->value("spec", json::object()), {"nodeName"})},
          {"status", slim_status}};
}

void SlimService(json* svc) {
  *svc = {{"metadata", SlimMeta(*svc)},
          {"spec", Pick(svc->value("spec", json::object()), {"type", "ports"})},
          {"status", Pick(svc->value("status", json::object()), {"loadBalancer"})}};
}

void SlimNode(json* node) {
  const json status = node->value("status", json::object());
  json conds = json::array();
  for (const auto& c : status.value("conditions", json::array())) {
    if (c.value("type", "") == "Ready") conds.push_back(Pick(c, {"type", "status"}));
  }
  *node = {{"metadata", Pick(node->value("metadata", json::object()), {"name", "uid", "resourceVersion", "labels"})},
           {"spec", Pick(node->value("spec", json::object()), {"unschedulable"})},
           {"status", {{"addresses", status.value("addresses", json::array())}, {"conditions", conds}}}};
}

kube::InformerOptions WithTransform(void (*fn)(json*)) {
  kube::InformerOptions o;
  o.transform = fn;
  return o;
}

}  // namespace

Member::Member(std::string id, std::unique_ptr<kube::Client> owned, kube::Api* client, const std::string& origin)
    : id_(std::move(id)), owned_(std::move(owned)), client_(owned_ ? owned_.get() : client) {
  const std::string selector = OriginSelector(origin);
  pods_ =
      std::make_unique<kube::Informer>(client_, kube::ResourcePath("v1", "pods", ""), selector, WithTransform(SlimPod));
  services_ = std::make_unique<kube::Informer>(client_, kube::ResourcePath("v1", "services", ""), selector,
                                               WithTransform(SlimService));
  nodes_ =
      std::make_unique<kube::Informer>(client_, kube::ResourcePath("v1", "nodes", ""), "", WithTransform(SlimNode));
}

Member::~Member() { Stop(); }

void Member::Start() {
  pods_->Start();
  services_->Start();
  nodes_->Start();
}

void Member::Stop() {
  pods_->Stop();
  services_->Stop();
  nodes_->Stop();
}

bool Member::Synced() const { return pods_->HasSynced() && services_->HasSynced() && nodes_->HasSynced(); }

bool Member::Healthy() const { return pods_->Healthy() && services_->Healthy() && nodes_->Healthy(); }

std::string Member::LastError() const {
  for (const kube::Informer* inf : {pods_.get(), services_.get(), nodes_.get()}) {
    Status e = inf->LastError();
    if (!e.ok()) return e.message();
  }
  return "";
}

ClusterSet::ClusterSet(kube::Api* hub, std::string origin, Logger* log, std::function<void(const json&)> on_child_event,
                       std::function<void(const std::string&, const std::string&, int)> on_request)
    : hub_client_(hub),
      origin_(std::move(origin)),
      log_(log),
      on_child_event_(std::move(on_child_event)),
      on_request_(std::move(on_request)) {
  hub_ = std::make_unique<Member>("hub", nullptr, hub_client_, origin_);
  auto forward = [this](kube::EventType, const json& obj) { on_child_event_(obj); };
  hub_->pods().AddHandler(forward);
  hub_->services().AddHandler(forward);
}

void ClusterSet::Start() { hub_->Start(); }

ClusterSet::~ClusterSet() { Stop(); }

void ClusterSet::Stop() {
  MutexLock lock(&mu_);
  if (hub_) hub_->Stop();
  for (auto& [id, m] : members_) m->Stop();
  for (auto& m : retired_) m->Stop();
}

StatusOr<std::string> ClusterSet::ReadKubeconfig(const std::string& ns, const std::string& name,
                                                 const std::string& key) {
  const std::string where = "Secret " + ns + "/" + name;
  auto resp =
      kube::CheckResponse(hub_client_->Get(kube::ResourcePath("v1", "secrets", ns, name)), "reading " + where, {404});
  if (!resp.ok()) return resp.status();
  if (resp->code == 404) return NotFoundError(where + " not found (spec.clusters[].kubeconfigSecret)");
  const json data = resp->body.value("data", json::object());
  if (!data.contains(key) || !data[key].is_string()) {
    return InvalidArgumentError(where + " has no key \"" + key + "\" (spec.clusters[].kubeconfigSecret.key)");
  }
  auto text = kube::DecodeBase64(data[key].get<std::string>());
  if (!text.ok()) return text.status().WithContext(where + " key \"" + key + "\"");
  return text;
}

StatusOr<std::unique_ptr<Member>> ClusterSet::Connect(const std::string& id, const std::string& kubeconfig) {
  auto config = kube::ParseInlineKubeconfig(kubeconfig);
  if (!config.ok()) return config.status().WithContext("kubeconfig of member " + id);
  config->name = id;
  kube::ClientOptions co;
  co.on_request = [this, id](const std::string& verb, int code) { on_request_(id, verb, code); };
  auto client = kube::Client::Create(*config, co);
  if (!client.ok()) return client.status().WithContext("client for member " + id);
  auto m = std::make_unique<Member>(id, std::move(client).value(), nullptr, origin_);
  m->kubeconfig_digest = kubeconfig;
  m->server = config->server;
  auto forward = [this](kube::EventType, const json& obj) { on_child_event_(obj); };
  m->pods().AddHandler(forward);
  m->services().AddHandler(forward);
  m->Start();
  return m;
}

StatusOr<Member*> ClusterSet::ForCluster(const std::string& job_namespace,
                                         const std::optional<spec::SecretKeyRef>& ref) {
  if (!ref) return hub_.get();
  const std::string id = job_namespace + "/" + ref->name + "/" + ref->key;
  {
    MutexLock lock(&mu_);
    auto it = members_.find(id);
    if (it != members_.end()) return it->second.get();
  }
  STELLA_ASSIGN_OR_RETURN(std::string kubeconfig, ReadKubeconfig(job_namespace, ref->name, ref->key));
  STELLA_ASSIGN_OR_RETURN(std::unique_ptr<Member> m, Connect(id, kubeconfig));
  MutexLock lock(&mu_);
  auto [it, inserted] = members_.emplace(id, std::move(m));
  if (!inserted)
    retired_.push_back(std::move(m));  // another thread connected first
  else
    log_->Info("member cluster connected: " + id + " server=" + it->second->server);
  return it->second.get();
}

void ClusterSet::Refresh() {
  std::vector<std::string> ids;
  {
    MutexLock lock(&mu_);
    for (auto& [id, m] : members_) ids.push_back(id);
  }
  for (const auto& id : ids) {
    // id is ns/name/key; names and keys contain no '/'.
    size_t a = id.find('/'), b = id.find('/', a + 1);
    auto text = ReadKubeconfig(id.substr(0, a), id.substr(a + 1, b - a - 1), id.substr(b + 1));
    if (!text.ok()) continue;  // keep the old connection; reconciles report the error
    {
      MutexLock lock(&mu_);
      if (members_[id]->kubeconfig_digest == *text) continue;
    }
    auto m = Connect(id, *text);
    if (!m.ok()) {
      log_->Warn("member " + id + ": new kubeconfig unusable, keeping the old one: " + m.status().ToString());
      continue;
    }
    MutexLock lock(&mu_);
    members_[id]->Stop();
    retired_.push_back(std::move(members_[id]));  // reconciles may still hold the pointer
    members_[id] = std::move(m).value();
    log_->Info("member cluster " + id + ": kubeconfig changed, reconnected");
  }
}

std::vector<Member*> ClusterSet::All() {
  MutexLock lock(&mu_);
  std::vector<Member*> out = {hub_.get()};
  for (auto& [id, m] : members_) out.push_back(m.get());
  return out;
}

}  // namespace stella::op
