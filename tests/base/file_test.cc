#include "src/base/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>

namespace stella {
namespace {

std::string MakeTempDir() {
  char tmpl[] = "/tmp/stella-file-test-XXXXXX";
  return ::mkdtemp(tmpl);
}

TEST(FileTest, WriteThenReadRoundTripsWithTheMode) {
  const std::string path = MakeTempDir() + "/f";
  AtomicWriteOptions options;
  options.mode = 0600;
  ASSERT_TRUE(WriteFileAtomically(path, std::string("a\0b", 3), options).ok());
  ASSERT_TRUE(WriteFileAtomically(path, "new", options).ok());  // replaces
  StatusOr<std::string> read = ReadWholeFile(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, "new");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(FileTest, MissingFileIsNotFound) {
  StatusOr<std::string> read = ReadWholeFile(MakeTempDir() + "/absent");
  EXPECT_EQ(read.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(WriteFileAtomically("/nonexistent-dir/f", "x").code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace stella
