// Tuner decisions on synthetic telemetry from a closed-loop job simulator:
// workers with known compute-time lines and gateways with known bandwidth
// report what running the tuner's current decision would measure.
#include "runtime/tuner/tuner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tuner/bytes_model.h"
#include "runtime/tuner/planner.h"

namespace stella {
namespace tuner {
namespace {

constexpr double kMbit = 1e6 / 8;  // bytes per second in one Mbit/s

// Deterministic noise in [-1, 1] (splitmix64), identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  double Uniform() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) / static_cast<double>(1ull << 53) * 2.0 - 1.0;
  }

 private:
  uint64_t state_;
};

// A ResNet-50-sized model: 25 tensors of 1M elements.
std::vector<uint64_t> ModelTensors() { return std::vector<uint64_t>(25, 1000000); }

TunerOptions DefaultOptions() {
  TunerOptions o;
  o.tensor_sizes = ModelTensors();
  o.min_density = 0.001;
  o.max_density = 0.1;
  o.initial_density = 0.01;
  return o;
}

struct SimWorker {
  int id;
  int cluster;
  LinearModel truth;
  int initial_batch;
};

// One job: the tuner plus the true system it observes.
class JobSim {
 public:
  JobSim(TunerOptions options, std::vector<SimWorker> workers, int clusters, uint64_t seed = 1)
      : options_(std::move(options)),
        workers_(std::move(workers)),
        clusters_(clusters),
        bandwidth_(static_cast<size_t>(clusters), 100 * kMbit),
        rng_(seed) {
    auto tuner = Tuner::Create(options_);
    EXPECT_TRUE(tuner.ok()) << tuner.status().ToString();
    tuner_ = std::move(tuner).value();
  }

  void SetBandwidth(int cluster, double bytes_per_s) { bandwidth_[static_cast<size_t>(cluster)] = bytes_per_s; }
  void SetAllBandwidth(double bytes_per_s) { std::fill(bandwidth_.begin(), bandwidth_.end(), bytes_per_s); }
  void set_goodput_noise(double n) { goodput_noise_ = n; }
  void set_compute_noise(double n) { compute_noise_ = n; }
  // Whether gateways report bytes sent (needed for overload detection).
  void set_report_bytes(bool b) { report_bytes_ = b; }

  int BatchOf(const SimWorker& w) const { return tuner_->current().BatchSizeFor(w.id).value_or(w.initial_batch); }
  // The true compute time of a step under the current decision.
  double TrueStepSeconds() const {
    double t = 0;
    for (const SimWorker& w : workers_) t = std::max(t, w.truth.Predict(BatchOf(w)));
    return t;
  }
  // Egress bytes per step of one gateway at `density`.
  double Egress(double density) const {
    return static_cast<double>(PayloadBytes(options_.bytes_model, options_.tensor_sizes, density)) * (clusters_ - 1);
  }
  // The true transfer time of the slowest link under the current decision.
  double TrueCommSeconds() const {
    const double slowest = *std::min_element(bandwidth_.begin(), bandwidth_.end());
    return Egress(tuner_->current().density) / slowest;
  }

  // One decision round: 10 steps ran under the current decision.
  Decision Round() {
    step_ += 10;
    Telemetry t;
    t.step = step_;
    t.num_clusters = clusters_;
    for (const SimWorker& w : workers_) {
      const int b = BatchOf(w);
      t.workers.push_back({w.id, w.cluster, b, w.truth.Predict(b) * (1.0 + compute_noise_ * rng_.Uniform())});
    }
    const double density = tuner_->current().density;
    for (int c = 0; c < clusters_; ++c) {
      LinkTelemetry l;
      l.cluster = c;
      l.goodput_bytes_per_s = bandwidth_[static_cast<size_t>(c)] * (1.0 + goodput_noise_ * rng_.Uniform());
      if (report_bytes_) {
        l.bytes_sent_last_step = static_cast<uint64_t>(Egress(density));
        l.density_last_step = density;
      }
      t.links.push_back(l);
    }
    auto d = tuner_->Decide(t);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    const Decision& now = tuner_->current();
    EXPECT_GE(now.density, options_.min_density);
    EXPECT_LE(now.density, options_.max_density);
    return now;
  }

  Tuner& tuner() { return *tuner_; }
  const TunerOptions& options() const { return options_; }

  // A restart: a fresh tuner that loads the current one's saved state.
  void RestartTunerFromSavedState() {
    const std::string state = tuner_->SaveState();
    auto fresh = Tuner::Create(options_);
    ASSERT_TRUE(fresh.ok());
    Status st = (*fresh)->LoadState(state);
    ASSERT_TRUE(st.ok()) << st.ToString();
    tuner_ = std::move(fresh).value();
  }

 private:
  TunerOptions options_;
  std::vector<SimWorker> workers_;
  int clusters_;
  std::vector<double> bandwidth_;
  Rng rng_;
  double goodput_noise_ = 0.0;
  double compute_noise_ = 0.0;
  bool report_bytes_ = true;
  int64_t step_ = 0;
  std::unique_ptr<Tuner> tuner_;
};

// Three clusters with one identical worker each: 0.3 s of compute per step.
std::vector<SimWorker> ThreeClusters() {
  return {{0, 0, {0.02, 0.004375}, 64}, {1, 1, {0.02, 0.004375}, 64}, {2, 2, {0.02, 0.004375}, 64}};
}

// True when the current density's transfer fits target_fraction of compute.
bool Fits(const JobSim& sim) {
  return sim.TrueCommSeconds() <= sim.options().target_fraction * sim.TrueStepSeconds() + 1e-12;
}

double SteadyDensity(double bandwidth_bytes_per_s, int rounds = 30) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  sim.SetAllBandwidth(bandwidth_bytes_per_s);
  for (int i = 0; i < rounds; ++i) sim.Round();
  return sim.tuner().current().density;
}

TEST(TunerOptionsTest, InvalidOptionsNameTheField) {
  struct Case {
    const char* field;
    void (*mutate)(TunerOptions*);
  };
  const Case cases[] = {
      {"tensor_sizes", [](TunerOptions* o) { o->tensor_sizes.clear(); }},
      {"tensor_sizes[1]", [](TunerOptions* o) { o->tensor_sizes[1] = 0; }},
      {"bytes_model.value_bytes", [](TunerOptions* o) { o->bytes_model.value_bytes = 0; }},
      {"min_density", [](TunerOptions* o) { o->min_density = 0; }},
      {"max_density", [](TunerOptions* o) { o->max_density = 0.0005; }},
      {"max_density", [](TunerOptions* o) { o->max_density = 1.5; }},
      {"initial_density", [](TunerOptions* o) { o->initial_density = 0.5; }},
      {"target_fraction", [](TunerOptions* o) { o->target_fraction = 0; }},
      {"hysteresis_band", [](TunerOptions* o) { o->hysteresis_band = -0.1; }},
      {"upward_cooldown_rounds", [](TunerOptions* o) { o->upward_cooldown_rounds = -1; }},
      {"overload_factor", [](TunerOptions* o) { o->overload_factor = 0; }},
      {"ewma_alpha", [](TunerOptions* o) { o->ewma_alpha = 0; }},
      {"ewma_alpha", [](TunerOptions* o) { o->ewma_alpha = NAN; }},
      {"grid_steps_per_decade", [](TunerOptions* o) { o->grid_steps_per_decade = 0; }},
      {"lead_steps", [](TunerOptions* o) { o->lead_steps = 0; }},
      {"global_batch", [](TunerOptions* o) { o->global_batch = -1; }},
      {"global_batch", [](TunerOptions* o) { o->global_batch = 100, o->batch_granularity = 8; }},
      {"batch_granularity", [](TunerOptions* o) { o->batch_granularity = 0; }},
      {"max_worker_batch", [](TunerOptions* o) { o->max_worker_batch = -2; }},
      {"replan_threshold", [](TunerOptions* o) { o->replan_threshold = 1.0; }},
      {"fit_window", [](TunerOptions* o) { o->fit_window = 0; }},
  };
  EXPECT_TRUE(Tuner::Create(DefaultOptions()).ok());
  for (const Case& c : cases) {
    TunerOptions o = DefaultOptions();
    c.mutate(&o);
    auto t = Tuner::Create(o);
    ASSERT_FALSE(t.ok()) << c.field;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(std::string("TunerOptions.") + c.field), std::string::npos)
        << t.status().message();
  }
}

TEST(TunerTest, InitialDecisionAndLead) {
  TunerOptions o = DefaultOptions();
  o.lead_steps = 3;
  auto tuner = Tuner::Create(o);
  ASSERT_TRUE(tuner.ok());
  EXPECT_EQ((*tuner)->current().round, 0u);
  EXPECT_EQ((*tuner)->current().density, 0.01);
  Telemetry t;
  t.step = 40;
  t.workers = {{5, 0, 32, 0.2}, {2, 0, 32, 0.2}};
  auto d = (*tuner)->Decide(t);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->round, 1u);
  EXPECT_EQ(d->apply_at_step, 43);
  EXPECT_EQ(d->worker_ids, (std::vector<int>{2, 5}));
  EXPECT_EQ(d->batch_sizes, (std::vector<int>{32, 32}));
  // One cluster: no WAN traffic, so the density goes to the upper bound.
  EXPECT_EQ(d->density, o.max_density);
  EXPECT_NE(d->ToLogLine().find("round=1"), std::string::npos);
}

TEST(TunerTest, SlowLinkGetsLowerDensityThanFastLink) {
  const double slow = SteadyDensity(20 * kMbit);
  const double fast = SteadyDensity(200 * kMbit);
  EXPECT_LT(slow, fast / 5);  // bytes are ~linear in density: ~10x apart
  EXPECT_GT(slow, DefaultOptions().min_density);
  EXPECT_LT(fast, DefaultOptions().max_density);
}

TEST(TunerTest, DensityFitsTheLinkWithTheHysteresisMargin) {
  for (double mbit : {15.0, 40.0, 100.0, 300.0}) {
    JobSim sim(DefaultOptions(), ThreeClusters(), 3);
    sim.SetAllBandwidth(mbit * kMbit);
    for (int i = 0; i < 30; ++i) sim.Round();
    const double d = sim.tuner().current().density;
    const double feasible =
        FeasibleDensity(DefaultOptions().bytes_model, ModelTensors(), 2, mbit * kMbit, 0.9 * sim.TrueStepSeconds());
    EXPECT_TRUE(Fits(sim)) << mbit;
    EXPECT_LE(d, feasible / 1.2) << mbit;
    // At most one grid step (10^0.1) below the margin point.
    EXPECT_GE(d, feasible / 1.2 / std::pow(10.0, 0.1) * (1 - 1e-9)) << mbit;
  }
}

TEST(TunerTest, FastLinkHitsTheUpperBoundAndHopelessLinkTheLowerBound) {
  EXPECT_EQ(SteadyDensity(100000 * kMbit), DefaultOptions().max_density);
  EXPECT_EQ(SteadyDensity(0.01 * kMbit), DefaultOptions().min_density);
}

TEST(TunerTest, SlowestLinkSetsTheJobDensity) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  sim.SetAllBandwidth(500 * kMbit);
  sim.SetBandwidth(1, 25 * kMbit);
  for (int i = 0; i < 30; ++i) sim.Round();
  EXPECT_EQ(sim.tuner().current().density, SteadyDensity(25 * kMbit));
  EXPECT_TRUE(Fits(sim));
  TunerState s = sim.tuner().state();
  ASSERT_EQ(s.links.size(), 3u);
  EXPECT_LT(s.links[1].feasible_density, s.links[0].feasible_density);
  EXPECT_NEAR(s.links[1].smoothed_goodput_bytes_per_s, 25 * kMbit, 1.0);
}

TEST(TunerTest, NoisyGoodputDoesNotOscillate) {
  // +-15% goodput noise and +-3% compute noise around fixed means, including
  // means that put the feasible density right at a grid point.
  for (double mbit : {12.0, 20.0, 31.0, 47.0, 63.0, 100.0, 158.0}) {
    JobSim sim(DefaultOptions(), ThreeClusters(), 3, /*seed=*/static_cast<uint64_t>(mbit));
    sim.SetAllBandwidth(mbit * kMbit);
    sim.set_goodput_noise(0.15);
    sim.set_compute_noise(0.03);
    for (int i = 0; i < 20; ++i) sim.Round();  // warm-up
    double last = sim.tuner().current().density;
    int changes = 0;
    for (int i = 0; i < 200; ++i) {
      const double d = sim.Round().density;
      if (d != last) ++changes;
      last = d;
      EXPECT_TRUE(Fits(sim)) << mbit << " Mbit/s, round " << i;
    }
    EXPECT_LE(changes, 1) << mbit << " Mbit/s";
  }
}

TEST(TunerTest, ReactsToBandwidthDropAndRecoveryWithinBoundedRounds) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  sim.set_goodput_noise(0.05);
  sim.SetAllBandwidth(100 * kMbit);
  for (int i = 0; i < 20; ++i) sim.Round();
  const double at100 = sim.tuner().current().density;
  ASSERT_TRUE(Fits(sim));

  // 100 -> 10 Mbit/s: the transfer overloads; must fit again within 3 rounds.
  sim.SetAllBandwidth(10 * kMbit);
  int rounds_to_fit = 0;
  while (!Fits(sim) && rounds_to_fit < 10) {
    sim.Round();
    ++rounds_to_fit;
  }
  EXPECT_GE(rounds_to_fit, 1);
  EXPECT_LE(rounds_to_fit, 3);
  EXPECT_LT(sim.tuner().current().density, at100 / 5);
  for (int i = 0; i < 20; ++i) {
    sim.Round();
    EXPECT_TRUE(Fits(sim));
  }
  const double at10 = sim.tuner().current().density;

  // 10 -> 50 Mbit/s: the EWMA and the cool-down delay the climb, boundedly:
  // within 12 rounds the density reaches its 50 Mbit/s steady value.
  sim.SetAllBandwidth(50 * kMbit);
  const double target = SteadyDensity(50 * kMbit);
  int rounds_to_recover = 0;
  while (sim.tuner().current().density < target && rounds_to_recover < 50) {
    sim.Round();
    ++rounds_to_recover;
    EXPECT_TRUE(Fits(sim));
  }
  EXPECT_LE(rounds_to_recover, 12);
  EXPECT_GT(sim.tuner().current().density, 3 * at10);
}

TEST(TunerTest, WithoutTransferMeasurementsADropIsFollowedWithinTheEwmaLag) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  sim.set_report_bytes(false);
  sim.SetAllBandwidth(100 * kMbit);
  for (int i = 0; i < 20; ++i) sim.Round();
  sim.SetAllBandwidth(10 * kMbit);
  // The smoothed goodput 10 + 90 * 0.7^k Mbit/s must come within the margin
  // of 10: about 11 rounds with ewma_alpha 0.3.
  int rounds_to_fit = 0;
  while (!Fits(sim) && rounds_to_fit < 30) {
    sim.Round();
    ++rounds_to_fit;
  }
  EXPECT_GT(rounds_to_fit, 3);  // slower than with overload detection
  EXPECT_LE(rounds_to_fit, 12);
  EXPECT_FALSE(sim.tuner().state().links[0].overloaded);
}

// Four workers in two clusters; worker 2 is 2x slower in every respect.
const LinearModel kFast{0.02, 0.004};
const LinearModel kSlow{0.04, 0.008};
std::vector<SimWorker> OneSlowWorker() {
  return {{0, 0, kFast, 64}, {1, 0, kFast, 64}, {2, 1, kSlow, 64}, {3, 1, kFast, 64}};
}
double TrueStep(const Decision& d) {
  double t = 0;
  for (int id = 0; id < 4; ++id) {
    t = std::max(t, (id == 2 ? kSlow : kFast).Predict(d.batch_sizes[static_cast<size_t>(id)]));
  }
  return t;
}

TEST(TunerTest, SlowWorkerGetsAboutHalfTheBatch) {
  TunerOptions o = DefaultOptions();
  // The first plan comes from fits through the origin (every sample at batch
  // 64) and is 3.7% from optimal; a small threshold lets the intercept fits
  // of round 2 replan it.
  o.replan_threshold = 0.02;
  JobSim sim(o, OneSlowWorker(), 2);
  for (int i = 0; i < 10; ++i) sim.Round();
  const Decision& d = sim.tuner().current();
  ASSERT_EQ(d.batch_sizes.size(), 4u);
  EXPECT_EQ(std::accumulate(d.batch_sizes.begin(), d.batch_sizes.end(), 0), 256);
  const double ratio = static_cast<double>(d.batch_sizes[2]) / d.batch_sizes[0];
  EXPECT_GT(ratio, 0.4);
  EXPECT_LT(ratio, 0.6);
  // True step times agree within one sample (granularity 1) of the slowest.
  double lo = 1e9, hi = 0;
  for (int id = 0; id < 4; ++id) {
    const double t = (id == 2 ? kSlow : kFast).Predict(d.batch_sizes[static_cast<size_t>(id)]);
    lo = std::min(lo, t);
    hi = std::max(hi, t);
  }
  EXPECT_LE(hi - lo, kSlow.c + 1e-9);
  // The fits recovered the true lines.
  TunerState s = sim.tuner().state();
  ASSERT_EQ(s.workers.size(), 4u);
  EXPECT_NEAR(s.workers[2].a, kSlow.a, 1e-9);
  EXPECT_NEAR(s.workers[2].c, kSlow.c, 1e-12);
  EXPECT_EQ(s.global_batch, 256);
}

TEST(TunerTest, DefaultReplanThresholdStaysWithinItsMarginOfOptimal) {
  JobSim sim(DefaultOptions(), OneSlowWorker(), 2);
  for (int i = 0; i < 10; ++i) sim.Round();
  const Decision& d = sim.tuner().current();
  auto optimal = PlanBatches({kFast, kFast, kSlow, kFast}, 256, 1, 0);
  ASSERT_TRUE(optimal.ok());
  EXPECT_LE(TrueStep(d), optimal->step_seconds / (1 - 0.05));
  const double ratio = static_cast<double>(d.batch_sizes[2]) / d.batch_sizes[0];
  EXPECT_GT(ratio, 0.4);
  EXPECT_LT(ratio, 0.6);
}

TEST(TunerTest, IdenticalWorkersSplitEquallyAndNeverReplan) {
  TunerOptions o = DefaultOptions();
  o.global_batch = 256;
  const LinearModel m{0.02, 0.004};
  JobSim sim(o, {{0, 0, m, 64}, {1, 0, m, 64}, {2, 1, m, 64}, {3, 1, m, 64}}, 2);
  sim.Round();  // one exact sample each: equal speeds
  EXPECT_EQ(sim.tuner().current().batch_sizes, (std::vector<int>{64, 64, 64, 64}));
  const uint64_t replans = sim.tuner().state().batch_replans;
  sim.set_compute_noise(0.03);  // noise alone must not reshuffle an optimal plan
  for (int i = 0; i < 100; ++i) sim.Round();
  EXPECT_EQ(sim.tuner().current().batch_sizes, (std::vector<int>{64, 64, 64, 64}));
  EXPECT_EQ(sim.tuner().state().batch_replans, replans);
}

TEST(TunerTest, IdenticalWorkersFromUnevenBatchesEndNearEqual) {
  TunerOptions o = DefaultOptions();
  o.global_batch = 256;
  const LinearModel m{0.02, 0.004};
  // Reported batches are uneven at first (e.g. from a previous plan); the
  // intercept makes the first fits through the origin see different speeds.
  JobSim sim(o, {{0, 0, m, 100}, {1, 0, m, 56}, {2, 1, m, 50}, {3, 1, m, 50}}, 2);
  for (int i = 0; i < 10; ++i) sim.Round();
  const Decision& d = sim.tuner().current();
  EXPECT_EQ(std::accumulate(d.batch_sizes.begin(), d.batch_sizes.end(), 0), 256);
  for (int b : d.batch_sizes) {
    EXPECT_LE(m.Predict(b), m.Predict(64) / (1 - o.replan_threshold)) << b;
  }
}

TEST(TunerTest, NoisyComputeOnHeterogeneousWorkersReplansRarely) {
  TunerOptions o = DefaultOptions();
  o.batch_granularity = 4;
  const LinearModel fast{0.02, 0.004};
  const LinearModel slow{0.03, 0.007};
  JobSim sim(o, {{0, 0, fast, 64}, {1, 0, slow, 64}, {2, 1, fast, 64}, {3, 1, slow, 64}}, 2);
  sim.set_compute_noise(0.05);
  for (int i = 0; i < 20; ++i) sim.Round();
  const uint64_t replans = sim.tuner().state().batch_replans;
  for (int i = 0; i < 200; ++i) {
    const Decision d = sim.Round();
    EXPECT_EQ(std::accumulate(d.batch_sizes.begin(), d.batch_sizes.end(), 0), 256);
    for (int b : d.batch_sizes) EXPECT_EQ(b % 4, 0);
  }
  EXPECT_LE(sim.tuner().state().batch_replans - replans, 2u);
  const Decision& d = sim.tuner().current();
  EXPECT_GT(d.batch_sizes[0], d.batch_sizes[1]);
}

TEST(TunerTest, WorkerLeavingKeepsTheGlobalBatch) {
  auto tuner = Tuner::Create(DefaultOptions());
  ASSERT_TRUE(tuner.ok());
  Telemetry t;
  t.step = 10;
  t.workers = {{0, 0, 64, 0.3}, {1, 0, 64, 0.3}, {2, 0, 64, 0.3}, {3, 0, 64, 0.3}};
  ASSERT_TRUE((*tuner)->Decide(t).ok());
  t.step = 20;
  t.workers.pop_back();  // worker 3 is gone; the others still run 64
  auto d = (*tuner)->Decide(t);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->worker_ids, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(std::accumulate(d->batch_sizes.begin(), d->batch_sizes.end(), 0), 256);
  EXPECT_EQ((*tuner)->state().workers.size(), 3u);
}

TEST(TunerTest, BadTelemetryIsRejectedAndChangesNothing) {
  TunerOptions o = DefaultOptions();
  o.global_batch = 128;
  o.max_worker_batch = 64;
  auto tuner = Tuner::Create(o);
  ASSERT_TRUE(tuner.ok());
  Telemetry good;
  good.step = 10;
  good.num_clusters = 2;
  good.workers = {{0, 0, 64, 0.3}, {1, 1, 64, 0.3}};
  good.links = {{0, 50 * kMbit, 0, 0, 0}, {1, 50 * kMbit, 0, 0, 0}};
  ASSERT_TRUE((*tuner)->Decide(good).ok());
  const std::vector<uint8_t> before = [&] {
    std::vector<uint8_t> f;
    EXPECT_TRUE(EncodeDecision((*tuner)->current(), &f).ok());
    return f;
  }();

  struct Case {
    const char* needle;
    StatusCode code;
    void (*mutate)(Telemetry*);
  };
  const Case cases[] = {
      {"telemetry.step", StatusCode::kInvalidArgument, [](Telemetry* t) { t->step = 5; }},
      {"num_clusters", StatusCode::kInvalidArgument, [](Telemetry* t) { t->num_clusters = 0; }},
      {"telemetry.workers", StatusCode::kInvalidArgument, [](Telemetry* t) { t->workers.clear(); }},
      {"workers[1].id", StatusCode::kInvalidArgument, [](Telemetry* t) { t->workers[1].id = 0; }},
      {"workers[1].cluster", StatusCode::kInvalidArgument, [](Telemetry* t) { t->workers[1].cluster = 2; }},
      {"workers[0].batch_size", StatusCode::kInvalidArgument, [](Telemetry* t) { t->workers[0].batch_size = 0; }},
      {"workers[0].compute_seconds", StatusCode::kInvalidArgument,
       [](Telemetry* t) { t->workers[0].compute_seconds = -1; }},
      {"links[1].cluster", StatusCode::kInvalidArgument, [](Telemetry* t) { t->links[1].cluster = 0; }},
      {"links[0].goodput", StatusCode::kInvalidArgument,
       [](Telemetry* t) { t->links[0].goodput_bytes_per_s = INFINITY; }},
      {"links[0].density_last_step", StatusCode::kInvalidArgument,
       [](Telemetry* t) { t->links[0].density_last_step = 2; }},
      // One worker cannot carry 128 samples when capped at 64.
      {"global batch", StatusCode::kFailedPrecondition, [](Telemetry* t) { t->workers.pop_back(); }},
  };
  for (const Case& c : cases) {
    Telemetry bad = good;
    bad.step = 20;
    c.mutate(&bad);
    auto d = (*tuner)->Decide(bad);
    ASSERT_FALSE(d.ok()) << c.needle;
    EXPECT_EQ(d.status().code(), c.code) << d.status().ToString();
    EXPECT_NE(d.status().message().find(c.needle), std::string::npos) << d.status().message();
  }
  std::vector<uint8_t> after;
  ASSERT_TRUE(EncodeDecision((*tuner)->current(), &after).ok());
  EXPECT_EQ(after, before);
  EXPECT_EQ((*tuner)->state().round, 1u);
}

TEST(TunerTest, SameTelemetryGivesTheSameDecisions) {
  auto run = [] {
    JobSim sim(DefaultOptions(), ThreeClusters(), 3, /*seed=*/7);
    sim.set_goodput_noise(0.15);
    sim.set_compute_noise(0.05);
    std::vector<std::string> lines;
    for (int i = 0; i < 50; ++i) {
      if (i == 25) sim.SetAllBandwidth(30 * kMbit);
      lines.push_back(sim.Round().ToLogLine());
    }
    return lines;
  };
  EXPECT_EQ(run(), run());
}

// A tuner restarted from its saved state (fits, filters, cooldowns, the
// current decision) decides exactly as the uninterrupted one, through a
// bandwidth drop and heterogeneous batch replans.
TEST(TunerTest, SavedStateContinuesTheSameDecisions) {
  auto run = [](int restart_at) {
    std::vector<SimWorker> workers = {{0, 0, {0.01, 0.002}, 64}, {1, 0, {0.01, 0.005}, 64}, {2, 1, {0.02, 0.003}, 64}};
    JobSim sim(DefaultOptions(), workers, 2, /*seed=*/11);
    sim.set_goodput_noise(0.1);
    sim.set_compute_noise(0.05);
    std::vector<std::string> lines;
    for (int i = 0; i < 40; ++i) {
      if (i == restart_at) sim.RestartTunerFromSavedState();
      if (i == 15) sim.SetAllBandwidth(20 * kMbit);
      std::string line = sim.Round().ToLogLine();
      // The filters' exact values too: decisions on a grid could hide a drift.
      const TunerState st = sim.tuner().state();
      char buf[64];
      for (const auto& l : st.links) {
        std::snprintf(buf, sizeof(buf), " goodput%d=%.17g", l.cluster, l.smoothed_goodput_bytes_per_s);
        line += buf;
      }
      for (const auto& w : st.workers) {
        std::snprintf(buf, sizeof(buf), " fit%d=%.17g,%.17g", w.id, w.a, w.c);
        line += buf;
      }
      lines.push_back(line);
    }
    EXPECT_GT(sim.tuner().state().batch_replans, 0u);
    return lines;
  };
  const auto whole = run(-1);
  EXPECT_EQ(run(12), whole);
  EXPECT_EQ(run(25), whole);
}

TEST(TunerTest, LoadStateRejectsMalformedBytesAndChangesNothing) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  for (int i = 0; i < 5; ++i) sim.Round();
  const std::string good = sim.tuner().SaveState();
  auto fresh = Tuner::Create(DefaultOptions());
  ASSERT_TRUE(fresh.ok());
  const std::string before = (*fresh)->SaveState();
  for (size_t n : {size_t{0}, size_t{3}, good.size() / 2, good.size() - 1}) {
    Status st = (*fresh)->LoadState(good.substr(0, n));
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << n;
    EXPECT_NE(st.message().find("tuner state"), std::string::npos) << st.message();
  }
  EXPECT_EQ((*fresh)->LoadState(good + "x").code(), StatusCode::kDataLoss);
  EXPECT_EQ((*fresh)->SaveState(), before);
  EXPECT_TRUE((*fresh)->LoadState(good).ok());
  EXPECT_EQ((*fresh)->SaveState(), good);
}

TEST(TunerTest, DecisionsSurviveTheControlFrame) {
  JobSim sim(DefaultOptions(), ThreeClusters(), 3);
  for (int i = 0; i < 5; ++i) {
    const Decision d = sim.Round();
    std::vector<uint8_t> frame;
    ASSERT_TRUE(EncodeDecision(d, &frame).ok());
    auto back = DecodeDecision(frame.data(), frame.size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->ToLogLine(), d.ToLogLine());
  }
}

}  // namespace
}  // namespace tuner
}  // namespace stella
