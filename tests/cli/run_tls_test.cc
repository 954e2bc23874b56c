#include "src/cli/run_tls.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/net/tls_stream.h"
#include "tests/cli/test_util.h"

namespace stella::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

unsigned ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

spec::StellaJob Job() {
  auto job = spec::ParseStellaJob(R"(apiVersion: stella.dev/v1alpha1
kind: StellaJob
metadata: {name: tls-job, namespace: research}
spec:
  model: {name: cnn}
  dataset: {name: fashion-mnist}
  training: {steps: 10}
  clusters:
    - {name: onprem, workers: 1}
    - {name: cloud, workers: 2}
)");
  EXPECT_TRUE(job.ok()) << job.status().ToString();
  return *job;
}

TEST(EphemeralTlsTest, PrivateDirectoryWithOneUsableCertificatePerClusterRemovedAtTheEnd) {
  testing::TempDir parent;
  std::string root;
  {
    auto tls = EphemeralTls::Create(Job(), parent.path());
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    root = (*tls)->root();
    EXPECT_THAT(root, StartsWith(parent.path() + "/stella-tls-"));
    EXPECT_EQ(ModeOf(root), 0700u);
    ASSERT_EQ((*tls)->cluster_dirs().size(), 2u);
    EXPECT_EQ((*tls)->cluster_dirs()[0], root + "/onprem");
    EXPECT_EQ((*tls)->cluster_dirs()[1], root + "/cloud");
    const char* names[] = {"onprem", "cloud"};
    for (size_t c = 0; c < 2; ++c) {
      const std::string& dir = (*tls)->cluster_dirs()[c];
      EXPECT_EQ(ModeOf(dir + "/tls.key"), 0600u);
      // What stella-runtime does with --tls-dir: the material is consistent
      // and names this job's gateway of that cluster.
      auto ctx = net::TlsContext::FromDir(dir);
      ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
      EXPECT_EQ((*ctx)->identity().Uri(), std::string("stella://research/tls-job/") + names[c]);
    }
    // The CA's private key is not on disk: only the six gateway files.
    int files = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) files += e.is_regular_file();
    EXPECT_EQ(files, 6);
  }
  EXPECT_FALSE(std::filesystem::exists(root));
}

TEST(EphemeralTlsTest, UnwritableParentIsAClearError) {
  auto tls = EphemeralTls::Create(Job(), "/nonexistent/dir");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(tls.status().message(), HasSubstr("cannot create a private TLS directory under /nonexistent/dir"));
}

}  // namespace
}  // namespace stella::cli
