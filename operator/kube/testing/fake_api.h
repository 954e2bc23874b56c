// FakeApi: an in-memory kube::Api for tests (no API server, no threads).
//
// Behaves like an API server where the reconciler can tell:
//  - Create stores the object with a fresh metadata.resourceVersion (and uid,
//    namespace, creationTimestamp); an existing name is 409 AlreadyExists.
//  - Get/Update/Patch/Delete of a missing object are 404 NotFound.
//  - Update and merge Patch carrying metadata.resourceVersion must match the
//    stored one, else 409 Conflict; PUT .../status changes only status, a PUT
//    of the object itself keeps the stored status (the status subresource).
//  - Delete honours preconditions.uid (409 on mismatch); an object with
//    finalizers only gets metadata.deletionTimestamp, and goes once an update
//    or patch empties its finalizers.
//  - List filters by namespace and an equality label selector ("a=b,c=d").
//  - Watch streams every change after the given resourceVersion (ADDED,
//    MODIFIED, DELETED; no bookmarks) until `stop`, the watch's timeout, or an
//    injected failure, so informers run on it unchanged.
//  - Fail() makes the next N matching requests answer a given HTTP code (or
//    fail in transport), e.g. a 403 on pod creation.
//  - Every request is recorded ("POST /api/v1/namespaces/ns/pods") for
//    assertions.
// Only merge patches are supported (others are InvalidArgument). Paths are
// those ResourcePath builds.
//
// Thread safety: all methods are thread-safe (one mutex).
#ifndef STELLA_OPERATOR_KUBE_TESTING_FAKE_API_H_
#define STELLA_OPERATOR_KUBE_TESTING_FAKE_API_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/api.h"
#include "src/base/mutex.h"

namespace stella::kube::testing {

// One injected failure: requests whose verb matches (GET, POST, PUT, PATCH,
// DELETE, LIST, WATCH; "" = any) and whose path contains `path_contains` answer
// `code` with a Status body (reason/message), or fail in transport when
// `transport_error` is set. Used up after `times` matches.
struct Failure {
  std::string verb;
  std::string path_contains;
  int code = 500;
  std::string reason = "InternalError";
  std::string message = "injected failure";
  std::optional<Status> transport_error;
  int times = 1;
};

class FakeApi final : public Api {
 public:
  FakeApi() = default;

  StatusOr<Response> Get(const std::string& path) override;
  StatusOr<Response> Create(const std::string& collection_path, const nlohmann::json& obj) override;
  StatusOr<Response> Update(const std::string& path, const nlohmann::json& obj) override;
  StatusOr<Response> Patch(const std::string& path, const nlohmann::json& patch, const PatchType& type) override;
  StatusOr<Response> Delete(const std::string& path, const nlohmann::json* options = nullptr) override;
  StatusOr<ListResult> List(const std::string& collection_path, const std::string& label_selector = "",
                            int page_size = 500) override;
  StatusOr<WatchEnd> Watch(const std::string& collection_path, const WatchOptions& options,
                           const std::function<void(const WatchEvent&)>& on_event,
                           const std::atomic<bool>& stop) override;

  // Test controls.
  void Fail(Failure f);
  // A canned answer for GETs of exactly `path` (e.g. a pod proxy's /metrics).
  void SetRaw(const std::string& path, Response r);
  // Stores (or replaces) an object directly at `collection_path`, as another
  // actor would; returns it with its new resourceVersion.
  nlohmann::json Put(const std::string& collection_path, nlohmann::json obj);
  // The stored object at `path`, if any.
  std::optional<nlohmann::json> Object(const std::string& path) const;
  // Every object in the collection (namespace "" = all), unfiltered.
  std::vector<nlohmann::json> Objects(const std::string& collection_path) const;
  // "VERB path" per request, in order (LIST for List).
  std::vector<std::string> Requests() const;
  // How many recorded requests start with `prefix` (e.g. "POST /api/v1/namespaces/ns/pods").
  int Count(const std::string& prefix) const;
  void ClearRequests();

 private:
  struct Key {
    std::string group_version, ns, plural, name, subresource;
  };
  static std::optional<Key> ParsePath(const std::string& path);
  static std::string StoreKey(const Key& k);
  // One change of the store, for watches.
  struct Change {
    int64_t version;
    EventType type;
    std::string group_version, plural;
    nlohmann::json object;
  };
  std::optional<Response> Injected(const std::string& verb, const std::string& path, Status* transport) REQUIRES(mu_);
  nlohmann::json StoreLocked(const Key& k, nlohmann::json obj) REQUIRES(mu_);
  void EraseLocked(std::map<std::string, nlohmann::json>::iterator it, const Key& k) REQUIRES(mu_);
  std::string NextVersionLocked() REQUIRES(mu_) { return std::to_string(++version_); }

  mutable Mutex mu_;
  std::map<std::string, nlohmann::json> objects_ GUARDED_BY(mu_);  // by StoreKey
  std::map<std::string, Response> raw_ GUARDED_BY(mu_);            // canned GETs by path
  std::vector<Failure> failures_ GUARDED_BY(mu_);
  std::vector<std::string> requests_ GUARDED_BY(mu_);
  std::vector<Change> changes_ GUARDED_BY(mu_);  // every change, oldest first
  CondVar changed_;                              // a change was appended
  int64_t version_ GUARDED_BY(mu_) = 100;
  int64_t uids_ GUARDED_BY(mu_) = 0;
};

// A Kubernetes Status answer: {"kind":"Status","code":...,"reason":...}.
Response StatusResponse(int code, const std::string& reason, const std::string& message);

// True when every "k=v" (or "k==v") term of `selector` holds in obj's labels.
bool MatchesSelector(const nlohmann::json& obj, const std::string& selector);

}  // namespace stella::kube::testing

#endif  // STELLA_OPERATOR_KUBE_TESTING_FAKE_API_H_
