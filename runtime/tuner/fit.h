// Per-worker compute-time model: a least-squares fit of the forward+backward
// seconds of one step as a linear function of the batch size, t(b) = a + c*b,
// over a sliding window of recent (batch, seconds) samples.
//
// The intercept a is the fixed per-step cost (kernel launches, small layers),
// the slope c the cost per sample. An intercept is only identifiable when the
// window holds clearly different batch sizes; until then (for example a
// single-sample history, or every step at the same batch) the fit goes
// through the origin, t(b) = c*b with c = mean(t) / mean(b), which is exactly
// right for the throughput the worker showed at that batch.
//
// Thread safety: a plain value type; not synchronized.
#ifndef STELLA_RUNTIME_TUNER_FIT_H_
#define STELLA_RUNTIME_TUNER_FIT_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace stella {
namespace tuner {

// t(b) = a + c*b seconds. A fit always has c > 0 and a >= 0.
struct LinearModel {
  double a = 0.0;  // seconds per step independent of the batch
  double c = 0.0;  // seconds per sample
  double Predict(double batch) const { return a + c * batch; }
};

// Batch sizes in the window must spread by at least this fraction of their
// mean before an intercept is fitted: with two close batch sizes (32 and 33)
// measurement noise would dominate the slope.
inline constexpr double kMinRelativeBatchSpread = 0.1;

class WindowedLinearFit {
 public:
  // `window` >= 1: how many of the most recent samples the fit uses.
  explicit WindowedLinearFit(size_t window);

  // Adds one sample; the oldest one leaves when the window is full.
  // Requires batch > 0 and seconds > 0, both finite (the caller validates).
  void Add(double batch, double seconds);

  size_t size() const { return samples_.size(); }
  size_t window() const { return window_; }

  // The window's (batch, seconds) samples, oldest first (for checkpoints:
  // Add-ing them in order to a fresh fit restores it).
  std::vector<std::pair<double, double>> samples() const;

  // The least-squares model over the window; nullopt while it is empty.
  // Falls back to a fit through the origin when the batch sizes do not
  // spread enough (kMinRelativeBatchSpread) or when the unconstrained fit is
  // not physical (c <= 0 or a < 0).
  std::optional<LinearModel> Fit() const;

 private:
  struct Sample {
    double batch;
    double seconds;
  };
  size_t window_;
  std::deque<Sample> samples_;
};

}  // namespace tuner
}  // namespace stella

#endif  // STELLA_RUNTIME_TUNER_FIT_H_
