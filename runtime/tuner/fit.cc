#include "runtime/tuner/fit.h"

#include <algorithm>
#include <cmath>

#include "src/base/status.h"

namespace stella {
namespace tuner {

WindowedLinearFit::WindowedLinearFit(size_t window) : window_(window) { STELLA_CHECK(window_ >= 1); }

void WindowedLinearFit::Add(double batch, double seconds) {
  STELLA_CHECK(batch > 0.0 && std::isfinite(batch));
  STELLA_CHECK(seconds > 0.0 && std::isfinite(seconds));
  samples_.push_back({batch, seconds});
  while (samples_.size() > window_) samples_.pop_front();
}

std::vector<std::pair<double, double>> WindowedLinearFit::samples() const {
  std::vector<std::pair<double, double>> out;
  for (const Sample& s : samples_) out.emplace_back(s.batch, s.seconds);
  return out;
}

std::optional<LinearModel> WindowedLinearFit::Fit() const {
  if (samples_.empty()) return std::nullopt;
  const double n = static_cast<double>(samples_.size());
  double sum_b = 0.0, sum_t = 0.0, sum_bb = 0.0, sum_bt = 0.0;
  double min_b = samples_.front().batch, max_b = samples_.front().batch;
  for (const Sample& s : samples_) {
    sum_b += s.batch;
    sum_t += s.seconds;
    sum_bb += s.batch * s.batch;
    sum_bt += s.batch * s.seconds;
    min_b = std::min(min_b, s.batch);
    max_b = std::max(max_b, s.batch);
  }
  const double mean_b = sum_b / n;
  const double mean_t = sum_t / n;
  // Through the origin: minimizes sum (t - c*b)^2; with one batch size this is
  // mean(t) / b.
  LinearModel origin;
  origin.a = 0.0;
  origin.c = sum_bt / sum_bb;

  if (max_b - min_b < kMinRelativeBatchSpread * mean_b) return origin;
  double s_bb = 0.0, s_bt = 0.0;
  for (const Sample& s : samples_) {
    s_bb += (s.batch - mean_b) * (s.batch - mean_b);
    s_bt += (s.batch - mean_b) * (s.seconds - mean_t);
  }
  LinearModel full;
  full.c = s_bt / s_bb;
  full.a = mean_t - full.c * mean_b;
  if (!(full.c > 0.0) || !(full.a >= 0.0) || !std::isfinite(full.a)) return origin;
  return full;
}

}  // namespace tuner
}  // namespace stella
