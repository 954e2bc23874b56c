#include "runtime/worker/worker_metrics.h"

namespace stella::worker {

WorkerMetrics::WorkerMetrics(metrics::Registry& r, const metrics::Labels& l)
    : steps(r.AddCounter("stella_steps_total", "Training steps completed by this worker.").Add(l)),
      samples(r.AddCounter("stella_samples_total", "Training samples processed by this worker.").Add(l)),
      samples_per_second(r.AddGauge("stella_samples_per_second",
                                    "Job-wide training throughput seen by this worker: samples/s over the last "
                                    ">= 2 s of wall time, evaluations and checkpoints included.")
                             .Add(l)),
      loss(r.AddGauge("stella_loss", "Training loss averaged over all workers, last step.").Add(l)),
      test_accuracy(r.AddGauge("stella_test_accuracy", "Test-set accuracy at the last evaluation (0..1).").Add(l)),
      test_loss(r.AddGauge("stella_test_loss", "Test-set mean loss at the last evaluation.").Add(l)),
      step_seconds(r.AddHistogram("stella_step_seconds", "Wall time of one training step.",
                                  metrics::Histogram::ExponentialBuckets(0.005, 2, 14))
                       .Add(l)),
      compute_busy(r.AddGauge("stella_compute_busy_ratio",
                              "Fraction of wall time the compute device was busy (GPU utilization proxy).")
                       .Add(l)),
      parameters(r.AddGauge("stella_model_parameters", "Number of model parameters.").Add(l)),
      density(r.AddGauge("stella_density", "Fraction of each gradient tensor sent over the WAN (1 = dense).").Add(l)),
      wan_bytes_per_step(r.AddGauge("stella_wan_bytes_per_step",
                                    "Bytes this gateway sent over the WAN in the last step (0 off gateways).")
                             .Add(l)),
      batch_size(r.AddGauge("stella_batch_size", "This worker's batch size (the tuner may rebalance it).").Add(l)),
      inflight_steps(r.AddGauge("stella_pipeline_inflight_steps",
                                "Steps computed but not yet applied to the parameters (<= staleness + 1).")
                         .Add(l)),
      tuner_decisions(
          r.AddCounter("stella_tuner_decisions_total", "Tuner decisions that changed the density or the batch sizes.")
              .Add(l)),
      degraded_steps(r.AddCounter("stella_wan_degraded_steps_total",
                                  "Steps applied without some cluster's gradients (a WAN link was down).")
                         .Add(l)),
      resyncs(r.AddCounter("stella_wan_resyncs_total",
                           "Buckets whose state was averaged across clusters after a lost link (stella mode).")
                  .Add(l)) {
  auto& phase =
      r.AddCounter("stella_step_phase_seconds_total",
                   "Time spent per step phase: compute, communication, optimizer, wait (for parameters), compression.");
  auto& last = r.AddGauge("stella_step_phase_seconds", "Duration of each phase in the last step.");
  for (const char* p : {"compute", "communication", "optimizer", "wait", "compression"}) {
    metrics::Labels pl = l;
    pl["phase"] = p;
    phase_total.push_back(&phase.Add(pl));
    phase_last.push_back(&last.Add(pl));
  }
}

WanMetrics::WanMetrics(metrics::Registry& r, const metrics::Labels& l,
                       const std::vector<exchange::PeerLinkStats>& peers) {
  auto& sent_f = r.AddGauge("stella_wan_sent_bytes", "Bytes sent to a peer cluster's gateway (cumulative).");
  auto& recv_f = r.AddGauge("stella_wan_received_bytes", "Bytes received from a peer cluster's gateway (cumulative).");
  auto& good_f = r.AddGauge("stella_wan_goodput_bytes_per_second", "Achieved send goodput to a peer (EWMA).");
  auto& up_f = r.AddGauge("stella_wan_link_up", "1 while the link to a peer cluster's gateway is up, else 0.");
  auto& reconnects_f =
      r.AddCounter("stella_wan_reconnects_total", "Links to a peer cluster's gateway re-established after a loss.");
  auto& losses_f =
      r.AddCounter("stella_wan_link_losses_total", "Links to a peer cluster's gateway lost (error, reset or silence).");
  for (const auto& p : peers) {
    metrics::Labels pl = l;
    pl["peer"] = p.name;
    sent.push_back(&sent_f.Add(pl));
    received.push_back(&recv_f.Add(pl));
    goodput.push_back(&good_f.Add(pl));
    up.push_back(&up_f.Add(pl));
    reconnects.push_back(&reconnects_f.Add(pl));
    losses.push_back(&losses_f.Add(pl));
    last.push_back(p);
    up.back()->Set(p.up ? 1 : 0);
  }
}

void WanMetrics::Update(const std::vector<exchange::PeerLinkStats>& peers, EventSink& events) {
  for (size_t i = 0; i < peers.size() && i < sent.size(); ++i) {
    const auto& p = peers[i];
    sent[i]->Set(static_cast<double>(p.bytes_sent));
    received[i]->Set(static_cast<double>(p.bytes_received));
    goodput[i]->Set(p.goodput_bytes_per_second);
    up[i]->Set(p.up ? 1 : 0);
    const auto& before = last[i];
    if (p.link_losses > before.link_losses) {
      losses[i]->Increment(static_cast<double>(p.link_losses - before.link_losses));
    }
    if (p.connects > before.connects) {
      reconnects[i]->Increment(static_cast<double>(p.connects - before.connects));
    }
    // A loss and a reconnect both between two refreshes show as both events.
    if (p.link_losses > before.link_losses || (before.up && !p.up && !p.left)) {
      events.Emit("wan_link",
                  {{"peer", p.name}, {"state", "down"}, {"reason", p.last_error}, {"losses", p.link_losses}});
    }
    if (p.left && !before.left) events.Emit("wan_link", {{"peer", p.name}, {"state", "left"}});
    if (p.connects > before.connects && p.up) {
      events.Emit("wan_link", {{"peer", p.name}, {"state", "up"}, {"connects", p.connects}});
    }
    last[i] = p;
  }
}

}  // namespace stella::worker
