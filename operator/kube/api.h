// Api: the Kubernetes REST verbs the operator uses (the reconciler's reads
// and writes, the informers' list and watch), as a small interface.
// kube::Client implements it against a real API server;
// kube::testing::FakeApi (operator/kube/testing/) keeps objects in memory, so
// the reconcile phases and the controller are tested without a control plane.
//
// Same contract as Client: every answer of the server is a Response with its
// HTTP code (404, 409, 422 are answers); only transport failures are an error
// Status. CheckResponse turns both into one Status for callers.
//
// Thread safety: implementations must be safe to call from several threads.
#ifndef STELLA_OPERATOR_KUBE_API_H_
#define STELLA_OPERATOR_KUBE_API_H_

#include <atomic>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/base/status.h"

namespace stella::kube {

// Any HTTP answer of the server. `body` is the parsed JSON, a JSON string when
// the body was not JSON, or null when empty.
struct Response {
  int code = 0;
  nlohmann::json body;
};

enum class PatchKind { kMerge, kJson, kStrategicMerge, kApply };

// How a PATCH body is interpreted. Apply (server-side apply) needs a field
// manager; force takes ownership of conflicting fields.
struct PatchType {
  PatchKind kind = PatchKind::kMerge;
  std::string field_manager;
  bool force = false;

  static PatchType Merge() { return {PatchKind::kMerge, "", false}; }
  static PatchType Json() { return {PatchKind::kJson, "", false}; }
  static PatchType StrategicMerge() { return {PatchKind::kStrategicMerge, "", false}; }
  static PatchType Apply(std::string field_manager, bool force = false) {
    return {PatchKind::kApply, std::move(field_manager), force};
  }
};

struct ListResult {
  // Every item of every page, with kind and apiVersion filled in (the API
  // server omits them from list items).
  std::vector<nlohmann::json> items;
  // The list's resourceVersion: start a watch from here to miss nothing.
  std::string resource_version;
};

// "/api/v1/namespaces/ns/configmaps/name/status" and friends. group_version is
// "v1" (core, under /api) or "group/version" (under /apis). namespace_ "" =
// cluster-scoped or all namespaces; name "" = the collection.
std::string ResourcePath(const std::string& group_version, const std::string& plural,
                         const std::string& namespace_ = "", const std::string& name = "",
                         const std::string& subresource = "");

// Percent-encodes a query parameter value.
std::string QueryEscape(const std::string& value);

bool IsNotFound(const Response& r);       // 404
bool IsConflict(const Response& r);       // 409 other than AlreadyExists (stale resourceVersion)
bool IsAlreadyExists(const Response& r);  // 409 reason AlreadyExists
bool IsGone(const Response& r);           // 410
bool IsSuccess(const Response& r);        // 2xx
// The server's Status.message, or the body text when it is not a Status.
std::string ApiMessage(const Response& r);
// The server's Status.reason ("NotFound", "Conflict", "Invalid", ...) or ""
// (also when the body is not a Status or the reason is not a string).
std::string ApiReason(const Response& r);
// A non-2xx Response as an error Status: "context: HTTP 422 Invalid: <message>",
// with a code that says whether retrying may help (409/429/5xx -> Unavailable,
// 404 -> NotFound, 400/422 -> InvalidArgument, 401/403 -> FailedPrecondition).
// Ok for 2xx.
Status ResponseStatus(const Response& r, const std::string& context);

// The object's metadata.resourceVersion / namespace / name ("" when absent or
// not a string).
std::string ResourceVersionOf(const nlohmann::json& obj);
std::string NamespaceOf(const nlohmann::json& obj);
std::string NameOf(const nlohmann::json& obj);

enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };
const char* EventTypeName(EventType t);  // "ADDED", ...

struct WatchEvent {
  EventType type = EventType::kAdded;
  // The object; for BOOKMARK only metadata.resourceVersion (and annotations)
  // are meaningful; ERROR events never reach the callback (see Watch).
  nlohmann::json object;
};

struct WatchOptions {
  // Start after this resourceVersion; "" = the server's current state is sent
  // first as ADDED events (avoid: List first, then watch from its version).
  std::string resource_version;
  std::string label_selector;
  // The server closes the watch after this long (a normal close; resume from
  // WatchEnd::resource_version). Default 300 s.
  int timeout_seconds = 300;
  bool allow_bookmarks = true;
  // Ask for the current state as ADDED events followed by a BOOKMARK annotated
  // "k8s.io/initial-events-end" (the streaming-list protocol).
  bool send_initial_events = false;
  // Called once when the server has accepted the watch (HTTP 200), before any
  // event; the informer uses it to report health. Optional.
  std::function<void()> on_connected;
};

struct WatchEnd {
  // The last resourceVersion seen (event or bookmark); the input version when
  // nothing arrived. Resume a normally closed watch from here.
  std::string resource_version;
  // The server answered 410 Gone (HTTP or an ERROR event with code 410): the
  // version is too old; the caller must re-list.
  bool gone = false;
  std::string gone_message;
  // Events delivered to the callback (BOOKMARKs included).
  size_t events = 0;
};

class Api {
 public:
  virtual ~Api() = default;

  // `path` is an absolute API path, optionally with a query string; see
  // ResourcePath.
  virtual StatusOr<Response> Get(const std::string& path) = 0;
  virtual StatusOr<Response> Create(const std::string& collection_path, const nlohmann::json& obj) = 0;  // POST
  virtual StatusOr<Response> Update(const std::string& path, const nlohmann::json& obj) = 0;             // PUT
  virtual StatusOr<Response> Patch(const std::string& path, const nlohmann::json& patch, const PatchType& type) = 0;
  // `options` is a DeleteOptions body (propagationPolicy, preconditions), or null.
  virtual StatusOr<Response> Delete(const std::string& path, const nlohmann::json* options = nullptr) = 0;
  // Every item of the collection; a non-2xx answer is an error Status.
  virtual StatusOr<ListResult> List(const std::string& collection_path, const std::string& label_selector = "",
                                    int page_size = 500) = 0;
  // Streams one watch until the server closes it (ok), `stop` becomes true
  // (ok) or an error; 410 Gone is ok with WatchEnd::gone. Events arrive in
  // order on the calling thread. (What informers need.)
  virtual StatusOr<WatchEnd> Watch(const std::string& collection_path, const WatchOptions& options,
                                   const std::function<void(const WatchEvent&)>& on_event,
                                   const std::atomic<bool>& stop) = 0;
};

// The one place that turns a call's outcome into a Status, so no caller
// compares HTTP codes by hand:
//  - a transport error comes back with `context` added;
//  - a 2xx answer, or one whose code is in `accept` (answers the caller
//    handles, e.g. 404 on a delete), comes back as the Response;
//  - a 409 otherwise is Aborted ("<context>: conflict, re-reading"): the
//    object changed under us and the work queue retries on a fresh read;
//  - any other answer is ResponseStatus(r, context), whose code says whether
//    retrying may help.
StatusOr<Response> CheckResponse(StatusOr<Response> r, const std::string& context,
                                 std::initializer_list<int> accept = {});

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_API_H_
