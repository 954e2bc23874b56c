// ClusterSet: the operator's connections to the hub and to member clusters.
//
// A member is named by the Secret holding its kubeconfig (namespace/name/key);
// jobs that name the same Secret share one connection and one set of caches:
// informers on the Pods and Services this operator made there (selected by
// the origin label) and on the member's Nodes (for gateway addresses). The
// hub itself is a member too (clusters without kubeconfigSecret).
//
// Thread safety: all methods are thread-safe. Members live until Stop().
#ifndef STELLA_OPERATOR_CONTROLLER_CLUSTER_SET_H_
#define STELLA_OPERATOR_CONTROLLER_CLUSTER_SET_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/controller/log.h"
#include "operator/controller/reconcile/members.h"
#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/informer.h"
#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/base/thread_annotations.h"
#include "src/spec/stella_job.h"

namespace stella::op {

class Member final : public MemberView {
 public:
  // `owned` (a member's own connection) or else `client` (the hub's, which
  // outlives the member) serves the caches and the writes.
  Member(std::string id, std::unique_ptr<kube::Client> owned, kube::Api* client, const std::string& origin);
  ~Member() override;
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  const std::string& id() const override { return id_; }  // "hub" or "ns/secret/key"
  kube::Api* api() const override { return client_; }
  kube::Informer& pods() { return *pods_; }
  kube::Informer& services() { return *services_; }
  kube::Informer& nodes() { return *nodes_; }

  // True once every cache listed at least once and the watches are healthy.
  bool Synced() const override;
  // False while any watch is failing after having worked (or never worked).
  bool Healthy() const override;
  // Whether the member's API server answered (or failed) a first time; a
  // member that has never answered is unreachable only after this is true.
  std::string LastError() const override;

  // From the caches.
  std::vector<nlohmann::json> ListPods(const std::string& selector) const override { return pods_->List(selector); }
  std::vector<nlohmann::json> ListServices(const std::string& selector) const override {
    return services_->List(selector);
  }
  std::vector<nlohmann::json> ListNodes() const override { return nodes_->List(); }

  void Start();
  void Stop();

  // The kubeconfig text this member was built from (to notice rotation).
  std::string kubeconfig_digest;
  // Its API server's URL (for logs); "" for the hub.
  std::string server;

 private:
  std::string id_;
  std::unique_ptr<kube::Client> owned_;
  kube::Api* client_;
  std::unique_ptr<kube::Informer> pods_, services_, nodes_;
};

class ClusterSet final : public MemberDirectory {
 public:
  // `hub` outlives the set. `on_child_event` receives every pod/service event
  // from every member (to enqueue the owning job); `on_request` is each new
  // client's request hook labelled with the member's id.
  ClusterSet(kube::Api* hub, std::string origin, Logger* log, std::function<void(const nlohmann::json&)> on_child_event,
             std::function<void(const std::string& cluster, const std::string& verb, int code)> on_request);
  ~ClusterSet() override;

  // Starts the hub's caches (members start on first use).
  void Start();

  Member* Hub() { return hub_.get(); }

  // The member for a job's cluster: the hub when `ref` is absent, else the
  // member behind Secret job_namespace/ref.name key ref.key, connecting on
  // first use. Fails (kNotFound / kInvalidArgument / kUnavailable) with a
  // message naming the Secret when it is missing or holds no usable
  // kubeconfig.
  StatusOr<Member*> ForCluster(const std::string& job_namespace, const std::optional<spec::SecretKeyRef>& ref);

  // MemberDirectory, for the reconcile phases.
  StatusOr<MemberView*> Lookup(const std::string& job_namespace,
                               const std::optional<spec::SecretKeyRef>& ref) override {
    auto m = ForCluster(job_namespace, ref);
    if (!m.ok()) return m.status();
    return static_cast<MemberView*>(*m);
  }
  MemberView* HubMember() override { return hub_.get(); }

  // Re-reads every member's Secret and reconnects members whose kubeconfig
  // changed (credential rotation). Called by the periodic sweep.
  void Refresh();

  std::vector<Member*> All();
  void Stop();

 private:
  StatusOr<std::string> ReadKubeconfig(const std::string& ns, const std::string& name, const std::string& key);
  StatusOr<std::unique_ptr<Member>> Connect(const std::string& id, const std::string& kubeconfig);

  kube::Api* hub_client_;
  std::string origin_;
  Logger* log_;
  std::function<void(const nlohmann::json&)> on_child_event_;
  std::function<void(const std::string&, const std::string&, int)> on_request_;
  std::unique_ptr<Member> hub_;
  Mutex mu_;
  std::map<std::string, std::unique_ptr<Member>> members_ GUARDED_BY(mu_);  // by id
  std::vector<std::unique_ptr<Member>> retired_ GUARDED_BY(mu_);            // replaced members, stopped
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_CLUSTER_SET_H_
