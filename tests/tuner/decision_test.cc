#include "runtime/tuner/decision.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace stella {
namespace tuner {
namespace {

Decision Sample() {
  Decision d;
  d.round = 7;
  d.apply_at_step = 1234;
  d.density = 0.00631;
  d.worker_ids = {0, 3, 9};
  d.batch_sizes = {64, 32, 160};
  d.reason = "density down 0.01 -> 0.00631: cluster 1 \"slow\"";
  return d;
}

std::vector<uint8_t> Encode(const Decision& d) {
  std::vector<uint8_t> out;
  Status s = EncodeDecision(d, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(DecisionTest, RoundTrip) {
  const Decision d = Sample();
  const std::vector<uint8_t> frame = Encode(d);
  EXPECT_EQ(frame.size(), kDecisionHeaderSize + 3 * 8 + d.reason.size());
  // Little-endian magic "STTD" and the version up front.
  EXPECT_EQ(frame[0], 'S');
  EXPECT_EQ(frame[3], 'D');
  EXPECT_EQ(frame[4], kDecisionVersion);
  auto back = DecodeDecision(frame.data(), frame.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->round, d.round);
  EXPECT_EQ(back->apply_at_step, d.apply_at_step);
  EXPECT_EQ(back->density, d.density);  // bit-exact
  EXPECT_EQ(back->worker_ids, d.worker_ids);
  EXPECT_EQ(back->batch_sizes, d.batch_sizes);
  EXPECT_EQ(back->reason, d.reason);
}

TEST(DecisionTest, RoundTripWithoutWorkersOrReason) {
  Decision d;
  d.density = 1.0;
  auto back = DecodeDecision(Encode(d).data(), kDecisionHeaderSize);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->worker_ids.empty());
  EXPECT_EQ(back->density, 1.0);
}

TEST(DecisionTest, EveryTruncationAndExtensionIsRejected) {
  std::vector<uint8_t> frame = Encode(Sample());
  for (size_t n = 0; n < frame.size(); ++n) {
    EXPECT_EQ(DecodeDecision(frame.data(), n).status().code(), StatusCode::kDataLoss) << n;
  }
  frame.push_back(0);
  EXPECT_EQ(DecodeDecision(frame.data(), frame.size()).status().code(), StatusCode::kDataLoss);
}

TEST(DecisionTest, CorruptHeaderIsRejected) {
  const std::vector<uint8_t> good = Encode(Sample());
  for (size_t at : {size_t{0}, size_t{4}, size_t{6}}) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x5A;
    EXPECT_EQ(DecodeDecision(bad.data(), bad.size()).status().code(), StatusCode::kDataLoss) << "byte " << at;
  }
  // A huge worker count must be rejected before allocating.
  std::vector<uint8_t> bad = good;
  bad[32] = bad[33] = bad[34] = bad[35] = 0xFF;
  EXPECT_EQ(DecodeDecision(bad.data(), bad.size()).status().code(), StatusCode::kDataLoss);
}

TEST(DecisionTest, WellFormedButInvalidContentIsRejected) {
  const std::vector<uint8_t> good = Encode(Sample());
  {
    std::vector<uint8_t> bad = good;  // density bits -> 2.0
    const double two = 2.0;
    uint64_t bits;
    std::memcpy(&bits, &two, 8);
    for (int i = 0; i < 8; ++i) bad[24 + i] = static_cast<uint8_t>(bits >> (8 * i));
    auto r = DecodeDecision(bad.data(), bad.size());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("density"), std::string::npos);
  }
  {
    std::vector<uint8_t> bad = good;  // second worker id 3 -> 0: not ascending
    bad[kDecisionHeaderSize + 8] = 0;
    auto r = DecodeDecision(bad.data(), bad.size());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("worker_ids[1]"), std::string::npos);
  }
  {
    std::vector<uint8_t> bad = good;  // first batch 64 -> 0
    bad[kDecisionHeaderSize + 4] = 0;
    auto r = DecodeDecision(bad.data(), bad.size());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("batch_sizes[0]"), std::string::npos);
  }
}

TEST(DecisionTest, EncodeValidates) {
  std::vector<uint8_t> out;
  Decision d = Sample();
  d.batch_sizes.pop_back();
  EXPECT_EQ(EncodeDecision(d, &out).code(), StatusCode::kInvalidArgument);
  d = Sample();
  d.density = 0.0;
  EXPECT_EQ(EncodeDecision(d, &out).code(), StatusCode::kInvalidArgument);
  d = Sample();
  d.reason.assign(kMaxDecisionReasonBytes + 1, 'x');
  EXPECT_EQ(EncodeDecision(d, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeDecision(Sample(), nullptr).code(), StatusCode::kInvalidArgument);
}

TEST(DecisionTest, LogLineAndLookup) {
  const Decision d = Sample();
  EXPECT_EQ(d.ToLogLine(),
            "tuner round=7 apply_at_step=1234 density=0.00631 batches=[0:64 3:32 9:160] "
            "reason=\"density down 0.01 -> 0.00631: cluster 1 \\\"slow\\\"\"");
  EXPECT_EQ(d.BatchSizeFor(3), 32);
  EXPECT_FALSE(d.BatchSizeFor(4).has_value());
}

}  // namespace
}  // namespace tuner
}  // namespace stella
