#include "runtime/data/dataset.h"

#include <gtest/gtest.h>

#include <set>

namespace stella::data {
namespace {

const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

std::vector<uint8_t> Header(uint32_t magic, std::vector<uint32_t> dims) {
  std::vector<uint8_t> out;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  return out;
}

TEST(DatasetTest, LoadsRealFashionMnist) {
  auto train = LoadFashionMnist(kFashionDir, Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ(train->size, 60000);
  EXPECT_EQ(train->rows, 28);
  EXPECT_EQ(train->cols, 28);
  EXPECT_EQ(train->num_classes, 10);
  auto test = LoadFashionMnist(kFashionDir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  EXPECT_EQ(test->size, 10000);
  // Fashion-MNIST is balanced: 1000 test images per class.
  std::vector<int> counts(10, 0);
  for (uint8_t l : test->labels) counts[l]++;
  for (int c : counts) EXPECT_EQ(c, 1000);
}

TEST(DatasetTest, MissingDirectoryNamesFileAndPackage) {
  Status s = CheckFashionMnist("/nonexistent/fmnist");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("/nonexistent/fmnist/train-images-idx3-ubyte.gz"), std::string::npos);
  EXPECT_NE(s.message().find("dataset-fashion-mnist"), std::string::npos);
  EXPECT_NE(s.message().find("spec.dataset.path"), std::string::npos);
}

TEST(DatasetTest, MalformedIdxRejected) {
  std::vector<uint8_t> images = Header(0x803, {2, 2, 2});
  images.insert(images.end(), 8, 7);
  std::vector<uint8_t> labels = Header(0x801, {2});
  labels.push_back(1);
  labels.push_back(2);
  ASSERT_TRUE(ParseIdx(images, labels, "t").ok());

  auto bad_magic = Header(0x804, {2, 2, 2});
  bad_magic.insert(bad_magic.end(), 8, 0);
  EXPECT_EQ(ParseIdx(bad_magic, labels, "t").status().code(), StatusCode::kDataLoss);

  auto truncated = images;
  truncated.pop_back();
  auto s = ParseIdx(truncated, labels, "t").status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("header promises 8"), std::string::npos) << s.message();

  auto short_labels = Header(0x801, {3});
  short_labels.insert(short_labels.end(), 3, 0);
  EXPECT_EQ(ParseIdx(images, short_labels, "t").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ParseIdx({1, 2, 3}, labels, "t").status().code(), StatusCode::kDataLoss);
}

TEST(BatchSamplerTest, ShardsAreDisjointAndCoverTheDataset) {
  const int64_t n = 103;
  const int world = 3;
  std::set<int64_t> seen;
  int64_t total = 0;
  for (int r = 0; r < world; ++r) {
    BatchSampler s(n, r, world, 7);
    auto idx = s.Next(static_cast<int>(s.shard_size()));
    for (int64_t i : idx) {
      EXPECT_TRUE(seen.insert(i).second) << "index " << i << " in two shards";
    }
    total += s.shard_size();
    EXPECT_EQ(s.epoch(), 0);
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(static_cast<int64_t>(seen.size()), n);
}

TEST(BatchSamplerTest, DeterministicAndReshufflesPerEpoch) {
  BatchSampler a(50, 0, 1, 3), b(50, 0, 1, 3);
  auto e0 = a.Next(50);
  EXPECT_EQ(e0, b.Next(50));
  auto e1 = a.Next(50);
  EXPECT_EQ(a.epoch(), 1);
  EXPECT_NE(e0, e1);
  std::set<int64_t> s(e1.begin(), e1.end());
  EXPECT_EQ(s.size(), 50u);
}

}  // namespace
// A sampler moved to a saved (epoch, cursor) yields exactly what the saved
// one would have, across the epoch boundary.
TEST(BatchSamplerTest, SeekContinuesTheSameStream) {
  BatchSampler a(1000, 1, 3, 42);
  for (int i = 0; i < 40; ++i) a.Next(17);  // into the third epoch (333 per shard)
  const int64_t epoch = a.epoch(), cursor = a.cursor();
  EXPECT_EQ(epoch, 2);
  BatchSampler b(1000, 1, 3, 42);
  ASSERT_TRUE(b.Seek(epoch, cursor).ok());
  for (int i = 0; i < 30; ++i) ASSERT_EQ(b.Next(17), a.Next(17)) << i;
  EXPECT_FALSE(b.Seek(-1, 0).ok());
  Status st = b.Seek(0, 334);
  EXPECT_NE(st.message().find("outside this rank's shard of 333 examples"), std::string::npos) << st.message();
  EXPECT_TRUE(b.Seek(0, 333).ok());  // at the end: the next batch starts epoch 1
  BatchSampler c(1000, 1, 3, 42);
  ASSERT_TRUE(c.Seek(1, 0).ok());
  EXPECT_EQ(b.Next(5), c.Next(5));
}

}  // namespace stella::data
