#include "operator/kube/leader.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace stella::kube {

using nlohmann::json;
using std::chrono::milliseconds;

std::string MicroTimeNow() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
                      1000000;  // >= 0 after 1970
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // roomy enough for any int fields (keeps -Wformat-truncation quiet)
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(micros));
  return buf;
}

StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::Create(const ClusterConfig& cluster,
                                                               LeaderElectionOptions options) {
  if (options.lease_namespace.empty() || options.lease_name.empty() || options.identity.empty()) {
    return InvalidArgumentError("leader election: lease_namespace, lease_name and identity are required");
  }
  if (!(options.lease_duration > options.renew_deadline && options.renew_deadline > options.retry_period &&
        options.retry_period > milliseconds::zero())) {
    return InvalidArgumentError("leader election: need lease_duration > renew_deadline > retry_period > 0, got " +
                                std::to_string(options.lease_duration.count()) + " ms, " +
                                std::to_string(options.renew_deadline.count()) + " ms, " +
                                std::to_string(options.retry_period.count()) + " ms");
  }
  ClientOptions co;
  co.request_timeout = std::min(options.retry_period, options.renew_deadline / 2);
  STELLA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(cluster, co));
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(client), std::move(options)));
}

LeaderElector::LeaderElector(std::unique_ptr<Client> client, LeaderElectionOptions options)
    : client_(std::move(client)),
      options_(std::move(options)),
      clock_(options_.clock ? *options_.clock : SystemClock::Get()),
      path_(ResourcePath("coordination.k8s.io/v1", "leases", options_.lease_namespace, options_.lease_name)),
      rng_(std::random_device{}()) {}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  STELLA_CHECK(!thread_.joinable());
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kube-leader");
    Run();
  });
}

void LeaderElector::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::IsLeader() const { return is_leader_.load(); }
bool LeaderElector::Lost() const { return lost_.load(); }

std::string LeaderElector::Leader() const {
  MutexLock lock(&mu_);
  return leader_;
}

Status LeaderElector::LastError() const {
  MutexLock lock(&mu_);
  return last_error_;
}

void LeaderElector::SetError(const Status& s) {
  MutexLock lock(&mu_);
  last_error_ = s;
}

bool LeaderElector::Sleep(milliseconds d, double jitter) {
  std::uniform_real_distribution<double> f(1.0, 1.0 + jitter);
  const auto wait = milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * f(rng_)));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  MutexLock lock(&mu_);
  while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {
  }
  return !stop_;
}

void LeaderElector::Observe(const json& spec_in) {
  const json spec = spec_in.is_object() ? spec_in : json::object();
  if (spec != observed_spec_) {
    observed_spec_ = spec;
    observed_time_ = clock_.Now();
    const std::string holder = spec.value("holderIdentity", "");
    bool changed = false;
    {
      MutexLock lock(&mu_);
      changed = holder != leader_;
      leader_ = holder;
    }
    if (changed && options_.on_new_leader) options_.on_new_leader(holder);
  }
}

json LeaderElector::NewSpec(const json& old_in) const {
  const json old_spec = old_in.is_object() ? old_in : json::object();
  const std::string now = MicroTimeNow();
  const int64_t secs =
      std::max<int64_t>(1, (options_.lease_duration.count() + 999) / 1000);  // whole seconds, rounded up
  const bool mine = old_spec.value("holderIdentity", "") == options_.identity;
  json spec = {{"holderIdentity", options_.identity}, {"leaseDurationSeconds", secs}, {"renewTime", now}};
  spec["acquireTime"] = mine && old_spec.contains("acquireTime") ? old_spec["acquireTime"] : json(now);
  const int64_t transitions = old_spec.value("leaseTransitions", int64_t{0});
  // A new holder is a transition; creating the lease is not.
  spec["leaseTransitions"] = mine || !old_in.is_object() ? transitions : transitions + 1;
  return spec;
}

bool LeaderElector::TryAcquireOrRenew() {
  StatusOr<Response> got = client_->Get(path_);
  if (!got.ok()) {
    SetError(got.status());
    return false;
  }
  if (IsNotFound(*got)) {
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.lease_name}, {"namespace", options_.lease_namespace}}},
                  {"spec", NewSpec(json())}};
    StatusOr<Response> created =
        client_->Create(ResourcePath("coordination.k8s.io/v1", "leases", options_.lease_namespace), lease);
    if (!created.ok()) {
      SetError(created.status());
      return false;
    }
    if (created->code != 201) {  // AlreadyExists: another candidate was first
      SetError(ResponseStatus(*created, "create lease " + path_));
      return false;
    }
    Observe(created->body["spec"]);
    SetError(Status::Ok());
    return true;
  }
  if (got->code != 200) {
    SetError(ResponseStatus(*got, "get lease " + path_));
    return false;
  }
  const json spec = got->body.contains("spec") && got->body["spec"].is_object() ? got->body["spec"] : json::object();
  Observe(spec);
  const std::string holder = spec.value("holderIdentity", "");
  const int64_t duration_s = spec.value("leaseDurationSeconds", int64_t{0});
  const bool held_by_other = !holder.empty() && holder != options_.identity &&
                             clock_.Now() < observed_time_ + std::chrono::seconds(duration_s);
  if (held_by_other) {
    SetError(FailedPreconditionError("lease " + path_ + " is held by " + holder));
    return false;
  }
  json updated = got->body;
  updated["spec"] = NewSpec(spec);  // metadata.resourceVersion makes the write conditional
  StatusOr<Response> put = client_->Update(path_, updated);
  if (!put.ok()) {
    SetError(put.status());
    return false;
  }
  if (put->code != 200) {  // 409: someone wrote first; re-read next round
    SetError(ResponseStatus(*put, "update lease " + path_));
    return false;
  }
  Observe(put->body["spec"]);
  SetError(Status::Ok());
  return true;
}

void LeaderElector::Release() {
  StatusOr<Response> got = client_->Get(path_);
  if (!got.ok() || got->code != 200) return;  // nothing we can do; it will expire
  json lease = got->body;
  if (!lease.contains("spec") || !lease["spec"].is_object() ||
      lease["spec"].value("holderIdentity", "") != options_.identity) {
    return;
  }
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = MicroTimeNow();
  StatusOr<Response> put = client_->Update(path_, lease);
  if (put.ok() && put->code == 200) Observe(put->body["spec"]);
}

void LeaderElector::Run() {
  // Acquire.
  for (;;) {
    if (TryAcquireOrRenew()) break;
    if (!Sleep(options_.retry_period, /*jitter=*/1.2)) return;
  }
  is_leader_ = true;
  if (options_.on_started_leading) options_.on_started_leading();

  // Renew until stopped or the deadline passes without a successful renewal.
  Clock::TimePoint last_renew = clock_.Now();
  for (;;) {
    if (!Sleep(options_.retry_period, /*jitter=*/0)) break;
    if (TryAcquireOrRenew()) {
      last_renew = clock_.Now();
      continue;
    }
    if (clock_.Now() - last_renew >= options_.renew_deadline) {
      is_leader_ = false;
      lost_ = true;
      if (options_.on_stopped_leading) options_.on_stopped_leading();
      return;
    }
  }
  Release();
  is_leader_ = false;
  if (options_.on_stopped_leading) options_.on_stopped_leading();
}

}  // namespace stella::kube
