#include "runtime/compress/aggregate.h"

#include <gtest/gtest.h>

#include <vector>

namespace stella {
namespace compress {
namespace {

TEST(AggregateTest, AddsScaledElementsAndBlocks) {
  std::vector<float> dense(5, 1.0f);
  SparseGradient s;
  s.num_elements = 5;
  s.indices = {0, 4};
  s.values = {2.0f, -4.0f};
  ASSERT_TRUE(AddSparseTo(s, 0.5f, dense.data(), dense.size()).ok());
  EXPECT_EQ(dense, std::vector<float>({2.0f, 1.0f, 1.0f, 1.0f, -1.0f}));

  std::vector<float> d2(35, 0.0f);  // blocks: 0..15, 16..31, tail 32..34
  SparseGradient b;
  b.num_elements = 35;
  b.block_size = 16;
  b.indices = {0, 2};
  for (int i = 0; i < 19; ++i) b.values.push_back(static_cast<float>(i + 1));
  ASSERT_TRUE(AddSparseTo(b, 1.0f, d2.data(), d2.size()).ok());
  ASSERT_TRUE(AddSparseTo(b, 1.0f, d2.data(), d2.size()).ok());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d2[i], 2.0f * (i + 1)) << i;
  for (int i = 16; i < 32; ++i) EXPECT_EQ(d2[i], 0.0f) << i;
  EXPECT_EQ(d2[32], 34.0f);
  EXPECT_EQ(d2[34], 38.0f);
}

TEST(AggregateTest, RejectsMismatchedOrInvalidInputWithoutWriting) {
  std::vector<float> dense(4, 7.0f);
  SparseGradient s;
  s.num_elements = 5;  // a peer with a different tensor
  s.indices = {4};
  s.values = {1.0f};
  Status st = AddSparseTo(s, 1.0f, dense.data(), dense.size());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("does not match"), std::string::npos) << st.ToString();
  s.num_elements = 4;  // now index 4 is out of range
  EXPECT_FALSE(AddSparseTo(s, 1.0f, dense.data(), dense.size()).ok());
  s.indices = {3};
  s.values = {1.0f, 2.0f};  // too many values
  EXPECT_FALSE(DecompressInto(s, dense.data(), dense.size()).ok());
  EXPECT_EQ(dense, std::vector<float>(4, 7.0f));
}

TEST(AggregateTest, DecompressIntoZeroesEverythingElse) {
  std::vector<float> dense(20, 9.0f);
  SparseGradient s;
  s.num_elements = 20;
  s.block_size = 16;
  s.indices = {1};
  s.values = {1.0f, 2.0f, 3.0f, 4.0f};
  ASSERT_TRUE(DecompressInto(s, dense.data(), dense.size()).ok());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(dense[i], 0.0f);
  EXPECT_EQ(dense[16], 1.0f);
  EXPECT_EQ(dense[19], 4.0f);
}

}  // namespace
}  // namespace compress
}  // namespace stella
