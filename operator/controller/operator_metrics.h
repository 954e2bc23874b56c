// The operator's Prometheus metrics (names are the dashboards' contract).
#ifndef STELLA_OPERATOR_CONTROLLER_OPERATOR_METRICS_H_
#define STELLA_OPERATOR_CONTROLLER_OPERATOR_METRICS_H_

#include <string>

#include "src/metrics/registry.h"

namespace stella::op {

class OperatorMetrics {
 public:
  explicit OperatorMetrics(metrics::Registry* registry);

  // result: success | error | requeue | conflict
  void Reconciled(const std::string& result, double seconds);
  void QueueDepth(int depth);
  void ApiRequest(const std::string& cluster, const std::string& verb, int code);
  void ClusterConnected(const std::string& cluster, bool connected);
  void Leader(bool is_leader);
  void JobsInPhase(const std::string& phase, int count);

 private:
  metrics::Family<metrics::Counter>& reconciles_;
  metrics::Family<metrics::Histogram>& reconcile_seconds_;
  metrics::Family<metrics::Gauge>& queue_depth_;
  metrics::Family<metrics::Counter>& api_requests_;
  metrics::Family<metrics::Gauge>& connected_;
  metrics::Family<metrics::Gauge>& leader_;
  metrics::Family<metrics::Gauge>& jobs_;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_OPERATOR_METRICS_H_
