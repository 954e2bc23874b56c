// LeaderElector: leader election with a coordination.k8s.io/v1 Lease, with
// client-go's semantics.
//
//  - A candidate takes the lease when it is absent, released (empty
//    holderIdentity) or expired. Expiry is judged from the candidate's own
//    clock: the lease counts as expired leaseDurationSeconds after this
//    candidate last saw its record change (holder or renewTime), never by
//    comparing the renewTime written by another machine with the local time.
//  - The leader renews every retry_period. If no renewal succeeds for
//    renew_deadline it stops leading (on_stopped_leading) and the elector is
//    finished: the operator is expected to exit and restart clean.
//  - Stop() while leading releases the lease (clears holderIdentity) so that
//    a standby takes over at once instead of waiting for expiry.
//  - Every write carries the resourceVersion it read; a 409 Conflict means
//    someone else wrote first: re-read on the next round, never blind retry.
//
// The elector talks through a Client of its own, built from the cluster's
// config with request_timeout = min(retry_period, renew_deadline / 2) so that
// a hung request cannot delay the loss of leadership past the lease.
//
// Thread safety: IsLeader, Leader and LastError are thread-safe. Start and Stop
// are called from the owning thread. Callbacks run on the elector's thread
// ("kube-leader"); they must not call Stop.
#ifndef STELLA_OPERATOR_KUBE_LEADER_H_
#define STELLA_OPERATOR_KUBE_LEADER_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "src/base/clock.h"
#include "src/base/mutex.h"

namespace stella::kube {

struct LeaderElectionOptions {
  std::string lease_namespace;  // required
  std::string lease_name;       // required
  std::string identity;         // required, unique per candidate (e.g. pod name)
  // Must satisfy lease_duration > renew_deadline > retry_period > 0.
  // Defaults 15 s / 10 s / 2 s (client-go's).
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  // Time source for expiry and deadlines; must outlive the elector. nullptr =
  // the system steady clock.
  const Clock* clock = nullptr;
  std::function<void()> on_started_leading;
  // Leadership lost (renew deadline passed) or released by Stop.
  std::function<void()> on_stopped_leading;
  // The observed holder changed (including to this candidate). Optional.
  std::function<void(const std::string& identity)> on_new_leader;
};

class LeaderElector {
 public:
  static StatusOr<std::unique_ptr<LeaderElector>> Create(const ClusterConfig& cluster, LeaderElectionOptions options);
  ~LeaderElector();  // Stop()
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void Start();
  // Ends the election; releases the lease if leading (then on_stopped_leading
  // runs). Joins the thread. Idempotent.
  void Stop();

  bool IsLeader() const;
  // Whether leadership was lost (renew deadline passed); the elector is done.
  bool Lost() const;
  // The last observed holder ("" when none).
  std::string Leader() const;
  // Why the last acquire/renew attempt failed (ok if it succeeded).
  Status LastError() const;

 private:
  LeaderElector(std::unique_ptr<Client> client, LeaderElectionOptions options);
  void Run();
  // One round: read the lease, take or renew it if allowed. True when this
  // candidate holds it afterwards.
  bool TryAcquireOrRenew();
  void Release();
  void Observe(const nlohmann::json& spec);
  // Sleeps `d` (jittered by up to `jitter`), interruptible by Stop; false if stopped.
  bool Sleep(std::chrono::milliseconds d, double jitter);
  void SetError(const Status& s);
  nlohmann::json NewSpec(const nlohmann::json& old_spec) const;

  const std::unique_ptr<Client> client_;
  const LeaderElectionOptions options_;
  const Clock& clock_;
  const std::string path_;  // the Lease

  mutable Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::string leader_ GUARDED_BY(mu_);
  Status last_error_ GUARDED_BY(mu_);
  std::atomic<bool> is_leader_{false};
  std::atomic<bool> lost_{false};

  // Elector thread only.
  nlohmann::json observed_spec_;      // the lease spec last seen
  Clock::TimePoint observed_time_{};  // local time it was first seen
  std::mt19937 rng_;
  std::thread thread_;
};

// Kubernetes MicroTime ("2006-01-02T15:04:05.000000Z") of the wall clock.
std::string MicroTimeNow();

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_LEADER_H_
