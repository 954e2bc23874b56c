// What the reconcile phases need of a member cluster (its API and its caches
// of the operator's children), as interfaces: ClusterSet/Member implement them
// over real connections and informers; tests implement them over
// kube::testing::FakeApi.
//
// Thread safety: implementations must be safe to call from every reconcile
// worker at once.
#ifndef STELLA_OPERATOR_CONTROLLER_RECONCILE_MEMBERS_H_
#define STELLA_OPERATOR_CONTROLLER_RECONCILE_MEMBERS_H_

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/api.h"
#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::op {

class MemberView {
 public:
  virtual ~MemberView() = default;
  virtual const std::string& id() const = 0;  // "hub" or "ns/secret/key"
  virtual kube::Api* api() const = 0;         // writes (and uncached reads)
  // True once every cache listed at least once and the watches are healthy.
  virtual bool Synced() const = 0;
  // False while any watch is failing.
  virtual bool Healthy() const = 0;
  // The last connection or watch error, "" if none.
  virtual std::string LastError() const = 0;
  // The cached children (pods, services) matching an equality label selector,
  // and every Node.
  virtual std::vector<nlohmann::json> ListPods(const std::string& selector) const = 0;
  virtual std::vector<nlohmann::json> ListServices(const std::string& selector) const = 0;
  virtual std::vector<nlohmann::json> ListNodes() const = 0;
};

class MemberDirectory {
 public:
  virtual ~MemberDirectory() = default;
  // The member for a job's cluster: the hub when `ref` is absent, else the
  // member behind Secret job_namespace/ref.name. Errors name the Secret.
  virtual StatusOr<MemberView*> Lookup(const std::string& job_namespace,
                                       const std::optional<spec::SecretKeyRef>& ref) = 0;
  // The hub as a member (children there get an ownerReference to the job).
  virtual MemberView* HubMember() = 0;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_RECONCILE_MEMBERS_H_
