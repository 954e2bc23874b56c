#include "src/base/byte_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace stella {
namespace {

TEST(ByteIoTest, RoundTripOfEveryType) {
  ByteWriter w;
  w.U8(200);
  w.Bool(true);
  w.U32(0xDEADBEEF);
  w.U64(0x0123456789ABCDEFull);
  w.I64(-42);
  w.F32(-1.5f);
  w.F64(std::numeric_limits<double>::denorm_min());
  w.String("cloud/0");
  const std::vector<float> v = {1.0f, -0.0f, std::numeric_limits<float>::infinity(), 3.25f};
  w.Floats(v);
  w.Raw("xy");
  const std::string bytes = w.Release();
  ByteReader r(bytes, "blob");
  EXPECT_EQ(r.U8("a"), 200);
  EXPECT_TRUE(r.Bool("b"));
  EXPECT_EQ(r.U32("c"), 0xDEADBEEFu);
  EXPECT_EQ(r.U64("d"), 0x0123456789ABCDEFull);
  EXPECT_EQ(r.I64("e"), -42);
  EXPECT_EQ(r.F32("f"), -1.5f);
  EXPECT_EQ(r.F64("g"), std::numeric_limits<double>::denorm_min());
  EXPECT_EQ(r.String("h"), "cloud/0");
  std::vector<float> out(4);
  r.FloatsInto("i", out.data(), 4);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_TRUE(std::signbit(out[1]));
  EXPECT_TRUE(std::isinf(out[2]));
  EXPECT_EQ(r.Raw(2, "j"), "xy");
  r.ExpectEnd();
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(ByteIoTest, LittleEndianOnTheWire) {
  ByteWriter w;
  w.U32(0x04030201);
  EXPECT_EQ(w.data(), std::string("\x01\x02\x03\x04", 4));
}

TEST(ByteIoTest, TruncationIsAStickyDataLossNamingTheField) {
  ByteWriter w;
  w.U32(7);
  w.String("abc");
  std::string bytes = w.Release();
  bytes.pop_back();
  ByteReader r(bytes, "tuner state");
  EXPECT_EQ(r.U32("version"), 7u);
  EXPECT_EQ(r.String("name"), "");
  EXPECT_EQ(r.U64("later"), 0u);  // sticky: reads after an error return zeros
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("tuner state: truncated reading name"), std::string::npos)
      << r.status().message();
}

TEST(ByteIoTest, ImplausibleCountsAndWrongSizesFailWithoutAllocating) {
  ByteWriter w;
  w.U64(uint64_t{1} << 60);  // a float count far beyond the blob
  ByteReader r(w.data(), "blob");
  EXPECT_TRUE(r.Floats("values").empty());
  EXPECT_NE(r.status().message().find("values claims"), std::string::npos) << r.status().message();

  ByteWriter w2;
  w2.Floats(std::vector<float>(3, 1.0f));
  ByteReader r2(w2.data(), "blob");
  float out[4];
  r2.FloatsInto("params", out, 4);
  EXPECT_NE(r2.status().message().find("params holds 3 floats, expected 4"), std::string::npos);

  ByteWriter w3;
  w3.U8(2);
  ByteReader r3(w3.data(), "blob");
  r3.Bool("flag");
  EXPECT_FALSE(r3.ok());
  ByteReader r4("ab", "blob");
  r4.U8("x");
  r4.ExpectEnd();
  EXPECT_NE(r4.status().message().find("1 unexpected trailing bytes"), std::string::npos);
}

}  // namespace
}  // namespace stella
