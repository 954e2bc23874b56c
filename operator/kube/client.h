// Client: a Kubernetes REST client for one API server (cpprestsdk underneath,
// invisible in this header); the production kube::Api (api.h).
//
// What it guarantees:
//  - Every call returns the server's answer as a Response with any HTTP code
//    (404, 409, 422 are answers, not errors); only transport failures
//    (connect, TLS, timeout, unreadable body) are an error Status, whose message
//    names the verb, the URL and the cause.
//  - Each request carries the bearer token (re-read from token_file when one is
//    configured) or the client certificate; TLS verifies against ca_pem, the
//    system roots, or nothing when insecure_skip_tls_verify is set.
//  - Requests pass a client-side token bucket (qps, burst) before they are sent
//    and each request is bounded by request_timeout.
//  - List follows limit/continue to the end and restarts from scratch when a
//    continue token expires (410); Watch streams events until the server closes,
//    `stop` is set or an error, and reports 410 Gone distinctly.
//
// Thread safety: all methods are thread-safe; one Client per cluster is meant
// to be shared by every component talking to that cluster.
#ifndef STELLA_OPERATOR_KUBE_CLIENT_H_
#define STELLA_OPERATOR_KUBE_CLIENT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "operator/kube/api.h"
#include "operator/kube/config.h"
#include "src/base/status.h"

namespace stella::kube {

struct ClientOptions {
  // Bound on one request (connect + answer). Watches use their own bound:
  // WatchOptions::timeout_seconds plus a margin. Default 30 s.
  std::chrono::milliseconds request_timeout{30000};
  // Client-side rate limit: sustained requests per second and burst (like
  // client-go's QPS/Burst). qps 0 = unlimited. Defaults 200 / 400.
  double qps = 200;
  double burst = 400;
  // Called after every request (metrics hook): verb (GET, POST, PUT, PATCH,
  // DELETE, LIST, WATCH) and HTTP code, 0 for a transport error. Called on the
  // calling thread; must be thread-safe. Default none.
  std::function<void(const std::string& verb, int code)> on_request;
};

// Decodes one line of a watch stream (one JSON event, without the newline):
// {"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}.
// A line that is not a JSON object with a string "type" is DataLoss, an
// unknown type InvalidArgument; both messages quote (up to 200 bytes of) the
// line. ERROR events decode like the others: their object is the server's
// Status (see WatchErrorCode). A missing "object" decodes as null.
StatusOr<WatchEvent> DecodeWatchEvent(const std::string& line);

// The HTTP code an ERROR event's Status object carries ("code"), or 500 when
// it has none that is an integer in [100, 599] (a garbled ERROR event is a
// server error, never a 410 that would trigger a re-list).
int WatchErrorCode(const nlohmann::json& status);

class Client : public Api {
 public:
  // Validates the TLS material (CA, client certificate and key) and the server
  // URL; errors name the ClusterConfig field.
  static StatusOr<std::unique_ptr<Client>> Create(const ClusterConfig& config, ClientOptions options = {});
  ~Client() override;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `path` is an absolute API path, optionally with a query string
  // ("/api/v1/namespaces/default/configmaps/x"); see ResourcePath.
  StatusOr<Response> Get(const std::string& path) override;
  StatusOr<Response> Create(const std::string& collection_path, const nlohmann::json& obj) override;  // POST
  StatusOr<Response> Update(const std::string& path, const nlohmann::json& obj) override;             // PUT
  StatusOr<Response> Patch(const std::string& path, const nlohmann::json& patch, const PatchType& type) override;
  // `options` is a DeleteOptions body (propagationPolicy, preconditions), or null.
  StatusOr<Response> Delete(const std::string& path, const nlohmann::json* options = nullptr) override;

  // Every page (limit/continue). A non-2xx answer is an error Status carrying
  // the server's message; an expired continue token (410) restarts the list
  // from the beginning (at most 3 times).
  StatusOr<ListResult> List(const std::string& collection_path, const std::string& label_selector = "",
                            int page_size = 500) override;

  // Streams one watch until the server closes it (ok), `stop` becomes true (ok,
  // noticed within ~50 ms), or an error. Events are delivered in order on the
  // calling thread. 410 Gone -> ok with WatchEnd::gone. Other non-200 answers,
  // ERROR events with other codes, undecodable lines and transport failures
  // are error Statuses.
  StatusOr<WatchEnd> Watch(const std::string& collection_path, const WatchOptions& options,
                           const std::function<void(const WatchEvent&)>& on_event,
                           const std::atomic<bool>& stop) override;

  const ClusterConfig& config() const;

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_CLIENT_H_
