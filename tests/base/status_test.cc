#include "src/base/status.h"

#include <gtest/gtest.h>

namespace stella {
namespace {

StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgumentError("must be > 0, got " + std::to_string(v));
  return v;
}

Status UsesMacros(int v, int* out) {
  STELLA_ASSIGN_OR_RETURN(*out, ParsePositive(v));
  STELLA_RETURN_IF_ERROR(Status::Ok());
  return Status::Ok();
}

TEST(StatusTest, OkAndErrorsCarryCodeAndMessage) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = InvalidArgumentError("bad");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "InvalidArgument: bad");
  EXPECT_EQ(s.WithContext("spec.x").message(), "spec.x: bad");
  EXPECT_TRUE(Status::Ok().WithContext("ctx").ok());
}

TEST(StatusTest, MacrosPropagate) {
  int out = 0;
  EXPECT_TRUE(UsesMacros(3, &out).ok());
  EXPECT_EQ(out, 3);
  Status s = UsesMacros(-1, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "must be > 0, got -1");
}

}  // namespace
}  // namespace stella
