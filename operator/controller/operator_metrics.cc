#include "operator/controller/operator_metrics.h"

namespace stella::op {

OperatorMetrics::OperatorMetrics(metrics::Registry* r)
    : reconciles_(r->AddCounter("stella_operator_reconcile_total", "Reconciles of StellaJobs by result.")),
      reconcile_seconds_(r->AddHistogram("stella_operator_reconcile_duration_seconds",
                                         "Time one reconcile of a StellaJob took.",
                                         metrics::Histogram::ExponentialBuckets(0.001, 2, 14))),
      queue_depth_(r->AddGauge("stella_operator_workqueue_depth", "Job keys waiting in the work queue.")),
      api_requests_(r->AddCounter("stella_operator_api_requests_total",
                                  "Kubernetes API requests by cluster, verb and HTTP code (0 = no answer).")),
      connected_(r->AddGauge("stella_operator_cluster_connected",
                             "1 when the operator's watches on a cluster are healthy, else 0.")),
      leader_(r->AddGauge("stella_operator_is_leader", "1 while this replica holds the leader Lease.")),
      jobs_(r->AddGauge("stella_operator_jobs", "StellaJobs by status.phase.")) {
  // Series that exist from the start, so queries return data before the first event.
  for (const char* result : {"success", "error", "requeue", "conflict"}) reconciles_.Add({{"result", result}});
  queue_depth_.Add({});
  leader_.Add({});
  connected_.Add({{"cluster", "hub"}}).Set(0);
}

void OperatorMetrics::Reconciled(const std::string& result, double seconds) {
  reconciles_.Add({{"result", result}}).Increment();
  reconcile_seconds_.Add({}).Observe(seconds);
}

void OperatorMetrics::QueueDepth(int depth) { queue_depth_.Add({}).Set(depth); }

void OperatorMetrics::ApiRequest(const std::string& cluster, const std::string& verb, int code) {
  api_requests_.Add({{"cluster", cluster}, {"verb", verb}, {"code", std::to_string(code)}}).Increment();
}

void OperatorMetrics::ClusterConnected(const std::string& cluster, bool connected) {
  connected_.Add({{"cluster", cluster}}).Set(connected ? 1 : 0);
}

void OperatorMetrics::Leader(bool is_leader) { leader_.Add({}).Set(is_leader ? 1 : 0); }

void OperatorMetrics::JobsInPhase(const std::string& phase, int count) { jobs_.Add({{"phase", phase}}).Set(count); }

}  // namespace stella::op
