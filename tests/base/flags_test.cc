#include "src/base/flags.h"

#include <gtest/gtest.h>

namespace stella {
namespace {

TEST(FlagsTest, SplitsValuesSwitchesAndPositionals) {
  auto args =
      SplitFlags({"job.yaml", "--json=out.json", "--timeout", "-5", "--resume"}, {"--json", "--timeout"}, {"--resume"});
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  ASSERT_EQ(args->size(), 4u);
  EXPECT_EQ((*args)[0].flag, "");
  EXPECT_EQ((*args)[0].value, "job.yaml");
  EXPECT_EQ((*args)[1].value, "out.json");
  EXPECT_EQ((*args)[2].value, "-5");  // a value may start with '-'
  EXPECT_EQ((*args)[3].flag, "--resume");
}

TEST(FlagsTest, NamesTheProblem) {
  EXPECT_EQ(SplitFlags({"--bogus"}, {"--json"}, {}).status().message(), "unknown flag '--bogus'");
  EXPECT_EQ(SplitFlags({"--json"}, {"--json"}, {}).status().message(), "flag '--json' needs a value");
  EXPECT_EQ(SplitFlags({"--resume=1"}, {}, {"--resume"}).status().message(),
            "--resume takes no value, got '--resume=1'");
}

TEST(FlagsTest, CommasAndIntegers) {
  EXPECT_EQ(SplitCommas("a,,b,"), (std::vector<std::string>{"a", "b"}));
  int v = 0;
  EXPECT_TRUE(ParseIntFlag("test", "--n", "64", 1, 64, &v));
  EXPECT_EQ(v, 64);
  EXPECT_FALSE(ParseIntFlag("test", "--n", "65", 1, 64, &v));
  EXPECT_FALSE(ParseIntFlag("test", "--n", "6x", 1, 64, &v));
}

}  // namespace
}  // namespace stella
