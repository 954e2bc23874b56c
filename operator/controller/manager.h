// Runnable and Manager: the long-lived pieces of the operator (the
// controller, the runtime scraper) and the one object main starts and stops
// them through, as controller-runtime's manager does.
//
// Thread safety: Manager is used from main's thread only (Start may be called
// from the leader elector's callback thread, Stop afterwards from main's;
// both are serialized by a mutex).
#ifndef STELLA_OPERATOR_CONTROLLER_MANAGER_H_
#define STELLA_OPERATOR_CONTROLLER_MANAGER_H_

#include <string>
#include <vector>

#include "src/base/mutex.h"
#include "src/base/thread_annotations.h"

namespace stella::op {

// A piece that owns its threads: Start launches them and returns; Stop makes
// them finish and joins them. Both are idempotent.
class Runnable {
 public:
  virtual ~Runnable() = default;
  virtual void Start() = 0;
  virtual void Stop() = 0;
  virtual std::string RunnableName() const = 0;
};

class Manager {
 public:
  // `r` outlives the manager. Started in the order added.
  void Add(Runnable* r) {
    MutexLock lock(&mu_);
    runnables_.push_back(r);
  }
  // Starts every runnable once (later calls do nothing).
  void Start() {
    MutexLock lock(&mu_);
    if (started_ || stopped_) return;
    started_ = true;
    for (Runnable* r : runnables_) r->Start();
  }
  // Stops them in reverse order: a piece stops before those it uses.
  void Stop() {
    MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto it = runnables_.rbegin(); it != runnables_.rend(); ++it) (*it)->Stop();
  }

 private:
  Mutex mu_;
  std::vector<Runnable*> runnables_ GUARDED_BY(mu_);
  bool started_ GUARDED_BY(mu_) = false;
  bool stopped_ GUARDED_BY(mu_) = false;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_MANAGER_H_
