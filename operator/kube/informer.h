// Informer: a list+watch cache of one resource (optionally label-selected) on
// one cluster, following the watch contract of docs/operator.md:
//
//  - LIST (paginated), then WATCH from the list's resourceVersion with
//    bookmarks; on a normal close resume from the last resourceVersion seen;
//  - on 410 Gone re-LIST and reconcile the cache with it: objects that
//    vanished get a synthesized DELETED (with their last known state), new
//    ones ADDED, changed ones (different resourceVersion) MODIFIED;
//  - on errors back off 0.8 s doubling to 30 s, jittered, then retry the
//    watch from the same version (a 410 then leads to the re-LIST);
//  - resourceVersions are compared only for equality.
//
// Handlers run on the informer's thread, in event order, after the cache was
// updated (a handler's Get sees the new state). Keep them short: enqueue a key.
//
// Thread safety: Get, List, HasSynced, WaitForSync and Healthy are
// thread-safe. AddHandler must be called before Start. Start and Stop are
// called from one owning thread; Stop joins the thread and is idempotent;
// the destructor stops.
#ifndef STELLA_OPERATOR_KUBE_INFORMER_H_
#define STELLA_OPERATOR_KUBE_INFORMER_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/client.h"
#include "src/base/mutex.h"

namespace stella::kube {

struct InformerOptions {
  // Error backoff: first delay, doubling up to the cap, each multiplied by a
  // random factor in [1, 1 + jitter). Defaults 0.8 s, 30 s, 0.5.
  std::chrono::milliseconds backoff_initial{800};
  std::chrono::milliseconds backoff_max{30000};
  double jitter = 0.5;
  // Server-side timeout of each watch; each watch picks a value in
  // [watch_timeout, 2 * watch_timeout) so that many informers do not
  // reconnect in lockstep. Default 5 min.
  std::chrono::seconds watch_timeout{300};
  int page_size = 500;
  // Applied to every object before it is cached and handed to handlers (as
  // client-go's SetTransform): callers drop what they never read, e.g.
  // managedFields, so thousands of cached objects stay small. Default none.
  std::function<void(nlohmann::json* obj)> transform;
};

class Informer {
 public:
  // `client` must outlive the informer (it is shared by all components of the
  // cluster). collection_path e.g. ResourcePath("stella.dev/v1alpha1",
  // "stellajobs") for all namespaces.
  Informer(Api* client, std::string collection_path, std::string label_selector = "", InformerOptions options = {});
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Called with kAdded, kModified or kDeleted and the object (for kDeleted its
  // last known state). Before Start only.
  void AddHandler(std::function<void(EventType, const nlohmann::json& obj)> handler);

  void Start();
  void Stop();

  bool HasSynced() const;  // the first LIST completed and its ADDED events were handled
  bool WaitForSync(std::chrono::milliseconds timeout) const;

  // Cached object by namespace ("" for cluster-scoped) and name.
  std::optional<nlohmann::json> Get(const std::string& ns, const std::string& name) const;
  // Cached objects whose labels match every "key=value" of the selector
  // ("" = all), ordered by namespace/name.
  std::vector<nlohmann::json> List(const std::string& label_selector_equality = "") const;

  // False while LIST or WATCH are failing (cluster connectivity), true once a
  // LIST succeeded or a WATCH was accepted again. False before Start.
  bool Healthy() const;

  // Times the cache was (re)built from a LIST: 1 after the first sync; more
  // after 410 Gone. For tests and metrics.
  int ListCount() const;

  // Why LIST or WATCH last failed (ok if the last attempt succeeded): for logs
  // and the cluster's connectivity condition.
  Status LastError() const;

  const std::string& collection_path() const { return collection_path_; }

 private:
  void Run();
  // Rebuilds the cache from a LIST and dispatches the difference. Returns the
  // list's resourceVersion.
  StatusOr<std::string> Relist();
  void ApplyWatchEvent(const WatchEvent& ev);
  void Dispatch(EventType type, const nlohmann::json& obj);
  // Sleeps the current backoff (interruptible by Stop) and grows it.
  void Backoff(int* failures);
  void SetHealthy(bool healthy, const Status& why = Status::Ok());

  Api* const client_;  // outlives this (constructor contract)
  const std::string collection_path_;
  const std::string label_selector_;
  const InformerOptions options_;
  std::vector<std::function<void(EventType, const nlohmann::json&)>> handlers_;  // fixed after Start

  mutable Mutex mu_;
  mutable CondVar cv_;
  std::map<std::string, nlohmann::json> cache_ GUARDED_BY(mu_);  // key "ns/name" or "name"
  bool synced_ GUARDED_BY(mu_) = false;
  int list_count_ GUARDED_BY(mu_) = 0;
  Status last_error_ GUARDED_BY(mu_);
  std::mt19937 rng_;  // informer thread only (jitter)
  std::atomic<bool> healthy_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;  // "kube-informer"
};

// "ns/name", or "name" for cluster-scoped objects: the cache and work-queue key.
std::string ObjectKey(const nlohmann::json& obj);
// Whether obj's labels match every "k=v" of `selector` ("" matches all).
bool LabelsMatch(const nlohmann::json& obj, const std::string& selector);

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_INFORMER_H_
