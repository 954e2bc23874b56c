#include "operator/kube/client.h"

#include <cpprest/http_client.h>
#include <cpprest/uri.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <thread>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/token_bucket.h"

namespace stella::kube {

namespace http = web::http;
namespace http_client = web::http::client;
using nlohmann::json;

namespace {

// Extra time a watch connection may stay silent beyond the server-side
// timeoutSeconds before the client gives up on it (a dead peer or a network
// partition that never sends a FIN).
constexpr std::chrono::seconds kWatchSilenceMargin{30};
// How often a running watch checks its `stop` flag.
constexpr std::chrono::milliseconds kStopPoll{50};
constexpr int kMaxListRestarts = 3;

const char* PatchContentType(PatchKind k) {
  switch (k) {
    case PatchKind::kMerge: return "application/merge-patch+json";
    case PatchKind::kJson: return "application/json-patch+json";
    case PatchKind::kStrategicMerge: return "application/strategic-merge-patch+json";
    case PatchKind::kApply: return "application/apply-patch+yaml";  // JSON is valid YAML
  }
  return "application/merge-patch+json";
}

json ParseBody(const std::string& text) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return text;  // not JSON: keep the text for ApiMessage
  return j;
}

std::string AppendQuery(const std::string& path, const std::string& param) {
  return path + (path.find('?') == std::string::npos ? "?" : "&") + param;
}

// Applies the TLS material to an OpenSSL context; throws boost/asio errors on
// bad PEM (the caller catches them: at Create time to validate, and inside
// cpprest's connection setup where they become a transport error).
void ConfigureSsl(boost::asio::ssl::context& ctx, const ClusterConfig& cfg) {
  if (!cfg.ca_pem.empty()) ctx.add_certificate_authority(boost::asio::buffer(cfg.ca_pem));
  if (!cfg.client_cert_pem.empty()) {
    ctx.use_certificate_chain(boost::asio::buffer(cfg.client_cert_pem));
    ctx.use_private_key(boost::asio::buffer(cfg.client_key_pem), boost::asio::ssl::context::pem);
  }
}

}  // namespace

const char* EventTypeName(EventType t) {
  switch (t) {
    case EventType::kAdded: return "ADDED";
    case EventType::kModified: return "MODIFIED";
    case EventType::kDeleted: return "DELETED";
    case EventType::kBookmark: return "BOOKMARK";
    case EventType::kError: return "ERROR";
  }
  return "?";
}

class Client::Impl {
 public:
  Impl(ClusterConfig cfg, ClientOptions opts, std::unique_ptr<TokenBucket> bucket)
      : cfg_(std::move(cfg)), opts_(std::move(opts)), bucket_(std::move(bucket)) {
    http_ = std::make_unique<http_client::http_client>(utility::conversions::to_string_t(cfg_.server),
                                                       MakeConfig(opts_.request_timeout));
  }

  const ClusterConfig& config() const { return cfg_; }

  http_client::http_client_config MakeConfig(std::chrono::milliseconds timeout) const {
    http_client::http_client_config c;
    c.set_timeout(timeout);
    c.set_validate_certificates(!cfg_.insecure_skip_tls_verify);
    const ClusterConfig cfg = cfg_;  // the callback outlives no Client, but copy to be plain
    c.set_ssl_context_callback([cfg](boost::asio::ssl::context& ctx) { ConfigureSsl(ctx, cfg); });
    return c;
  }

  // The bearer token for this request: re-read when it comes from a file so
  // that rotated service-account tokens are picked up.
  StatusOr<std::string> Token() const {
    if (cfg_.token_file.empty()) return cfg_.bearer_token;
    std::ifstream f(cfg_.token_file, std::ios::binary);
    if (!f) return UnavailableError("token_file \"" + cfg_.token_file + "\": cannot read");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string t = ss.str();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
  }

  void Throttle() {
    const Clock::Duration wait = bucket_->Reserve(1);
    if (wait > Clock::Duration::zero()) std::this_thread::sleep_for(wait);
  }

  void Report(const std::string& verb, int code) const {
    if (opts_.on_request) opts_.on_request(verb, code);
  }

  StatusOr<http::http_request> BuildRequest(const http::method& method, const std::string& path,
                                            const std::string* body, const std::string& content_type) const {
    STELLA_ASSIGN_OR_RETURN(std::string token, Token());
    http::http_request req(method);
    req.set_request_uri(web::uri(utility::conversions::to_string_t(path)));
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", "stella-operator");
    if (!token.empty()) req.headers().add("Authorization", "Bearer " + token);
    if (body) {
      req.set_body(std::vector<unsigned char>(body->begin(), body->end()));
      req.headers().set_content_type(content_type);
    }
    return req;
  }

  StatusOr<Response> Do(const http::method& method, const std::string& verb, const std::string& path,
                        const json* body = nullptr, const std::string& content_type = "application/json") {
    Throttle();
    const std::string what = method + " " + cfg_.server + path;
    try {
      const std::string text = body ? body->dump() : std::string();
      StatusOr<http::http_request> req = BuildRequest(method, path, body ? &text : nullptr, content_type);
      if (!req.ok()) {
        Report(verb, 0);
        return req.status().WithContext(what);
      }
      http::http_response resp = http_->request(*req).get();
      Response out;
      out.code = resp.status_code();
      out.body = ParseBody(resp.extract_string(/*ignore_content_type=*/true).get());
      Report(verb, out.code);
      return out;
    } catch (const std::exception& e) {
      Report(verb, 0);
      return UnavailableError(what + ": " + e.what());
    }
  }

  StatusOr<WatchEnd> Watch(const std::string& collection_path, const WatchOptions& o,
                           const std::function<void(const WatchEvent&)>& on_event, const std::atomic<bool>& stop);

 private:
  const ClusterConfig cfg_;
  const ClientOptions opts_;
  std::unique_ptr<TokenBucket> bucket_;  // thread-safe
  // cpprest's http_client is safe for concurrent requests (a connection pool).
  std::unique_ptr<http_client::http_client> http_;
};

namespace {

// Cancels a cpprest request when `stop` becomes true or when dismissed; owns
// its polling thread ("kube-watch-stop") and joins it.
class StopWatcher {
 public:
  StopWatcher(const std::atomic<bool>& stop, pplx::cancellation_token_source cts)
      : stop_(stop), cts_(std::move(cts)), thread_([this] { Run(); }) {}
  ~StopWatcher() {
    {
      MutexLock lock(&mu_);
      done_ = true;
    }
    cv_.SignalAll();
    thread_.join();
  }

 private:
  void Run() {
    MutexLock lock(&mu_);
    while (!done_) {
      if (stop_.load()) {
        cts_.cancel();  // closes the connection: a blocked body read fails at once
        return;
      }
      cv_.WaitFor(&mu_, kStopPoll);
    }
  }
  const std::atomic<bool>& stop_;  // owned by the caller of Watch, which outlives this
  pplx::cancellation_token_source cts_;
  Mutex mu_;
  CondVar cv_;
  bool done_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

StatusOr<WatchEvent> DecodeWatchEvent(const std::string& line) {
  auto quoted = [&line] { return line.substr(0, std::min<size_t>(line.size(), 200)); };
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return DataLossError("undecodable watch event: " + quoted());
  }
  const auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return DataLossError("watch event without a string \"type\": " + quoted());
  }
  WatchEvent ev;
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "ADDED") {
    ev.type = EventType::kAdded;
  } else if (t == "MODIFIED") {
    ev.type = EventType::kModified;
  } else if (t == "DELETED") {
    ev.type = EventType::kDeleted;
  } else if (t == "BOOKMARK") {
    ev.type = EventType::kBookmark;
  } else if (t == "ERROR") {
    ev.type = EventType::kError;
  } else {
    return InvalidArgumentError("unknown watch event type \"" + t.substr(0, 64) +
                                "\" (expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR): " + quoted());
  }
  const auto object = j.find("object");
  if (object != j.end()) ev.object = std::move(*object);
  return ev;
}

int WatchErrorCode(const json& status) {
  if (!status.is_object()) return 500;
  const auto code = status.find("code");
  // is_number_integer covers signed and unsigned; compare as int64 so a huge
  // unsigned value cannot wrap into range.
  if (code == status.end() || !code->is_number_integer()) return 500;
  if (code->is_number_unsigned() && code->get<uint64_t>() > 599) return 500;
  const int64_t c = code->get<int64_t>();
  return c >= 100 && c <= 599 ? static_cast<int>(c) : 500;
}

StatusOr<WatchEnd> Client::Impl::Watch(const std::string& collection_path, const WatchOptions& o,
                                       const std::function<void(const WatchEvent&)>& on_event,
                                       const std::atomic<bool>& stop) {
  WatchEnd end;
  end.resource_version = o.resource_version;
  if (stop.load()) return end;
  if (o.timeout_seconds <= 0) {
    return InvalidArgumentError("watch: timeout_seconds must be > 0, got " + std::to_string(o.timeout_seconds));
  }
  std::string path = AppendQuery(collection_path, "watch=1");
  if (o.allow_bookmarks) path += "&allowWatchBookmarks=true";
  path += "&timeoutSeconds=" + std::to_string(o.timeout_seconds);
  if (!o.label_selector.empty()) path += "&labelSelector=" + QueryEscape(o.label_selector);
  if (o.send_initial_events) {
    path += "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan";
  }
  if (!o.resource_version.empty()) path += "&resourceVersion=" + QueryEscape(o.resource_version);
  const std::string what = "WATCH " + cfg_.server + path;

  Throttle();
  StatusOr<http::http_request> req = BuildRequest(http::methods::GET, path, nullptr, "");
  if (!req.ok()) {
    Report("WATCH", 0);
    return req.status().WithContext(what);
  }
  // A client of its own: its timeout bounds silence on this stream, which may
  // legitimately last until the server-side timeout.
  http_client::http_client client(utility::conversions::to_string_t(cfg_.server),
                                  MakeConfig(std::chrono::seconds(o.timeout_seconds) + kWatchSilenceMargin));
  pplx::cancellation_token_source cts;
  StopWatcher stop_watcher(stop, cts);

  http::http_response resp;
  try {
    resp = client.request(*req, cts.get_token()).get();
  } catch (const std::exception& e) {
    Report("WATCH", 0);
    if (stop.load()) return end;
    return UnavailableError(what + ": " + e.what());
  }
  Report("WATCH", resp.status_code());
  if (resp.status_code() != 200) {
    Response r;
    r.code = resp.status_code();
    try {
      r.body = ParseBody(resp.extract_string(true).get());
    } catch (const std::exception&) {
      // The code alone is enough to report.
    }
    if (r.code == 410) {
      end.gone = true;
      end.gone_message = ApiMessage(r);
      return end;
    }
    return ResponseStatus(r, "watch " + collection_path);
  }
  if (o.on_connected) o.on_connected();

  // Read the chunked body as it arrives: block for one byte, then take what
  // is already buffered in one go, and hand over each complete line (one JSON
  // event per line).
  auto body = resp.body().streambuf();
  using traits = concurrency::streams::streambuf<uint8_t>::traits;
  std::string pending;
  std::vector<uint8_t> chunk;
  try {
    for (;;) {
      const auto c = body.bumpc().get();
      if (c == traits::eof()) break;
      pending.push_back(static_cast<char>(c));
      const size_t avail = body.in_avail();
      if (avail > 0) {
        chunk.resize(avail);
        const size_t n = body.getn(chunk.data(), avail).get();
        pending.append(reinterpret_cast<const char*>(chunk.data()), n);
      }
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        if (nl == start) continue;
        StatusOr<WatchEvent> decoded = DecodeWatchEvent(pending.substr(start, nl - start));
        if (!decoded.ok()) return decoded.status().WithContext(what);
        WatchEvent& ev = *decoded;
        if (ev.type == EventType::kError) {
          Response r{WatchErrorCode(ev.object), ev.object};
          if (r.code == 410) {
            end.gone = true;
            end.gone_message = ApiMessage(r);
            return end;
          }
          return ResponseStatus(r, "watch " + collection_path + ": ERROR event");
        }
        const std::string rv = ResourceVersionOf(ev.object);
        if (!rv.empty()) end.resource_version = rv;
        ++end.events;
        on_event(ev);
      }
      pending.erase(0, start);
    }
  } catch (const std::exception& e) {
    if (stop.load()) return end;
    return UnavailableError(what + ": stream broken after " + std::to_string(end.events) + " events: " + e.what());
  }
  return end;
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

StatusOr<std::unique_ptr<Client>> Client::Create(const ClusterConfig& config, ClientOptions options) {
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return InvalidArgumentError("cluster config \"" + config.name + "\": server: expected an https:// URL, got \"" +
                                config.server + "\"");
  }
  if (!web::uri::validate(utility::conversions::to_string_t(config.server))) {
    return InvalidArgumentError("cluster config \"" + config.name + "\": server: \"" + config.server +
                                "\" is not a valid URL");
  }
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return InvalidArgumentError("cluster config \"" + config.name +
                                "\": client_cert_pem and client_key_pem must be set together");
  }
  if (config.insecure_skip_tls_verify && !config.ca_pem.empty()) {
    return InvalidArgumentError("cluster config \"" + config.name +
                                "\": ca_pem and insecure_skip_tls_verify are mutually exclusive");
  }
  if (options.request_timeout <= std::chrono::milliseconds::zero()) {
    return InvalidArgumentError("client options: request_timeout must be > 0");
  }
  // Validate the PEM material now, field by field, rather than on first use.
  {
    boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
    const char* field = "ca_pem";
    try {
      if (!config.ca_pem.empty()) ctx.add_certificate_authority(boost::asio::buffer(config.ca_pem));
      field = "client_cert_pem";
      if (!config.client_cert_pem.empty()) {
        ctx.use_certificate_chain(boost::asio::buffer(config.client_cert_pem));
        field = "client_key_pem";
        ctx.use_private_key(boost::asio::buffer(config.client_key_pem), boost::asio::ssl::context::pem);
      }
    } catch (const std::exception& e) {
      return InvalidArgumentError("cluster config \"" + config.name + "\": " + field + ": not usable: " + e.what());
    }
  }
  const bool limited = options.qps > 0;
  StatusOr<std::unique_ptr<TokenBucket>> bucket =
      TokenBucket::Create({limited ? options.qps : 0, limited ? options.burst : 1}, SystemClock::Get());
  if (!bucket.ok()) return bucket.status().WithContext("client options: qps/burst");
  try {
    return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(config, std::move(options), std::move(*bucket))));
  } catch (const std::exception& e) {
    return InvalidArgumentError("cluster config \"" + config.name + "\": server \"" + config.server +
                                "\": " + e.what());
  }
}

StatusOr<Response> Client::Get(const std::string& path) { return impl_->Do(http::methods::GET, "GET", path); }

StatusOr<Response> Client::Create(const std::string& collection_path, const json& obj) {
  return impl_->Do(http::methods::POST, "POST", collection_path, &obj);
}

StatusOr<Response> Client::Update(const std::string& path, const json& obj) {
  return impl_->Do(http::methods::PUT, "PUT", path, &obj);
}

StatusOr<Response> Client::Patch(const std::string& path, const json& patch, const PatchType& type) {
  std::string p = path;
  if (type.kind == PatchKind::kApply) {
    if (type.field_manager.empty()) {
      return InvalidArgumentError("patch " + path + ": server-side apply needs a field_manager");
    }
    p = AppendQuery(p, "fieldManager=" + QueryEscape(type.field_manager));
    if (type.force) p += "&force=true";
  } else if (!type.field_manager.empty()) {
    p = AppendQuery(p, "fieldManager=" + QueryEscape(type.field_manager));
  }
  return impl_->Do(http::methods::PATCH, "PATCH", p, &patch, PatchContentType(type.kind));
}

StatusOr<Response> Client::Delete(const std::string& path, const json* options) {
  return impl_->Do(http::methods::DEL, "DELETE", path, options);
}

StatusOr<ListResult> Client::List(const std::string& collection_path, const std::string& label_selector,
                                  int page_size) {
  if (page_size <= 0) {
    return InvalidArgumentError("list " + collection_path + ": page_size must be > 0, got " +
                                std::to_string(page_size));
  }
  ListResult result;
  std::string cont;
  int restarts = 0;
  for (;;) {
    std::string path = AppendQuery(collection_path, "limit=" + std::to_string(page_size));
    if (!label_selector.empty()) path += "&labelSelector=" + QueryEscape(label_selector);
    if (!cont.empty()) path += "&continue=" + QueryEscape(cont);
    STELLA_ASSIGN_OR_RETURN(Response r, impl_->Do(http::methods::GET, "LIST", path));
    if (IsGone(r) && !cont.empty()) {
      // The continue token expired (the snapshot was compacted): start over.
      if (++restarts > kMaxListRestarts) {
        return UnavailableError("list " + collection_path + ": continue token expired " + std::to_string(restarts) +
                                " times: " + ApiMessage(r));
      }
      result = ListResult();
      cont.clear();
      continue;
    }
    STELLA_RETURN_IF_ERROR(ResponseStatus(r, "list " + collection_path));
    if (!r.body.is_object() || !r.body.contains("items")) {
      return DataLossError("list " + collection_path + ": answer has no items");
    }
    std::string kind = r.body.value("kind", "");
    if (kind.size() > 4 && kind.compare(kind.size() - 4, 4, "List") == 0) {
      kind.resize(kind.size() - 4);
    }
    const std::string api_version = r.body.value("apiVersion", "");
    if (r.body["items"].is_array()) {
      for (json& item : r.body["items"]) {
        if (!kind.empty() && !item.contains("kind")) item["kind"] = kind;
        if (!api_version.empty() && !item.contains("apiVersion")) item["apiVersion"] = api_version;
        result.items.push_back(std::move(item));
      }
    }
    const json& meta = r.body.contains("metadata") ? r.body["metadata"] : json::object();
    result.resource_version = meta.value("resourceVersion", "");
    cont = meta.value("continue", "");
    if (cont.empty()) return result;
  }
}

StatusOr<WatchEnd> Client::Watch(const std::string& collection_path, const WatchOptions& options,
                                 const std::function<void(const WatchEvent&)>& on_event,
                                 const std::atomic<bool>& stop) {
  return impl_->Watch(collection_path, options, on_event, stop);
}

const ClusterConfig& Client::config() const { return impl_->config(); }

std::string ResourcePath(const std::string& group_version, const std::string& plural, const std::string& namespace_,
                         const std::string& name, const std::string& subresource) {
  std::string p = group_version.find('/') == std::string::npos ? "/api/" + group_version : "/apis/" + group_version;
  if (!namespace_.empty()) p += "/namespaces/" + namespace_;
  p += "/" + plural;
  if (!name.empty()) {
    p += "/" + name;
    if (!subresource.empty()) p += "/" + subresource;
  }
  return p;
}

std::string QueryEscape(const std::string& value) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

namespace {

// obj[key] when obj is an object and that member is a string, else "". (The
// json::value() shortcut throws on a member of another type.)
std::string StringMember(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  const auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string MetadataString(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  const auto meta = obj.find("metadata");
  return meta == obj.end() ? std::string() : StringMember(*meta, key);
}

}  // namespace

std::string ApiReason(const Response& r) {
  if (StringMember(r.body, "kind") == "Status") return StringMember(r.body, "reason");
  return "";
}

bool IsNotFound(const Response& r) { return r.code == 404; }
bool IsAlreadyExists(const Response& r) { return r.code == 409 && ApiReason(r) == "AlreadyExists"; }
bool IsConflict(const Response& r) { return r.code == 409 && ApiReason(r) != "AlreadyExists"; }
bool IsGone(const Response& r) { return r.code == 410; }
bool IsSuccess(const Response& r) { return r.code >= 200 && r.code < 300; }

std::string ApiMessage(const Response& r) {
  if (r.body.is_object() && r.body.contains("message") && r.body["message"].is_string()) {
    return r.body["message"].get<std::string>();
  }
  if (r.body.is_string()) return r.body.get<std::string>();
  if (r.body.is_null()) return "";
  return r.body.dump();
}

Status ResponseStatus(const Response& r, const std::string& context) {
  if (IsSuccess(r)) return Status::Ok();
  std::string msg = context + ": HTTP " + std::to_string(r.code);
  const std::string reason = ApiReason(r);
  if (!reason.empty()) msg += " " + reason;
  const std::string m = ApiMessage(r);
  if (!m.empty()) msg += ": " + m;
  StatusCode code = StatusCode::kInternal;
  if (r.code == 404) {
    code = StatusCode::kNotFound;
  } else if (r.code == 400 || r.code == 422) {
    code = StatusCode::kInvalidArgument;
  } else if (r.code == 401 || r.code == 403) {
    code = StatusCode::kFailedPrecondition;
  } else if (r.code == 410) {
    code = StatusCode::kOutOfRange;
  } else if (r.code == 409 || r.code == 429 || r.code >= 500) {
    code = StatusCode::kUnavailable;
  }
  return Status(code, msg);
}

std::string ResourceVersionOf(const json& obj) { return MetadataString(obj, "resourceVersion"); }

std::string NamespaceOf(const json& obj) { return MetadataString(obj, "namespace"); }

std::string NameOf(const json& obj) { return MetadataString(obj, "name"); }

}  // namespace stella::kube
