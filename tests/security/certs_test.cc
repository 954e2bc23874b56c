#include "src/security/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "tests/testing/process_util.h"

namespace stella::security {
namespace {

using std::chrono::hours;
using std::chrono::system_clock;
using ::testing::HasSubstr;
using ::testing::StartsWith;

unsigned ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Verifies `leaf_pem` against `ca_pem` for `purpose` with OpenSSL itself (an
// independent check of what the library produced). Returns the X509 error
// (0 = ok).
int OpenSslVerify(const std::string& ca_pem, const std::string& leaf_pem, int purpose) {
  auto read = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    return x;
  };
  X509* ca = read(ca_pem);
  X509* leaf = read(leaf_pem);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_STORE_CTX_set_purpose(ctx, purpose);
  const int ok = X509_verify_cert(ctx);
  const int err = ok == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(leaf);
  X509_free(ca);
  return err;
}

TEST(GatewayIdentityTest, UriRoundTripsAndParseErrorsNameThePart) {
  GatewayIdentity id{"default", "mnist", "onprem"};
  EXPECT_EQ(id.Uri(), "stella://default/mnist/onprem");
  auto back = GatewayIdentity::FromUri(id.Uri());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);

  auto scheme = GatewayIdentity::FromUri("https://default/mnist/onprem");
  ASSERT_FALSE(scheme.ok());
  EXPECT_EQ(scheme.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(scheme.status().message(), HasSubstr("expected stella://<namespace>/<job>/<cluster>"));

  auto parts = GatewayIdentity::FromUri("stella://default/mnist");
  ASSERT_FALSE(parts.ok());
  EXPECT_THAT(parts.status().message(), HasSubstr("expected 3 parts"));
  EXPECT_THAT(parts.status().message(), HasSubstr("got 2"));

  auto label = GatewayIdentity::FromUri("stella://default/Mnist/onprem");
  ASSERT_FALSE(label.ok());
  EXPECT_THAT(label.status().message(), HasSubstr("job must be a DNS-1123 label"));
  EXPECT_THAT(label.status().message(), HasSubstr("got \"Mnist\""));
}

TEST(CertsTest, CaAndGatewayCertificateCarryIdentityValidityAndChain) {
  const auto before = system_clock::now();
  auto ca = CreateJobCa("team-a", "mnist");
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  EXPECT_THAT(ca->certificate_pem, StartsWith("-----BEGIN CERTIFICATE-----"));
  EXPECT_THAT(ca->private_key_pem, StartsWith("-----BEGIN PRIVATE KEY-----"));

  auto ca_info = DescribeCertificate(ca->certificate_pem);
  ASSERT_TRUE(ca_info.ok()) << ca_info.status().ToString();
  EXPECT_TRUE(ca_info->is_ca);
  EXPECT_EQ(ca_info->identity.namespace_name, "team-a");
  EXPECT_EQ(ca_info->identity.job, "mnist");
  EXPECT_EQ(ca_info->identity.cluster, "");

  CertificateOptions short_lived;
  short_lived.valid_for = hours(2);
  auto gw = IssueGatewayCertificate(*ca, "cloud", short_lived);
  ASSERT_TRUE(gw.ok()) << gw.status().ToString();
  EXPECT_EQ(gw->ca_crt, ca->certificate_pem);
  auto info = DescribeCertificate(gw->tls_crt);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->identity, (GatewayIdentity{"team-a", "mnist", "cloud"}));
  EXPECT_THAT(info->subject, HasSubstr("CN=cloud"));
  // Default start: one hour back (clock skew); then valid_for.
  EXPECT_LE(info->not_before, before - hours(1) + std::chrono::seconds(5));
  EXPECT_GE(info->not_before, before - hours(1) - std::chrono::seconds(5));
  EXPECT_EQ(info->not_after - info->not_before, hours(2));

  // OpenSSL's own verifier accepts the chain for TLS client and server use.
  // Gateways are TLS clients (dialing) and servers (accepting).
  EXPECT_EQ(OpenSslVerify(gw->ca_crt, gw->tls_crt, X509_PURPOSE_SSL_CLIENT), 0);
  EXPECT_EQ(OpenSslVerify(gw->ca_crt, gw->tls_crt, X509_PURPOSE_SSL_SERVER), 0);
  // ... and not against another job's CA.
  auto other = CreateJobCa("team-a", "other");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(OpenSslVerify(other->certificate_pem, gw->tls_crt, X509_PURPOSE_SSL_CLIENT),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST(CertsTest, BadInputIsRefusedWithFieldAndValue) {
  auto bad_job = CreateJobCa("default", "My_Job");
  ASSERT_FALSE(bad_job.ok());
  EXPECT_EQ(bad_job.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_job.status().message(), HasSubstr("job must be a DNS-1123 label"));
  EXPECT_THAT(bad_job.status().message(), HasSubstr("\"My_Job\""));

  CertificateOptions zero;
  zero.valid_for = std::chrono::seconds(0);
  auto bad_validity = CreateJobCa("default", "job", zero);
  ASSERT_FALSE(bad_validity.ok());
  EXPECT_THAT(bad_validity.status().message(), HasSubstr("valid_for must be > 0 seconds, got 0"));

  auto ca = CreateJobCa("default", "job");
  ASSERT_TRUE(ca.ok());
  auto bad_cluster = IssueGatewayCertificate(*ca, "");
  ASSERT_FALSE(bad_cluster.ok());
  EXPECT_THAT(bad_cluster.status().message(), HasSubstr("cluster must be a DNS-1123 label"));

  // A CA certificate with another CA's key cannot sign.
  auto other = CreateJobCa("default", "job");
  ASSERT_TRUE(other.ok());
  JobCa mixed{ca->certificate_pem, other->private_key_pem};
  auto mismatch = IssueGatewayCertificate(mixed, "alpha");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.status().message(), HasSubstr("private_key_pem does not match"));
  EXPECT_THAT(mismatch.status().message(), ::testing::Not(HasSubstr("BEGIN PRIVATE KEY")));

  // A gateway certificate is not a CA.
  auto gw = IssueGatewayCertificate(*ca, "alpha");
  ASSERT_TRUE(gw.ok());
  auto leaf_as_ca = IssueGatewayCertificate(JobCa{gw->tls_crt, gw->tls_key}, "beta");
  ASSERT_FALSE(leaf_as_ca.ok());
  EXPECT_THAT(leaf_as_ca.status().message(), HasSubstr("is not a Stella job CA"));

  auto garbage = DescribeCertificate("not a certificate");
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(garbage.status().message(), HasSubstr("not a PEM certificate"));
}

TEST(CertsTest, TlsDirIsWrittenAtomicallyWithPrivateKeyModeAndReadsBack) {
  testing::TempDir tmp;
  const std::string dir = tmp.path() + "/alpha";
  auto ca = CreateJobCa("default", "job");
  ASSERT_TRUE(ca.ok());
  auto gw = IssueGatewayCertificate(*ca, "alpha");
  ASSERT_TRUE(gw.ok());
  ASSERT_TRUE(WriteTlsDir(dir, *gw).ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/tls.key"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/tls.crt"), 0644u);
  EXPECT_EQ(ModeOf(dir + "/ca.crt"), 0644u);
  // Nothing but the three files: temporaries were renamed, not left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_THAT(e.path().filename().string(), ::testing::AnyOf("ca.crt", "tls.crt", "tls.key"));
  }
  EXPECT_EQ(files, 3);
  auto back = ReadTlsDir(dir);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ca_crt, gw->ca_crt);
  EXPECT_EQ(back->tls_crt, gw->tls_crt);
  EXPECT_EQ(back->tls_key, gw->tls_key);

  // Rewriting replaces every file (same modes).
  auto gw2 = IssueGatewayCertificate(*ca, "alpha");
  ASSERT_TRUE(gw2.ok());
  ASSERT_TRUE(WriteTlsDir(dir, *gw2).ok());
  EXPECT_EQ(ReadTlsDir(dir)->tls_key, gw2->tls_key);
  EXPECT_EQ(ModeOf(dir + "/tls.key"), 0600u);

  std::filesystem::remove(dir + "/tls.crt");
  auto missing = ReadTlsDir(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir + "/tls.crt"));

  auto empty = WriteTlsDir(tmp.path() + "/x", TlsMaterial{gw->ca_crt, gw->tls_crt, ""});
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.message(), HasSubstr("must all be non-empty"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/x"));
}

}  // namespace
}  // namespace stella::security
