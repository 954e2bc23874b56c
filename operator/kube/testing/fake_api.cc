#include "operator/kube/testing/fake_api.h"

#include <algorithm>
#include <chrono>
#include <sstream>

namespace stella::kube::testing {

using json = nlohmann::json;

Response StatusResponse(int code, const std::string& reason, const std::string& message) {
  return {code, json{{"kind", "Status"},
                     {"apiVersion", "v1"},
                     {"status", "Failure"},
                     {"code", code},
                     {"reason", reason},
                     {"message", message}}};
}

bool MatchesSelector(const json& obj, const std::string& selector) {
  const json labels = obj.value("/metadata/labels"_json_pointer, json::object());
  std::stringstream terms(selector);
  std::string term;
  while (std::getline(terms, term, ',')) {
    if (term.empty()) continue;
    size_t eq = term.find('=');
    if (eq == std::string::npos) return false;  // only equality terms are supported
    const std::string key = term.substr(0, eq);
    const std::string value = term.substr(term[eq + 1] == '=' ? eq + 2 : eq + 1);
    auto it = labels.find(key);
    if (it == labels.end() || !it->is_string() || it->get<std::string>() != value) return false;
  }
  return true;
}

std::optional<FakeApi::Key> FakeApi::ParsePath(const std::string& full) {
  const std::string path = full.substr(0, full.find('?'));
  std::vector<std::string> seg;
  std::stringstream in(path);
  std::string s;
  while (std::getline(in, s, '/')) {
    if (!s.empty()) seg.push_back(s);
  }
  Key k;
  size_t i = 0;
  if (seg.size() >= 2 && seg[0] == "api") {
    k.group_version = seg[1];
    i = 2;
  } else if (seg.size() >= 3 && seg[0] == "apis") {
    k.group_version = seg[1] + "/" + seg[2];
    i = 3;
  } else {
    return std::nullopt;
  }
  if (i + 1 < seg.size() && seg[i] == "namespaces" && i + 2 < seg.size()) {
    k.ns = seg[i + 1];
    i += 2;
  }
  if (i >= seg.size()) return std::nullopt;
  k.plural = seg[i++];
  if (i < seg.size()) k.name = seg[i++];
  for (; i < seg.size(); ++i) k.subresource += (k.subresource.empty() ? "" : "/") + seg[i];
  return k;
}

std::string FakeApi::StoreKey(const Key& k) { return k.group_version + "|" + k.plural + "|" + k.ns + "|" + k.name; }

std::optional<Response> FakeApi::Injected(const std::string& verb, const std::string& path, Status* transport) {
  requests_.push_back(verb + " " + path);
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if (!it->verb.empty() && it->verb != verb) continue;
    if (path.find(it->path_contains) == std::string::npos) continue;
    Failure f = *it;
    if (--it->times <= 0) failures_.erase(it);
    if (f.transport_error) {
      *transport = *f.transport_error;
      return Response{};
    }
    return StatusResponse(f.code, f.reason, f.message);
  }
  return std::nullopt;
}

json FakeApi::StoreLocked(const Key& k, json obj) {
  json& meta = obj["metadata"];
  meta["resourceVersion"] = NextVersionLocked();
  if (!k.ns.empty()) meta["namespace"] = k.ns;
  if (!meta.contains("uid")) meta["uid"] = "fake-uid-" + std::to_string(++uids_);
  if (!meta.contains("creationTimestamp")) meta["creationTimestamp"] = "2026-01-01T00:00:00Z";
  Key named = k;
  named.name = meta.value("name", "");
  named.subresource.clear();
  const bool added = objects_.count(StoreKey(named)) == 0;
  objects_[StoreKey(named)] = obj;
  changes_.push_back({version_, added ? EventType::kAdded : EventType::kModified, k.group_version, k.plural, obj});
  changed_.SignalAll();
  return obj;
}

void FakeApi::EraseLocked(std::map<std::string, json>::iterator it, const Key& k) {
  json gone = it->second;
  gone["metadata"]["resourceVersion"] = NextVersionLocked();
  objects_.erase(it);
  changes_.push_back({version_, EventType::kDeleted, k.group_version, k.plural, std::move(gone)});
  changed_.SignalAll();
}

#define STELLA_FAKE_INJECT_(verb, path)              \
  do {                                               \
    Status transport;                                \
    if (auto r = Injected(verb, path, &transport)) { \
      if (!transport.ok()) return transport;         \
      return *r;                                     \
    }                                                \
  } while (0)

StatusOr<Response> FakeApi::Get(const std::string& path) {
  MutexLock lock(&mu_);
  STELLA_FAKE_INJECT_("GET", path);
  if (auto it = raw_.find(path); it != raw_.end()) return it->second;
  auto k = ParsePath(path);
  if (!k) return StatusResponse(404, "NotFound", "the server could not find the requested resource");
  k->subresource.clear();
  auto it = objects_.find(StoreKey(*k));
  if (it == objects_.end()) return StatusResponse(404, "NotFound", k->plural + " \"" + k->name + "\" not found");
  return Response{200, it->second};
}

StatusOr<Response> FakeApi::Create(const std::string& collection_path, const json& obj) {
  MutexLock lock(&mu_);
  STELLA_FAKE_INJECT_("POST", collection_path);
  auto k = ParsePath(collection_path);
  if (!k || !k->name.empty()) return StatusResponse(405, "MethodNotAllowed", "POST needs a collection path");
  k->name = obj.value("/metadata/name"_json_pointer, std::string());
  if (k->name.empty()) return StatusResponse(422, "Invalid", "metadata.name: Required value");
  if (objects_.count(StoreKey(*k))) {
    return StatusResponse(409, "AlreadyExists", k->plural + " \"" + k->name + "\" already exists");
  }
  json stored = obj;
  if (stored["metadata"].contains("resourceVersion")) stored["metadata"].erase("resourceVersion");
  return Response{201, StoreLocked(*k, std::move(stored))};
}

StatusOr<Response> FakeApi::Update(const std::string& path, const json& obj) {
  MutexLock lock(&mu_);
  STELLA_FAKE_INJECT_("PUT", path);
  auto k = ParsePath(path);
  if (!k) return StatusResponse(404, "NotFound", "no such path " + path);
  const bool status_only = k->subresource == "status";
  k->subresource.clear();
  auto it = objects_.find(StoreKey(*k));
  if (it == objects_.end()) return StatusResponse(404, "NotFound", k->plural + " \"" + k->name + "\" not found");
  const std::string want = obj.value("/metadata/resourceVersion"_json_pointer, std::string());
  const std::string have = it->second.value("/metadata/resourceVersion"_json_pointer, std::string());
  if (!want.empty() && want != have) {
    return StatusResponse(409, "Conflict",
                          "Operation cannot be fulfilled on " + k->plural + " \"" + k->name +
                              "\": the object has been modified; please apply your changes to the latest version "
                              "and try again");
  }
  json next = it->second;
  if (status_only) {
    next["status"] = obj.value("status", json::object());
  } else {
    const json keep_status = it->second.value("status", json());
    next = obj;
    if (!keep_status.is_null()) next["status"] = keep_status;
    for (const char* f : {"uid", "creationTimestamp", "deletionTimestamp"}) {
      if (it->second["metadata"].contains(f)) next["metadata"][f] = it->second["metadata"][f];
    }
  }
  if (next["metadata"].contains("deletionTimestamp") && next["metadata"].value("finalizers", json::array()).empty()) {
    EraseLocked(it, *k);
    return Response{200, next};
  }
  return Response{200, StoreLocked(*k, std::move(next))};
}

StatusOr<Response> FakeApi::Patch(const std::string& path, const json& patch, const PatchType& type) {
  MutexLock lock(&mu_);
  STELLA_FAKE_INJECT_("PATCH", path);
  if (type.kind != PatchKind::kMerge) return InvalidArgumentError("FakeApi supports merge patches only");
  auto k = ParsePath(path);
  if (!k) return StatusResponse(404, "NotFound", "no such path " + path);
  k->subresource.clear();
  auto it = objects_.find(StoreKey(*k));
  if (it == objects_.end()) return StatusResponse(404, "NotFound", k->plural + " \"" + k->name + "\" not found");
  const std::string want = patch.value("/metadata/resourceVersion"_json_pointer, std::string());
  const std::string have = it->second.value("/metadata/resourceVersion"_json_pointer, std::string());
  if (!want.empty() && want != have) {
    return StatusResponse(
        409, "Conflict",
        "Operation cannot be fulfilled on " + k->plural + " \"" + k->name + "\": the object has been modified");
  }
  json next = it->second;
  next.merge_patch(patch);
  if (next["metadata"].contains("deletionTimestamp") && next["metadata"].value("finalizers", json::array()).empty()) {
    EraseLocked(it, *k);
    return Response{200, next};
  }
  return Response{200, StoreLocked(*k, std::move(next))};
}

StatusOr<Response> FakeApi::Delete(const std::string& path, const json* options) {
  MutexLock lock(&mu_);
  STELLA_FAKE_INJECT_("DELETE", path);
  auto k = ParsePath(path);
  if (!k) return StatusResponse(404, "NotFound", "no such path " + path);
  auto it = objects_.find(StoreKey(*k));
  if (it == objects_.end()) return StatusResponse(404, "NotFound", k->plural + " \"" + k->name + "\" not found");
  if (options) {
    const std::string uid = options->value("/preconditions/uid"_json_pointer, std::string());
    if (!uid.empty() && uid != it->second.value("/metadata/uid"_json_pointer, std::string())) {
      return StatusResponse(409, "Conflict", "Precondition failed: UID in precondition: " + uid);
    }
  }
  if (!it->second.value("/metadata/finalizers"_json_pointer, json::array()).empty()) {
    json next = it->second;
    if (!next["metadata"].contains("deletionTimestamp")) next["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z";
    return Response{200, StoreLocked(*k, std::move(next))};
  }
  json gone = it->second;
  EraseLocked(it, *k);
  return Response{200, gone};
}

StatusOr<ListResult> FakeApi::List(const std::string& collection_path, const std::string& label_selector, int) {
  MutexLock lock(&mu_);
  Status transport;
  if (auto r = Injected("LIST", collection_path, &transport)) {
    if (!transport.ok()) return transport;
    return ResponseStatus(*r, "listing " + collection_path);
  }
  auto k = ParsePath(collection_path);
  if (!k) return NotFoundError("listing " + collection_path + ": no such path");
  ListResult out;
  out.resource_version = std::to_string(version_);
  for (const auto& [key, obj] : objects_) {
    const std::string prefix = k->group_version + "|" + k->plural + "|";
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    if (!k->ns.empty() && obj.value("/metadata/namespace"_json_pointer, std::string()) != k->ns) continue;
    if (!MatchesSelector(obj, label_selector)) continue;
    out.items.push_back(obj);
  }
  return out;
}

StatusOr<WatchEnd> FakeApi::Watch(const std::string& collection_path, const WatchOptions& options,
                                  const std::function<void(const WatchEvent&)>& on_event,
                                  const std::atomic<bool>& stop) {
  auto k = ParsePath(collection_path);
  if (!k) return NotFoundError("watching " + collection_path + ": no such path");
  WatchEnd end;
  end.resource_version = options.resource_version;
  int64_t from = options.resource_version.empty() ? 0 : std::stoll(options.resource_version);
  {
    MutexLock lock(&mu_);
    Status transport;
    if (auto r = Injected("WATCH", collection_path, &transport)) {
      if (!transport.ok()) return transport;
      if (r->code == 410) {
        end.gone = true;
        return end;
      }
      return ResponseStatus(*r, "watching " + collection_path);
    }
  }
  if (options.on_connected) options.on_connected();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_seconds);
  while (!stop && std::chrono::steady_clock::now() < deadline) {
    std::vector<WatchEvent> batch;
    {
      MutexLock lock(&mu_);
      // Wakes on a change, and every 20 ms to notice `stop`.
      if (version_ <= from) changed_.WaitFor(&mu_, std::chrono::milliseconds(20));
      for (const Change& c : changes_) {
        if (c.version <= from) continue;
        from = c.version;
        if (c.group_version != k->group_version || c.plural != k->plural) continue;
        if (!k->ns.empty() && c.object.value("/metadata/namespace"_json_pointer, std::string()) != k->ns) continue;
        if (!MatchesSelector(c.object, options.label_selector)) continue;
        batch.push_back({c.type, c.object});
      }
      from = std::max(from, version_);
    }
    // Delivered without the lock: handlers may call back into the fake.
    for (const WatchEvent& ev : batch) {
      on_event(ev);
      ++end.events;
      end.resource_version = ResourceVersionOf(ev.object);
    }
  }
  return end;
}

#undef STELLA_FAKE_INJECT_

void FakeApi::Fail(Failure f) {
  MutexLock lock(&mu_);
  failures_.push_back(std::move(f));
}

void FakeApi::SetRaw(const std::string& path, Response r) {
  MutexLock lock(&mu_);
  raw_[path] = std::move(r);
}

json FakeApi::Put(const std::string& collection_path, json obj) {
  MutexLock lock(&mu_);
  auto k = ParsePath(collection_path);
  if (!k) return json();
  return StoreLocked(*k, std::move(obj));
}

std::optional<json> FakeApi::Object(const std::string& path) const {
  MutexLock lock(&mu_);
  auto k = ParsePath(path);
  if (!k) return std::nullopt;
  k->subresource.clear();
  auto it = objects_.find(StoreKey(*k));
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<json> FakeApi::Objects(const std::string& collection_path) const {
  MutexLock lock(&mu_);
  std::vector<json> out;
  auto k = ParsePath(collection_path);
  if (!k) return out;
  const std::string prefix = k->group_version + "|" + k->plural + "|";
  for (const auto& [key, obj] : objects_) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    if (!k->ns.empty() && obj.value("/metadata/namespace"_json_pointer, std::string()) != k->ns) continue;
    out.push_back(obj);
  }
  return out;
}

std::vector<std::string> FakeApi::Requests() const {
  MutexLock lock(&mu_);
  return requests_;
}

int FakeApi::Count(const std::string& prefix) const {
  MutexLock lock(&mu_);
  int n = 0;
  for (const auto& r : requests_) n += r.compare(0, prefix.size(), prefix) == 0;
  return n;
}

void FakeApi::ClearRequests() {
  MutexLock lock(&mu_);
  requests_.clear();
}

}  // namespace stella::kube::testing
