// Reconciler: one level-triggered pass over one StellaJob, as a fixed list
// of phases (phases.h). It reads the job and what exists now, acts
// idempotently, and says when to come back; it owns no threads and no
// caches, so tests run it against kube::testing::FakeApi.
//
// Thread safety: Reconcile may run on several threads at once for different
// keys (the work queue never hands out one key twice at once); the deps must
// be thread-safe.
#ifndef STELLA_OPERATOR_CONTROLLER_RECONCILE_RECONCILER_H_
#define STELLA_OPERATOR_CONTROLLER_RECONCILE_RECONCILER_H_

#include <string>

#include "operator/controller/reconcile/types.h"

namespace stella::op {

class Reconciler {
 public:
  explicit Reconciler(ReconcileDeps deps) : deps_(std::move(deps)) {}

  // One pass over "namespace/name".
  StatusOr<ReconcileResult> Reconcile(const std::string& key) const;

  const ReconcileDeps& deps() const { return deps_; }

 private:
  ReconcileDeps deps_;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_RECONCILE_RECONCILER_H_
