#include "operator/kube/informer.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

namespace stella::kube {

using nlohmann::json;

std::string ObjectKey(const json& obj) {
  const std::string ns = NamespaceOf(obj);
  return ns.empty() ? NameOf(obj) : ns + "/" + NameOf(obj);
}

bool LabelsMatch(const json& obj, const std::string& selector) {
  if (selector.empty()) return true;
  const json* labels = nullptr;
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object() &&
      obj["metadata"].contains("labels") && obj["metadata"]["labels"].is_object()) {
    labels = &obj["metadata"]["labels"];
  }
  std::stringstream ss(selector);
  std::string term;
  while (std::getline(ss, term, ',')) {
    if (term.empty()) continue;
    const size_t eq = term.find('=');
    const std::string k = term.substr(0, eq);
    const std::string v = eq == std::string::npos ? "" : term.substr(eq + 1);
    if (!labels || !labels->contains(k) || !(*labels)[k].is_string() || (*labels)[k].get<std::string>() != v) {
      return false;
    }
  }
  return true;
}

Informer::Informer(Api* client, std::string collection_path, std::string label_selector, InformerOptions options)
    : client_(client),
      collection_path_(std::move(collection_path)),
      label_selector_(std::move(label_selector)),
      options_(options),
      rng_(std::random_device{}()) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandler(std::function<void(EventType, const json&)> handler) {
  STELLA_CHECK(!thread_.joinable());  // handlers are fixed once the thread runs
  handlers_.push_back(std::move(handler));
}

void Informer::Start() {
  STELLA_CHECK(!thread_.joinable());
  stop_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kube-informer");
    Run();
  });
}

void Informer::Stop() {
  stop_ = true;
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
  healthy_ = false;
}

bool Informer::HasSynced() const {
  MutexLock lock(&mu_);
  return synced_;
}

bool Informer::WaitForSync(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!synced_) {
    if (!cv_.WaitUntil(&mu_, deadline)) return synced_;
  }
  return true;
}

std::optional<json> Informer::Get(const std::string& ns, const std::string& name) const {
  MutexLock lock(&mu_);
  auto it = cache_.find(ns.empty() ? name : ns + "/" + name);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

std::vector<json> Informer::List(const std::string& selector) const {
  MutexLock lock(&mu_);
  std::vector<json> out;
  for (const auto& [key, obj] : cache_) {
    if (LabelsMatch(obj, selector)) out.push_back(obj);
  }
  return out;
}

bool Informer::Healthy() const { return healthy_.load(); }

int Informer::ListCount() const {
  MutexLock lock(&mu_);
  return list_count_;
}

void Informer::SetHealthy(bool healthy, const Status& why) {
  {
    MutexLock lock(&mu_);
    last_error_ = why;
  }
  healthy_ = healthy;
}

Status Informer::LastError() const {
  MutexLock lock(&mu_);
  return last_error_;
}

void Informer::Dispatch(EventType type, const json& obj) {
  for (const auto& h : handlers_) h(type, obj);
}

StatusOr<std::string> Informer::Relist() {
  STELLA_ASSIGN_OR_RETURN(ListResult list, client_->List(collection_path_, label_selector_, options_.page_size));
  SetHealthy(true);  // before HasSynced turns true: a synced informer is healthy
  std::map<std::string, json> fresh;
  for (json& item : list.items) {
    if (options_.transform) options_.transform(&item);
    std::string key = ObjectKey(item);
    fresh.emplace(std::move(key), std::move(item));
  }
  std::vector<std::pair<EventType, json>> events;
  {
    MutexLock lock(&mu_);
    for (const auto& [key, old] : cache_) {
      if (!fresh.count(key)) events.emplace_back(EventType::kDeleted, old);  // synthesized
    }
    for (const auto& [key, obj] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        events.emplace_back(EventType::kAdded, obj);
      } else if (ResourceVersionOf(it->second) != ResourceVersionOf(obj)) {
        events.emplace_back(EventType::kModified, obj);
      }
    }
    cache_ = std::move(fresh);
    ++list_count_;
  }
  for (const auto& [type, obj] : events) Dispatch(type, obj);
  {
    // Synced only once the handlers saw the initial state (as client-go).
    MutexLock lock(&mu_);
    synced_ = true;
  }
  cv_.SignalAll();
  return list.resource_version;
}

void Informer::ApplyWatchEvent(const WatchEvent& ev) {
  if (ev.type != EventType::kAdded && ev.type != EventType::kModified && ev.type != EventType::kDeleted) {
    return;  // bookmarks only move the version, which the caller tracks
  }
  json obj = ev.object;
  if (options_.transform) options_.transform(&obj);
  const std::string key = ObjectKey(obj);
  {
    MutexLock lock(&mu_);
    if (ev.type == EventType::kDeleted) {
      cache_.erase(key);
    } else {
      cache_[key] = obj;
    }
  }
  Dispatch(ev.type, obj);
}

void Informer::Backoff(int* failures) {
  const double base = static_cast<double>(options_.backoff_initial.count()) * std::pow(2.0, std::min(*failures, 30));
  const double capped = std::min(base, static_cast<double>(options_.backoff_max.count()));
  std::uniform_real_distribution<double> jitter(1.0, 1.0 + options_.jitter);
  const double ms = std::min(capped * jitter(rng_), static_cast<double>(options_.backoff_max.count()));
  ++*failures;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(ms));
  MutexLock lock(&mu_);
  while (!stop_.load() && cv_.WaitUntil(&mu_, deadline)) {
  }
}

void Informer::Run() {
  int failures = 0;
  bool need_list = true;
  std::string rv;
  while (!stop_) {
    if (need_list) {
      StatusOr<std::string> listed = Relist();
      if (!listed.ok()) {
        SetHealthy(false, listed.status());
        Backoff(&failures);
        continue;
      }
      rv = *listed;
      need_list = false;
      failures = 0;
    }
    WatchOptions o;
    o.resource_version = rv;
    o.label_selector = label_selector_;
    const int t = static_cast<int>(std::max<int64_t>(1, options_.watch_timeout.count()));
    o.timeout_seconds = std::uniform_int_distribution<int>(t, 2 * t - 1)(rng_);
    o.on_connected = [this, &failures] {
      SetHealthy(true);
      failures = 0;
    };
    StatusOr<WatchEnd> end = client_->Watch(
        collection_path_, o,
        [this, &rv](const WatchEvent& ev) {
          const std::string v = ResourceVersionOf(ev.object);
          if (!v.empty()) rv = v;
          ApplyWatchEvent(ev);
        },
        stop_);
    if (stop_) break;
    if (!end.ok()) {
      // Retry the watch from the last version seen; if the server no longer
      // has it, the next attempt says 410 and we re-list.
      SetHealthy(false, end.status());
      Backoff(&failures);
      continue;
    }
    if (end->gone) {
      need_list = true;
      continue;
    }
    rv = end->resource_version;
  }
}

}  // namespace stella::kube
