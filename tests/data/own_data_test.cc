// The user's own data: token and .npy files round trip through the
// memory-mapped loaders, shard deterministically, and truncated or
// mis-shaped files are refused with the path and the expected size.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"

namespace stella::data {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/own_data_test_" + std::to_string(getpid()) + "_" + name;
}

std::string WriteFile(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string Tokens(const std::vector<uint16_t>& tokens) {
  std::string out;
  for (uint16_t t : tokens) {
    out.push_back(static_cast<char>(t & 0xff));
    out.push_back(static_cast<char>(t >> 8));
  }
  return out;
}

// A .npy v1 file as numpy.save writes it (header padded to 64 bytes).
std::string Npy(const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out.push_back('\0');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

TEST(OwnDataTest, TokensRoundTripAsWindows) {
  std::vector<uint16_t> tokens;
  for (int i = 0; i < 33; ++i) tokens.push_back(static_cast<uint16_t>(i * 1000 + 7));
  const std::string path = WriteFile("tokens.bin", Tokens(tokens));
  auto d = LoadTokens(path, 8);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->format, Format::kTokens);
  EXPECT_EQ(d->size, 4);  // (33 - 1) / 8 windows of 9 tokens
  EXPECT_EQ(d->num_classes, 32 * 1000 + 7 + 1);
  EXPECT_EQ(d->InputShape(), std::vector<int64_t>{8});
  for (int64_t t = 0; t < 33; ++t) EXPECT_EQ(d->Token(t), tokens[static_cast<size_t>(t)]);
  std::remove(path.c_str());  // mapped: still readable
  EXPECT_EQ(d->Token(32), tokens[32]);
}

TEST(OwnDataTest, TruncatedOrShortTokenFilesAreRefused) {
  const std::string odd = WriteFile("odd.bin", Tokens({1, 2, 3}) + "x");
  Status s = LoadTokens(odd, 2).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(odd + ": 7 bytes is not a whole number of 2-byte uint16 tokens"));
  EXPECT_THAT(s.message(), HasSubstr("expected 8 or 6 bytes"));
  const std::string shorter = WriteFile("short.bin", Tokens({1, 2, 3}));
  s = LoadTokens(shorter, 4).status();
  EXPECT_THAT(s.message(), HasSubstr(shorter + ": holds 3 tokens, fewer than one window of sequenceLength + 1 = 5"));
  EXPECT_THAT(s.message(), HasSubstr("expected at least 10 bytes"));
  EXPECT_EQ(LoadTokens(TempPath("absent.bin"), 4).status().code(), StatusCode::kNotFound);
}

TEST(OwnDataTest, NpyRoundTrips) {
  std::vector<float> x;
  for (int i = 0; i < 5 * 2 * 3; ++i) x.push_back(static_cast<float>(i) * 0.5f);
  const std::string fx = WriteFile("x.npy", Npy("<f4", "(5, 2, 3)", Raw(x)));
  const std::string fy = WriteFile("y.npy", Npy("<i8", "(5,)", Raw(std::vector<int64_t>{4, 0, 1, 2, 3})));
  auto d = LoadNpy(fx, fy);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->size, 5);
  EXPECT_EQ(d->InputShape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(d->num_classes, 5);
  EXPECT_EQ(d->Label(0), 4);
  EXPECT_EQ(d->Label(4), 3);
  float third_example_first_value;
  std::memcpy(&third_example_first_value, d->features + 2 * d->feature_bytes(), 4);
  EXPECT_EQ(third_example_first_value, 6.0f);
}

TEST(OwnDataTest, MisShapedOrTruncatedNpyIsRefused) {
  const std::string y5 = WriteFile("y5.npy", Npy("<i8", "(5,)", Raw(std::vector<int64_t>(5, 1))));
  const std::string cut = WriteFile("cut.npy", Npy("<f4", "(5, 4)", Raw(std::vector<float>(19, 1.0f))));
  Status s = LoadNpy(cut, y5).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(cut + ": holds 76 data bytes, shape (5, 4) of <f4 needs 80"));
  EXPECT_THAT(s.message(), HasSubstr("expected file size 208 bytes"));

  const std::string x4 = WriteFile("x4.npy", Npy("<f4", "(4, 3)", Raw(std::vector<float>(12, 1.0f))));
  EXPECT_THAT(LoadNpy(x4, y5).status().message(),
              HasSubstr(y5 + ": labels must have shape (4,) to match " + x4 + ", got (5,)"));
  const std::string f64 = WriteFile("f64.npy", Npy("<f8", "(5, 1)", Raw(std::vector<double>(5, 1.0))));
  EXPECT_THAT(LoadNpy(f64, y5).status().message(),
              HasSubstr(f64 + ": features must be <f4 (numpy float32), got dtype <f8"));
  const std::string flat = WriteFile("flat.npy", Npy("<f4", "(5,)", Raw(std::vector<float>(5, 1.0f))));
  EXPECT_THAT(LoadNpy(flat, y5).status().message(), HasSubstr("features must have shape [N, ...]"));
  const std::string huge = WriteFile("huge.npy", Npy("<f4", "(4294967296, 4294967296, 16)", ""));
  EXPECT_THAT(LoadNpy(huge, y5).status().message(), HasSubstr(huge + ": holds 0 data bytes, far fewer than its shape"));
  const std::string text = WriteFile("text.npy", "1,2,3\n");
  EXPECT_THAT(LoadNpy(text, y5).status().message(), HasSubstr(text + ": not a .npy file"));
}

TEST(OwnDataTest, LoadDatasetNamesTheSpecField) {
  DataSource src;
  src.format = Format::kNpy;
  src.path = WriteFile("tx.npy", Npy("<f4", "(3, 2)", Raw(std::vector<float>(6, 0.0f))));
  src.labels_path = WriteFile("ty.npy", Npy("<i8", "(3,)", Raw(std::vector<int64_t>{0, 1, 0})));
  src.validation_path = TempPath("missing-vx.npy");
  src.validation_labels_path = src.labels_path;
  EXPECT_TRUE(LoadDataset(src, Split::kTrain).ok());
  EXPECT_THAT(LoadDataset(src, Split::kTest).status().message(),
              HasSubstr("spec.dataset.validationPath: cannot open " + src.validation_path));
  src.labels_path = TempPath("missing-y.npy");
  EXPECT_THAT(LoadDataset(src, Split::kTrain).status().message(), HasSubstr("spec.dataset.labelsPath: cannot open"));
}

TEST(OwnDataTest, ShardsOfTokenWindowsAreDeterministicAndDisjoint) {
  std::vector<uint16_t> tokens(4 * 100 + 1, 1);
  auto d = LoadTokens(WriteFile("shard.bin", Tokens(tokens)), 4);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size, 100);
  std::set<int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    BatchSampler a(d->size, rank, 3, 9), b(d->size, rank, 3, 9);
    const auto batch = a.Next(static_cast<int>(a.shard_size()));
    EXPECT_EQ(batch, b.Next(static_cast<int>(b.shard_size())));
    for (int64_t i : batch) EXPECT_TRUE(seen.insert(i).second) << i;
  }
  EXPECT_EQ(seen.size(), 100u);  // together the shards cover every window
}

}  // namespace
}  // namespace stella::data
