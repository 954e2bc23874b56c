// The per-tensor pipeline's gradient path: the autograd hooks must deliver
// exactly the gradients CopyGradientsTo reads after a plain ForwardBackward,
// each tensor once, in reverse model order, and the layer gate must run
// before each layer with that layer's tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/compute/trainer.h"

namespace stella::compute {
namespace {

data::Dataset MakeData() {
  data::Dataset d;
  d.size = 64;
  d.rows = 16;
  d.cols = 16;
  d.num_classes = 10;
  d.images.resize(static_cast<size_t>(d.size * d.rows * d.cols));
  d.labels.resize(static_cast<size_t>(d.size));
  for (size_t i = 0; i < d.images.size(); ++i) d.images[i] = static_cast<uint8_t>((i * 37 + i / 7) % 256);
  for (size_t i = 0; i < d.labels.size(); ++i) d.labels[i] = static_cast<uint8_t>((i * 3) % 10);
  return d;
}

void CheckHookPath(const std::string& model) {
  TrainerOptions o;
  o.model = model;
  o.device = "cpu";
  auto trainer_or = Trainer::Create(o, 16, 16, 10);
  ASSERT_TRUE(trainer_or.ok()) << trainer_or.status().ToString();
  Trainer& trainer = **trainer_or;
  const data::Dataset d = MakeData();
  const std::vector<int64_t> idx = {3, 1, 4, 15, 9, 26, 5, 35};
  const size_t n = static_cast<size_t>(trainer.num_parameters());
  const size_t tensors = trainer.tensor_sizes().size();

  auto loss_a = trainer.ForwardBackward(d, idx);
  ASSERT_TRUE(loss_a.ok()) << loss_a.status().ToString();
  std::vector<float> expected(n);
  trainer.CopyGradientsTo(expected.data());

  for (float scale : {1.0f, 0.5f}) {
    std::vector<float> got(n, -7.0f);
    std::vector<size_t> order;
    std::vector<std::vector<size_t>> gated;
    Trainer::GradientSink sink;
    sink.buffer = got.data();
    sink.scale = scale;
    sink.ready = [&](size_t i) { order.push_back(i); };
    auto gate = [&](const std::vector<size_t>& t) {
      gated.push_back(t);
      return Status::Ok();
    };
    auto loss_b = trainer.ForwardBackwardPipelined(d, idx, gate, sink);
    ASSERT_TRUE(loss_b.ok()) << loss_b.status().ToString();
    EXPECT_EQ(*loss_a, *loss_b);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], expected[i] * scale) << model << " element " << i;
    // Every tensor once, last layer first (as backward produces them).
    ASSERT_EQ(order.size(), tensors);
    std::vector<size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < tensors; ++i) EXPECT_EQ(sorted[i], i);
    EXPECT_EQ(order.front() / 2, (tensors - 1) / 2) << "the last layer's tensors come first";
    EXPECT_EQ(order.back() / 2, 0u) << "the first layer's tensors come last";
    // The gate saw every tensor, in forward order, grouped by layer.
    std::vector<size_t> flat;
    for (const auto& g : gated) flat.insert(flat.end(), g.begin(), g.end());
    ASSERT_EQ(flat.size(), tensors);
    for (size_t i = 0; i < tensors; ++i) EXPECT_EQ(flat[i], i);
    EXPECT_EQ(gated, [&] {
      std::vector<std::vector<size_t>> nonempty;
      for (const auto& l : trainer.layer_tensors()) {
        if (!l.empty()) nonempty.push_back(l);
      }
      return nonempty;
    }());
  }
  // Outside the pipelined call the hooks write nothing: a plain step still
  // matches and the sink's buffer is no longer referenced.
  auto loss_c = trainer.ForwardBackward(d, idx);
  ASSERT_TRUE(loss_c.ok());
  std::vector<float> again(n);
  trainer.CopyGradientsTo(again.data());
  EXPECT_EQ(std::memcmp(again.data(), expected.data(), n * sizeof(float)), 0);
}

TEST(TrainerHookTest, HookGradientsEqualCopyGradientsToMlp) { CheckHookPath("mlp"); }
TEST(TrainerHookTest, HookGradientsEqualCopyGradientsToCnn) { CheckHookPath("cnn"); }

TEST(TrainerHookTest, GateErrorAbortsTheStep) {
  TrainerOptions o;
  o.model = "mlp";
  o.device = "cpu";
  auto trainer = Trainer::Create(o, 16, 16, 10);
  ASSERT_TRUE(trainer.ok());
  const data::Dataset d = MakeData();
  std::vector<float> buf(static_cast<size_t>((*trainer)->num_parameters()));
  Trainer::GradientSink sink;
  sink.buffer = buf.data();
  int ready = 0;
  sink.ready = [&](size_t) { ++ready; };
  auto r = (*trainer)->ForwardBackwardPipelined(
      d, {0, 1}, [](const std::vector<size_t>&) { return DeadlineExceededError("layer gate timed out"); }, sink);
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ready, 0);
}

}  // namespace
// ddp mode's checkpoint: parameters plus the libtorch optimizer's saved
// state make a fresh trainer continue bit for bit (Adam moments and step
// counts included); bytes libtorch cannot read are DataLoss.
TEST(TrainerStateTest, OptimizerStateRestoresBitForBit) {
  for (const char* optimizer : {"adam", "sgd"}) {
    TrainerOptions o;
    o.model = "mlp";
    o.hidden = 16;
    o.device = "cpu";
    o.optimizer.name = optimizer;
    if (o.optimizer.name == "sgd") o.optimizer.momentum = 0.9;  // a buffer to restore
    auto a = Trainer::Create(o, 16, 16, 10);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    const data::Dataset d = MakeData();
    auto train = [&](Trainer& t, int first, int steps) {
      for (int s = first; s < first + steps; ++s) {
        std::vector<int64_t> idx;
        for (int k = 0; k < 8; ++k) idx.push_back((s * 8 + k) % d.size);
        ASSERT_TRUE(t.ForwardBackward(d, idx).ok());
        t.OptimizerStep();
      }
    };
    train(**a, 0, 3);
    const size_t n = static_cast<size_t>((*a)->num_parameters());
    std::vector<float> saved(n);
    (*a)->CopyParametersTo(saved.data());
    auto state = (*a)->SaveOptimizerState();
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    train(**a, 3, 3);
    std::vector<float> want(n);
    (*a)->CopyParametersTo(want.data());

    o.seed = 99;  // other initial parameters: only the restore can make it agree
    auto b = Trainer::Create(o, 16, 16, 10);
    ASSERT_TRUE(b.ok());
    (*b)->SetParameters(saved.data());
    Status st = (*b)->LoadOptimizerState(*state);
    ASSERT_TRUE(st.ok()) << st.ToString();
    train(**b, 3, 3);
    std::vector<float> got(n);
    (*b)->CopyParametersTo(got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n * sizeof(float))) << optimizer;
    EXPECT_EQ((*b)->LoadOptimizerState("not an archive").code(), StatusCode::kDataLoss);
  }
}

}  // namespace stella::compute
