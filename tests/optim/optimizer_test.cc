#include "runtime/optim/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace stella {
namespace optim {
namespace {

// ---------------------------------------------------------------------------
// A straightforward scalar reference: one element at a time, the PyTorch 1.13
// formulas written out plainly (double hyperparameters rounded to float where
// ATen rounds its Scalars).
// ---------------------------------------------------------------------------
struct Reference {
  OptimizerOptions o;
  std::vector<float> p, m, v;  // m: momentum buffer or exp_avg; v: exp_avg_sq
  int64_t step = 0;

  Reference(const OptimizerOptions& options, std::vector<float> params)
      : o(options), p(std::move(params)), m(p.size(), 0.0f), v(p.size(), 0.0f) {}

  // Applies one step to the listed (element, gradient) pairs only.
  void Step(const std::vector<std::pair<size_t, float>>& touched) {
    ++step;
    for (const auto& [i, grad] : touched) {
      if (o.name == "sgd") {
        float d = grad;
        if (o.weight_decay != 0) d = d + static_cast<float>(o.weight_decay) * p[i];
        if (o.momentum != 0) {
          const float mom = static_cast<float>(o.momentum);
          m[i] = step == 1 ? d : m[i] * mom + d;
          d = o.nesterov ? d + mom * m[i] : m[i];
        }
        p[i] = p[i] + static_cast<float>(-o.lr) * d;
      } else {
        float g = grad;
        if (o.name == "adamw") p[i] = p[i] * static_cast<float>(1 - o.lr * o.weight_decay);
        if (o.name == "adam" && o.weight_decay != 0) {
          g = g + static_cast<float>(o.weight_decay) * p[i];
        }
        m[i] = m[i] * static_cast<float>(o.beta1) + static_cast<float>(1 - o.beta1) * g;
        v[i] = v[i] * static_cast<float>(o.beta2) + static_cast<float>(1 - o.beta2) * g * g;
        const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
        const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
        const float denom = std::sqrt(v[i]) / static_cast<float>(std::sqrt(bc2)) + static_cast<float>(o.eps);
        p[i] = p[i] + static_cast<float>(-(o.lr / bc1)) * m[i] / denom;
      }
    }
  }
};

OptimizerOptions Sgd(double lr, double momentum, bool nesterov, double wd) {
  OptimizerOptions o;
  o.name = "sgd";
  o.lr = lr;
  o.momentum = momentum;
  o.nesterov = nesterov;
  o.weight_decay = wd;
  return o;
}

OptimizerOptions Adam(const std::string& name, double lr, double wd) {
  OptimizerOptions o;
  o.name = name;
  o.lr = lr;
  o.weight_decay = wd;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  return o;
}

std::vector<float> RandomVector(size_t n, std::mt19937* rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> out(n);
  for (float& x : out) x = dist(*rng);
  return out;
}

// Distinct, ascending block numbers in [0, num_blocks), about `fraction` of
// them; always includes the last block when include_last.
std::vector<uint32_t> RandomBlocks(size_t num_blocks, double fraction, bool include_last, std::mt19937* rng) {
  std::bernoulli_distribution pick(fraction);
  std::vector<uint32_t> out;
  for (size_t b = 0; b < num_blocks; ++b) {
    if (pick(*rng) || (include_last && b + 1 == num_blocks)) out.push_back(static_cast<uint32_t>(b));
  }
  return out;
}

// The state buffer the reference keeps in m, as the optimizer exposes it.
bool KeepsFirstMoment(const OptimizerOptions& o) { return o.name != "sgd" || o.momentum != 0; }

void ExpectMatchesReference(const TensorOptimizer& opt, const std::vector<float>& param, const Reference& ref,
                            const std::string& where) {
  ASSERT_EQ(opt.step(), ref.step) << where;
  for (size_t i = 0; i < param.size(); ++i) {
    ASSERT_EQ(param[i], ref.p[i]) << where << ": param[" << i << "]";
  }
  if (KeepsFirstMoment(ref.o)) {
    ASSERT_EQ(opt.first_moment().size(), param.size());
    for (size_t i = 0; i < param.size(); ++i) {
      ASSERT_EQ(opt.first_moment()[i], ref.m[i]) << where << ": first_moment[" << i << "]";
    }
  } else {
    EXPECT_TRUE(opt.first_moment().empty());
  }
  if (ref.o.name != "sgd") {
    for (size_t i = 0; i < param.size(); ++i) {
      ASSERT_EQ(opt.second_moment()[i], ref.v[i]) << where << ": second_moment[" << i << "]";
    }
  } else {
    EXPECT_TRUE(opt.second_moment().empty());
  }
}

std::unique_ptr<TensorOptimizer> MakeOptimizer(const OptimizerOptions& o, size_t n) {
  auto opt = TensorOptimizer::Create(o, n);
  EXPECT_TRUE(opt.ok()) << opt.status().ToString();
  return std::move(opt).value();
}

// Runs `steps` sparse steps with a fresh random block set each step and checks
// the optimizer against the reference after each, including that untouched
// parameters and state did not move.
void RunSparseAgainstReference(const OptimizerOptions& o, size_t n, uint32_t block_size, int steps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> param = RandomVector(n, &rng);
  Reference ref(o, param);
  auto opt = MakeOptimizer(o, n);
  const size_t num_blocks = (n + block_size - 1) / block_size;
  for (int s = 0; s < steps; ++s) {
    // Vary the density; every other step includes the (short) last block.
    std::vector<uint32_t> blocks = RandomBlocks(num_blocks, 0.1 + 0.1 * (s % 4), s % 2 == 0, &rng);
    std::vector<float> values;
    std::vector<std::pair<size_t, float>> touched;
    std::vector<bool> is_touched(n, false);
    for (uint32_t b : blocks) {
      size_t start = static_cast<size_t>(b) * block_size;
      size_t end = std::min(start + block_size, n);
      for (size_t i = start; i < end; ++i) {
        float g = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
        values.push_back(g);
        touched.emplace_back(i, g);
        is_touched[i] = true;
      }
    }
    const std::vector<float> param_before = param;
    const OptimizerState state_before = opt->SaveState();

    Status st = opt->StepSparse(param.data(), blocks.data(), blocks.size(), block_size, values.data());
    ASSERT_TRUE(st.ok()) << st.ToString();
    ref.Step(touched);
    const std::string where = o.name + " bs=" + std::to_string(block_size) + " step " + std::to_string(s + 1);
    ExpectMatchesReference(*opt, param, ref, where);

    // Laziness, checked directly against the previous step's values.
    size_t changed = 0;
    for (size_t i = 0; i < n; ++i) {
      if (is_touched[i]) {
        changed += param[i] != param_before[i];
        continue;
      }
      ASSERT_EQ(param[i], param_before[i]) << where << ": untouched param " << i << " moved";
      if (!state_before.first_moment.empty()) {
        ASSERT_EQ(opt->first_moment()[i], state_before.first_moment[i]) << where << " " << i;
      }
      if (!state_before.second_moment.empty()) {
        ASSERT_EQ(opt->second_moment()[i], state_before.second_moment[i]) << where << " " << i;
      }
    }
    if (!touched.empty()) {
      EXPECT_GT(changed, touched.size() / 2) << where << ": touched params barely moved";
    }
  }
}

std::vector<OptimizerOptions> AllConfigs() {
  return {Sgd(0.1, 0, false, 0),      Sgd(0.1, 0.9, false, 0),     Sgd(0.05, 0.9, true, 0), Sgd(0.1, 0, false, 1e-2),
          Sgd(0.05, 0.8, true, 1e-3), Sgd(0.05, 0.9, false, 5e-4), Adam("adam", 1e-2, 0),   Adam("adam", 1e-2, 1e-2),
          Adam("adamw", 1e-2, 1e-2),  Adam("adamw", 1e-3, 0)};
}

std::string Describe(const OptimizerOptions& o) {
  return o.name + " lr=" + std::to_string(o.lr) + " momentum=" + std::to_string(o.momentum) +
         (o.nesterov ? " nesterov" : "") + " wd=" + std::to_string(o.weight_decay);
}

TEST(TensorOptimizerTest, SparseElementsMatchReferenceAndAreLazy) {
  for (const OptimizerOptions& o : AllConfigs()) {
    SCOPED_TRACE(Describe(o));
    RunSparseAgainstReference(o, 1003, 1, 6, 11);
  }
}

TEST(TensorOptimizerTest, SparseBlocksOf16WithTailMatchReference) {
  for (const OptimizerOptions& o : AllConfigs()) {
    SCOPED_TRACE(Describe(o));
    RunSparseAgainstReference(o, 16 * 40 + 5, 16, 6, 12);  // last block holds 5
  }
}

TEST(TensorOptimizerTest, SparseOtherBlockSizesMatchReference) {
  for (const OptimizerOptions& o : {Sgd(0.1, 0.9, true, 1e-3), Adam("adamw", 1e-2, 1e-2)}) {
    SCOPED_TRACE(Describe(o));
    RunSparseAgainstReference(o, 7 * 30 + 3, 7, 5, 13);
    RunSparseAgainstReference(o, 256, 64, 5, 14);  // exact multiple, no tail
  }
}

TEST(TensorOptimizerTest, DenseMatchesReference) {
  for (const OptimizerOptions& o : AllConfigs()) {
    SCOPED_TRACE(Describe(o));
    const size_t n = 1037;  // not a multiple of any vector width
    std::mt19937 rng(21);
    std::vector<float> param = RandomVector(n, &rng);
    Reference ref(o, param);
    auto opt = MakeOptimizer(o, n);
    for (int s = 0; s < 8; ++s) {
      std::vector<float> grad = RandomVector(n, &rng, 2.0f);
      std::vector<std::pair<size_t, float>> all;
      for (size_t i = 0; i < n; ++i) all.emplace_back(i, grad[i]);
      opt->StepDense(param.data(), grad.data());
      ref.Step(all);
      ExpectMatchesReference(*opt, param, ref, "dense step " + std::to_string(s + 1));
    }
  }
}

TEST(TensorOptimizerTest, SparseCoveringEverythingEqualsDense) {
  for (const OptimizerOptions& o : AllConfigs()) {
    SCOPED_TRACE(Describe(o));
    const size_t n = 16 * 9 + 3;
    std::mt19937 rng(31);
    std::vector<float> dense_param = RandomVector(n, &rng);
    std::vector<float> sparse_param = dense_param;
    auto dense = MakeOptimizer(o, n);
    auto sparse = MakeOptimizer(o, n);
    std::vector<uint32_t> all_blocks(10);
    for (uint32_t b = 0; b < 10; ++b) all_blocks[b] = b;
    for (int s = 0; s < 4; ++s) {
      std::vector<float> grad = RandomVector(n, &rng);
      dense->StepDense(dense_param.data(), grad.data());
      ASSERT_TRUE(sparse->StepSparse(sparse_param.data(), all_blocks.data(), all_blocks.size(), 16, grad.data()).ok());
    }
    EXPECT_EQ(0, std::memcmp(dense_param.data(), sparse_param.data(), n * sizeof(float)));
    EXPECT_EQ(dense->first_moment(), sparse->first_moment());
    EXPECT_EQ(dense->second_moment(), sparse->second_moment());
  }
}

// Hand-computed values, independent of the reference above.
TEST(TensorOptimizerTest, KnownValues) {
  {
    // SGD momentum 0.5, lr 0.1, constant gradient 1: buf = 1, then 1.5.
    auto opt = MakeOptimizer(Sgd(0.1, 0.5, false, 0), 1);
    float p = 1.0f;
    const float g = 1.0f;
    opt->StepDense(&p, &g);
    EXPECT_FLOAT_EQ(p, 0.9f);
    opt->StepDense(&p, &g);
    EXPECT_FLOAT_EQ(p, 0.75f);
    EXPECT_FLOAT_EQ(opt->first_moment()[0], 1.5f);
  }
  {
    // Nesterov: first step d = g + 0.5 * buf = 1.5.
    auto opt = MakeOptimizer(Sgd(0.1, 0.5, true, 0), 1);
    float p = 1.0f;
    const float g = 1.0f;
    opt->StepDense(&p, &g);
    EXPECT_FLOAT_EQ(p, 0.85f);
  }
  {
    // Adam's first step moves each parameter by ~lr against its gradient sign.
    auto opt = MakeOptimizer(Adam("adam", 0.01, 0), 3);
    float p[3] = {1.0f, 1.0f, -2.0f};
    const float g[3] = {0.5f, -3.0f, 1e-2f};
    opt->StepDense(p, g);
    EXPECT_NEAR(p[0], 0.99f, 1e-6);
    EXPECT_NEAR(p[1], 1.01f, 1e-6);
    EXPECT_NEAR(p[2], -2.01f, 1e-5);
  }
  {
    // AdamW with zero gradient only decays: p * (1 - lr * wd).
    auto opt = MakeOptimizer(Adam("adamw", 0.1, 0.5), 1);
    float p = 2.0f;
    const float g = 0.0f;
    opt->StepDense(&p, &g);
    EXPECT_FLOAT_EQ(p, 1.9f);
  }
}

TEST(TensorOptimizerTest, InvalidSparseInputIsRejectedAndChangesNothing) {
  const size_t n = 16 * 4 + 2;  // 5 blocks of 16
  OptimizerOptions o = Adam("adam", 1e-2, 0);
  auto opt = MakeOptimizer(o, n);
  std::vector<float> param(n, 1.0f);
  std::vector<float> values(16 * 3, 0.5f);
  // A valid step first so that the state is non-trivial.
  const uint32_t good[] = {0, 4};
  ASSERT_TRUE(opt->StepSparse(param.data(), good, 2, 16, values.data()).ok());
  const std::vector<float> param_before = param;
  const OptimizerState state_before = opt->SaveState();

  struct Case {
    std::vector<uint32_t> indices;
    uint32_t block_size;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{0, 5}, 16, "index 5 at position 1 is out of range"},
      {{66}, 1, "index 66 at position 0 is out of range"},
      {{2, 1}, 16, "strictly ascending, got 1 at position 1 after 2"},
      {{1, 1}, 16, "strictly ascending"},
      {{0}, 0, "block_size must be >= 1"},
      {{0xFFFFFFFFu}, 16, "out of range"},
  };
  for (const Case& c : cases) {
    Status st = opt->StepSparse(param.data(), c.indices.data(), c.indices.size(), c.block_size, values.data());
    ASSERT_FALSE(st.ok()) << c.expect;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << st.message();
  }
  EXPECT_EQ(opt->step(), 1);
  EXPECT_EQ(param, param_before);
  EXPECT_EQ(opt->first_moment(), state_before.first_moment);
  EXPECT_EQ(opt->second_moment(), state_before.second_moment);
}

TEST(TensorOptimizerTest, EmptySparseStepOnlyAdvancesTheStep) {
  auto opt = MakeOptimizer(Adam("adam", 1e-2, 1e-2), 10);
  std::vector<float> param(10, 3.0f);
  ASSERT_TRUE(opt->StepSparse(param.data(), nullptr, 0, 16, nullptr).ok());
  EXPECT_EQ(opt->step(), 1);
  EXPECT_EQ(param, std::vector<float>(10, 3.0f));
  EXPECT_EQ(opt->first_moment(), std::vector<float>(10, 0.0f));
}

TEST(TensorOptimizerTest, ThreadedResultsAreBitIdentical) {
  ThreadPool::Options pool_options;
  pool_options.num_threads = 3;
  auto pool_or = ThreadPool::Create(pool_options);
  ASSERT_TRUE(pool_or.ok());
  ThreadPool* pool = pool_or->get();

  const size_t n = 300007;
  for (const OptimizerOptions& o : {Sgd(0.05, 0.9, true, 1e-4), Adam("adam", 1e-3, 1e-2), Adam("adamw", 1e-3, 1e-2)}) {
    SCOPED_TRACE(Describe(o));
    std::mt19937 rng(41);
    std::vector<float> p_single = RandomVector(n, &rng);
    std::vector<float> p_multi = p_single;
    auto single = MakeOptimizer(o, n);
    auto multi = MakeOptimizer(o, n);
    for (int s = 0; s < 3; ++s) {
      std::vector<float> grad = RandomVector(n, &rng);
      single->StepDense(p_single.data(), grad.data());
      multi->StepDense(p_multi.data(), grad.data(), pool);
      for (uint32_t block_size : {1u, 16u}) {
        const size_t num_blocks = (n + block_size - 1) / block_size;
        std::vector<uint32_t> blocks = RandomBlocks(num_blocks, 0.4, true, &rng);
        ASSERT_GE(blocks.size() * block_size, kParallelThreshold);  // takes the threaded path
        std::vector<float> values = RandomVector(blocks.size() * block_size, &rng);
        ASSERT_TRUE(single->StepSparse(p_single.data(), blocks.data(), blocks.size(), block_size, values.data()).ok());
        ASSERT_TRUE(
            multi->StepSparse(p_multi.data(), blocks.data(), blocks.size(), block_size, values.data(), pool).ok());
      }
    }
    EXPECT_EQ(0, std::memcmp(p_single.data(), p_multi.data(), n * sizeof(float)));
    EXPECT_EQ(single->first_moment(), multi->first_moment());
    EXPECT_EQ(single->second_moment(), multi->second_moment());
  }
}

TEST(TensorOptimizerTest, SaveAndLoadStateResumesExactly) {
  for (const OptimizerOptions& o : AllConfigs()) {
    SCOPED_TRACE(Describe(o));
    const size_t n = 77;
    std::mt19937 rng(51);
    std::vector<float> p = RandomVector(n, &rng);
    auto a = MakeOptimizer(o, n);
    for (int s = 0; s < 3; ++s) a->StepDense(p.data(), RandomVector(n, &rng).data());

    auto b = MakeOptimizer(o, n);
    ASSERT_TRUE(b->LoadState(a->SaveState()).ok());
    EXPECT_EQ(b->step(), 3);
    std::vector<float> pa = p;
    std::vector<float> pb = p;
    for (int s = 0; s < 2; ++s) {
      std::vector<float> g = RandomVector(n, &rng);
      a->StepDense(pa.data(), g.data());
      b->StepDense(pb.data(), g.data());
    }
    EXPECT_EQ(pa, pb);
    EXPECT_EQ(a->first_moment(), b->first_moment());
  }
}

TEST(TensorOptimizerTest, LoadStateRejectsWrongShapes) {
  auto adam = MakeOptimizer(Adam("adam", 1e-3, 0), 8);
  OptimizerState bad;
  bad.step = 2;
  bad.first_moment.assign(8, 1.0f);
  bad.second_moment.assign(7, 1.0f);
  Status st = adam->LoadState(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("second_moment of a adam tensor of 8 elements must hold 8 floats, got 7"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(adam->step(), 0);
  EXPECT_EQ(adam->first_moment(), std::vector<float>(8, 0.0f));

  bad.second_moment.assign(8, 1.0f);
  bad.step = -1;
  EXPECT_FALSE(adam->LoadState(bad).ok());

  auto sgd = MakeOptimizer(Sgd(0.1, 0, false, 0), 8);  // keeps no state
  OptimizerState with_buffer;
  with_buffer.first_moment.assign(8, 0.0f);
  EXPECT_FALSE(sgd->LoadState(with_buffer).ok());
  EXPECT_TRUE(sgd->LoadState(OptimizerState{5, {}, {}}).ok());
  EXPECT_EQ(sgd->step(), 5);
}

TEST(TensorOptimizerTest, SetLearningRateAppliesToLaterSteps) {
  auto opt = MakeOptimizer(Sgd(0.1, 0, false, 0), 1);
  float p = 1.0f;
  const float g = 1.0f;
  ASSERT_TRUE(opt->SetLearningRate(0.25).ok());
  opt->StepDense(&p, &g);
  EXPECT_FLOAT_EQ(p, 0.75f);
  EXPECT_FALSE(opt->SetLearningRate(0).ok());
  EXPECT_FALSE(opt->SetLearningRate(std::nan("")).ok());
  EXPECT_EQ(opt->options().lr, 0.25);
}

TEST(OptimizerOptionsTest, ValidationNamesTheField) {
  struct Case {
    OptimizerOptions o;
    std::string expect;
  };
  auto with = [](OptimizerOptions o, auto mutate) {
    mutate(o);
    return o;
  };
  const OptimizerOptions sgd = Sgd(0.1, 0.9, false, 0);
  const OptimizerOptions adam = Adam("adam", 1e-3, 0);
  const std::vector<Case> cases = {
      {with(sgd, [](auto& o) { o.lr = -1; }), "optimizer.learningRate must be > 0 and finite, got -1"},
      {with(sgd, [](auto& o) { o.lr = 0; }), "optimizer.learningRate"},
      {with(sgd, [](auto& o) { o.lr = std::nan(""); }), "optimizer.learningRate"},
      {with(sgd, [](auto& o) { o.name = "rmsprop"; }),
       "optimizer.name must be one of sgd, adam, adamw, got \"rmsprop\""},
      {with(sgd, [](auto& o) { o.name = "Adam"; }), "optimizer.name"},
      {with(sgd, [](auto& o) { o.momentum = 1.0; }), "optimizer.momentum must be in [0, 1), got 1"},
      {with(sgd, [](auto& o) { o.momentum = -0.1; }), "optimizer.momentum"},
      {with(sgd,
            [](auto& o) {
              o.momentum = 0;
              o.nesterov = true;
            }),
       "optimizer.nesterov"},
      {with(sgd, [](auto& o) { o.weight_decay = -1e-4; }),
       "optimizer.weightDecay must be >= 0 and finite, got -0.0001"},
      {with(adam, [](auto& o) { o.beta1 = 1.0; }), "optimizer.beta1 must be in [0, 1), got 1"},
      {with(adam, [](auto& o) { o.beta2 = -0.5; }), "optimizer.beta2"},
      {with(adam, [](auto& o) { o.eps = -1e-8; }), "optimizer.eps"},
      {with(adam, [](auto& o) { o.momentum = 0.9; }), "optimizer.momentum applies only to sgd"},
      {with(adam, [](auto& o) { o.nesterov = true; }), "optimizer.nesterov applies only to sgd"},
  };
  for (const Case& c : cases) {
    Status st = ValidateOptimizerOptions(c.o);
    ASSERT_FALSE(st.ok()) << c.expect;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << st.message();
    auto created = TensorOptimizer::Create(c.o, 4);
    EXPECT_FALSE(created.ok());
  }
  EXPECT_TRUE(ValidateOptimizerOptions(OptimizerOptions{}).ok());
  EXPECT_TRUE(ValidateOptimizerOptions(sgd).ok());
  EXPECT_TRUE(ValidateOptimizerOptions(adam).ok());
  EXPECT_TRUE(ValidateOptimizerOptions(Adam("adamw", 1e-3, 1e-2)).ok());
}

TEST(TensorOptimizerTest, StateBuffersMatchTheKind) {
  auto plain = MakeOptimizer(Sgd(0.1, 0, false, 0), 5);
  EXPECT_EQ(plain->kind(), OptimizerKind::kSgd);
  EXPECT_TRUE(plain->first_moment().empty());
  auto mom = MakeOptimizer(Sgd(0.1, 0.9, false, 0), 5);
  EXPECT_EQ(mom->first_moment().size(), 5u);
  EXPECT_TRUE(mom->second_moment().empty());
  auto adamw = MakeOptimizer(Adam("adamw", 0.1, 0), 5);
  EXPECT_EQ(adamw->kind(), OptimizerKind::kAdamW);
  EXPECT_STREQ(OptimizerKindName(adamw->kind()), "adamw");
  EXPECT_EQ(adamw->first_moment().size(), 5u);
  EXPECT_EQ(adamw->second_moment().size(), 5u);
  EXPECT_EQ(adamw->size(), 5u);
}

}  // namespace
}  // namespace optim
}  // namespace stella
