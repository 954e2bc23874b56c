// The user's TorchScript model: every bad-input case of model_check.h gives
// an error naming the file and what is wrong, and a good module trains
// through the Trainer exactly like a zoo model (initial weights from the
// file, flat buffers, pipelined hooks). The files come from make_models.py
// (run with /usr/bin/python3, the PyTorch of the runtime's libtorch line).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/compute/model_check.h"
#include "runtime/compute/trainer.h"

namespace stella::compute {
namespace {

using ::testing::HasSubstr;

class ModelCheckTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/model_check_test_" + std::to_string(getpid()));
    const std::string cmd =
        "mkdir -p " + *dir_ + " && /usr/bin/python3 " STELLA_SOURCE_DIR "/tests/compute/make_models.py " + *dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }

  // Fashion-MNIST-like 4x4 images with labels 0..2.
  static ModelCheck Check(const std::string& name) {
    ModelCheck c;
    c.path = Path(name);
    c.example_shape = {1, 4, 4};
    c.num_classes = 3;
    return c;
  }
  static data::Dataset Images() {
    data::Dataset d;
    d.size = 32;
    d.rows = d.cols = 4;
    d.num_classes = 3;
    for (int i = 0; i < 32 * 16; ++i) d.images.push_back(static_cast<uint8_t>(i * 29 % 256));
    for (int i = 0; i < 32; ++i) d.labels.push_back(static_cast<uint8_t>(i % 3));
    return d;
  }
  static std::string* dir_;
};
std::string* ModelCheckTest::dir_ = nullptr;

TEST_F(ModelCheckTest, GoodScriptedAndTracedModulesPass) {
  EXPECT_TRUE(CheckTorchScriptModel(Check("good.pt")).ok()) << CheckTorchScriptModel(Check("good.pt")).ToString();
  EXPECT_TRUE(CheckTorchScriptModel(Check("traced.pt")).ok());
}

TEST_F(ModelCheckTest, NotTorchScript) {
  Status s = CheckTorchScriptModel(Check("not_ts.pt"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("spec.model.torchscript: " + Path("not_ts.pt") + ": not a TorchScript file"));
  s = CheckTorchScriptModel(Check("state_dict.pt"));
  EXPECT_THAT(s.message(), HasSubstr(Path("state_dict.pt") + ": a PyTorch zip archive but not TorchScript"));
  EXPECT_THAT(s.message(), HasSubstr("torch.jit.save"));
  s = CheckTorchScriptModel(Check("missing.pt"));
  EXPECT_THAT(s.message(), HasSubstr(Path("missing.pt") + ": not a TorchScript file"));
}

TEST_F(ModelCheckTest, ForwardMustTakeOneTensor) {
  Status s = CheckTorchScriptModel(Check("two_inputs.pt"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(Path("two_inputs.pt") + ": forward must take exactly one tensor"));
  EXPECT_THAT(s.message(), HasSubstr("Tensor x, Tensor y"));
}

TEST_F(ModelCheckTest, OutputShapeMustFitLabelsAndTask) {
  Status s = CheckTorchScriptModel(Check("narrow.pt"));
  EXPECT_THAT(s.message(),
              HasSubstr(Path("narrow.pt") + ": forward on a batch of shape [2, 1, 4, 4] gave logits "
                                            "of shape [2, 2]; task classification needs [batch, classes] = [2, >= 3]"));
  ModelCheck lm = Check("good.pt");
  lm.language_model = true;
  EXPECT_THAT(CheckTorchScriptModel(lm).message(), HasSubstr("task language-model needs [batch, seq, vocab]"));
  ModelCheck wrong_input = Check("good.pt");
  wrong_input.example_shape = {1, 5, 5};  // 25 features into Linear(16, ...)
  EXPECT_THAT(CheckTorchScriptModel(wrong_input).message(),
              HasSubstr(": forward fails on a batch of shape [2, 1, 5, 5] (float32, the data's shape)"));
  ModelCheck tokens;
  tokens.path = Path("lm.pt");
  tokens.language_model = true;
  tokens.token_input = true;
  tokens.example_shape = {6};
  tokens.num_classes = 8;
  EXPECT_TRUE(CheckTorchScriptModel(tokens).ok()) << CheckTorchScriptModel(tokens).ToString();
  tokens.num_classes = 9;  // a token 8 would be out of the vocabulary
  EXPECT_THAT(CheckTorchScriptModel(tokens).message(), HasSubstr("[2, 6, >= 9]"));
}

TEST_F(ModelCheckTest, NewerPyTorchFileSaysWhichVersionIsNeeded) {
  Status s = CheckTorchScriptModel(Check("newer.pt"));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(Path("newer.pt") + ": written by a newer PyTorch than this runtime's libtorch " +
                                     LibtorchVersion() + ": file format version 99, libtorch reads up to version 10"));
  EXPECT_THAT(s.message(), HasSubstr("PyTorch 1.13"));
}

TEST_F(ModelCheckTest, TrainerStartsFromTheFilesWeightsAndHooksMatch) {
  TrainerOptions o;
  o.torchscript = Path("good.pt");
  o.device = "cpu";
  o.optimizer.name = "sgd";
  const data::Dataset d = Images();
  auto trainer = Trainer::Create(o, d, d.num_classes);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  Trainer& t = **trainer;
  EXPECT_EQ(t.tensor_sizes(), (std::vector<int64_t>{8 * 16, 8, 3 * 8, 3}));
  std::vector<float> params(static_cast<size_t>(t.num_parameters())), file(params.size());
  t.CopyParametersTo(params.data());
  std::ifstream(Path("params.bin"), std::ios::binary)
      .read(reinterpret_cast<char*>(file.data()), static_cast<std::streamsize>(file.size() * 4));
  EXPECT_EQ(params, file);
  ASSERT_EQ(t.layer_tensors().size(), 1u);  // opaque forward: one layer, every tensor

  const std::vector<int64_t> idx = {0, 5, 7, 9};
  auto loss = t.ForwardBackward(d, idx);
  ASSERT_TRUE(loss.ok()) << loss.status().ToString();
  std::vector<float> want(params.size()), got(params.size(), -1);
  t.CopyGradientsTo(want.data());
  Trainer::GradientSink sink;
  sink.buffer = got.data();
  int ready = 0;
  sink.ready = [&](size_t) { ++ready; };
  int gated = 0;
  auto again = t.ForwardBackwardPipelined(
      d, idx, [&](const std::vector<size_t>&) { return ++gated, Status::Ok(); }, sink);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*loss, *again);
  EXPECT_EQ(got, want);
  EXPECT_EQ(ready, 4);
  EXPECT_EQ(gated, 1);

  // SetTensorParameters reaches the module's own tensors.
  std::vector<float> zeros(3, 0.0f);
  t.SetTensorParameters(3, zeros.data());
  t.CopyParametersTo(params.data());
  EXPECT_EQ(std::vector<float>(params.end() - 3, params.end()), zeros);
  EXPECT_GT(t.Evaluate(d).accuracy, 0.0);
}

TEST_F(ModelCheckTest, LanguageModelLossIsPerToken) {
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 41; ++i) {
    bytes.push_back(static_cast<uint8_t>(i * 5 % 8));
    bytes.push_back(0);
  }
  data::Dataset d;
  d.format = data::Format::kTokens;
  d.tokens = bytes.data();
  d.num_tokens = 41;
  d.sequence_length = 8;
  d.size = 5;
  d.num_classes = 8;
  TrainerOptions o;
  o.torchscript = Path("lm.pt");
  o.language_model = true;
  o.device = "cpu";
  auto trainer = Trainer::Create(o, d, d.num_classes);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  auto loss = (*trainer)->ForwardBackward(d, {0, 1});
  ASSERT_TRUE(loss.ok()) << loss.status().ToString();
  EXPECT_GT(*loss, 0.0f);
  EvalResult r = (*trainer)->Evaluate(d);
  EXPECT_EQ(r.accuracy, -1.0);
  EXPECT_GT(r.loss, 0.0);
  o.language_model = false;  // the same module cannot be a classifier
  EXPECT_THAT(Trainer::Create(o, d, d.num_classes).status().message(), HasSubstr("task classification needs"));
}

}  // namespace
}  // namespace stella::compute
