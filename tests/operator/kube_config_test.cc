// Kubeconfig and in-cluster parsing: every auth form (token, tokenFile,
// client certificate inline and by path), CA inline/by path, insecure,
// context selection, and errors that name the offending field.
#include "operator/kube/config.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/testing/process_util.h"

namespace stella::kube {
namespace {

const char kCert[] = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
const char kKey[] = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n";
const char kCa[] = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n";

std::string Base64(const std::string& in) {
  static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned n = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += {k[n >> 18], k[(n >> 12) & 63], k[(n >> 6) & 63], k[n & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned n = static_cast<unsigned char>(in[i]) << 16;
    out += {k[n >> 18], k[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const unsigned n = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {k[n >> 18], k[(n >> 12) & 63], k[(n >> 6) & 63], '='};
  }
  return out;
}

// A kubeconfig with two contexts; `user` and `cluster` are the YAML bodies
// (indented 4) of the "u" user and "c" cluster.
std::string Kubeconfig(const std::string& cluster, const std::string& user, const std::string& current = "main") {
  return "apiVersion: v1\nkind: Config\n"
         "clusters:\n- name: other\n  cluster:\n    server: https://other:6443\n"
         "- name: c\n  cluster:\n" +
         cluster + "users:\n- name: u\n  user:\n" + user +
         "contexts:\n- name: main\n  context: {cluster: c, user: u, namespace: team}\n"
         "- name: alt\n  context: {cluster: other, user: u}\n"
         "current-context: " +
         current + "\n";
}

const std::string kServer = "    server: https://127.0.0.1:6443/\n";

TEST(KubeconfigTest, TokenAndCurrentContext) {
  auto cfg = ParseKubeconfig(Kubeconfig(kServer + "    insecure-skip-tls-verify: true\n", "    token: abc123\n"));
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->name, "main");
  EXPECT_EQ(cfg->server, "https://127.0.0.1:6443");  // trailing slash dropped
  EXPECT_EQ(cfg->bearer_token, "abc123");
  EXPECT_TRUE(cfg->insecure_skip_tls_verify);
  EXPECT_EQ(cfg->default_namespace, "team");
  EXPECT_TRUE(cfg->ca_pem.empty());
  EXPECT_TRUE(cfg->client_cert_pem.empty());

  auto alt = ParseKubeconfig(Kubeconfig(kServer, "    token: abc123\n"), "alt");
  ASSERT_TRUE(alt.ok()) << alt.status().ToString();
  EXPECT_EQ(alt->server, "https://other:6443");
  EXPECT_EQ(alt->default_namespace, "default");
  EXPECT_FALSE(alt->insecure_skip_tls_verify);
}

TEST(KubeconfigTest, InlineClientCertificateAndCa) {
  auto cfg = ParseKubeconfig(Kubeconfig(
      kServer + "    certificate-authority-data: " + Base64(kCa) + "\n",
      "    client-certificate-data: " + Base64(kCert) + "\n" + "    client-key-data: " + Base64(kKey) + "\n"));
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->ca_pem, kCa);
  EXPECT_EQ(cfg->client_cert_pem, kCert);
  EXPECT_EQ(cfg->client_key_pem, kKey);
  EXPECT_TRUE(cfg->bearer_token.empty());
}

TEST(KubeconfigTest, FilePathsResolveAgainstTheKubeconfigDirectory) {
  stella::testing::TempDir dir;
  stella::testing::WriteFile(dir.path() + "/ca.crt", kCa);
  stella::testing::WriteFile(dir.path() + "/client.crt", kCert);
  stella::testing::WriteFile(dir.path() + "/client.key", kKey);
  stella::testing::WriteFile(dir.path() + "/token", "file-token\n");
  const std::string yaml =
      Kubeconfig(kServer + "    certificate-authority: ca.crt\n",
                 "    client-certificate: client.crt\n    client-key: " + dir.path() + "/client.key\n");
  stella::testing::WriteFile(dir.path() + "/config", yaml);
  auto cfg = LoadKubeconfigFile(dir.path() + "/config");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->ca_pem, kCa);
  EXPECT_EQ(cfg->client_cert_pem, kCert);
  EXPECT_EQ(cfg->client_key_pem, kKey);

  auto with_base = ParseKubeconfig(Kubeconfig(kServer, "    tokenFile: token\n"), "", dir.path());
  ASSERT_TRUE(with_base.ok()) << with_base.status().ToString();
  EXPECT_EQ(with_base->token_file, dir.path() + "/token");  // kept as a path: re-read on use
  EXPECT_TRUE(with_base->bearer_token.empty());

  // The same relative path without the right base directory is an error
  // that names the field and the file.
  auto missing = ParseKubeconfig(Kubeconfig(kServer, "    tokenFile: token\n"), "", "/nonexistent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("users[0].user.tokenFile"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("/nonexistent/token"), std::string::npos);

  auto no_file = LoadKubeconfigFile(dir.path() + "/absent");
  EXPECT_EQ(no_file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_file.status().message().find(dir.path() + "/absent"), std::string::npos);
}

struct BadCase {
  const char* what;
  std::string yaml;
  std::string context;
  const char* expect;  // substring of the error
};

TEST(KubeconfigTest, BadKubeconfigsNameTheField) {
  const std::vector<BadCase> cases = {
      {"not yaml", "clusters: [", "", "not valid YAML"},
      {"not a map", "- a\n- b\n", "", "top level"},
      {"no current context", "clusters: []\n", "", "current-context: not set"},
      {"unknown context", Kubeconfig(kServer, "    token: t\n"), "nope",
       "context: no entry named \"nope\" in contexts"},
      {"unknown current context", Kubeconfig(kServer, "    token: t\n", "ghost"), "",
       "current-context: no entry named \"ghost\""},
      {"no server", Kubeconfig("    insecure-skip-tls-verify: true\n", "    token: t\n"), "",
       "clusters[1].cluster.server: expected an https:// URL"},
      {"server without scheme", Kubeconfig("    server: 10.0.0.1:6443\n", "    token: t\n"), "",
       "clusters[1].cluster.server: expected an https:// URL, got \"10.0.0.1:6443\""},
      {"bad insecure", Kubeconfig(kServer + "    insecure-skip-tls-verify: maybe\n", "    token: t\n"), "",
       "clusters[1].cluster.insecure-skip-tls-verify: expected true or false, got \"maybe\""},
      {"bad base64", Kubeconfig(kServer + "    certificate-authority-data: '!!!'\n", "    token: t\n"), "",
       "clusters[1].cluster.certificate-authority-data: not valid base64"},
      {"not pem", Kubeconfig(kServer + "    certificate-authority-data: " + Base64("hello") + "\n", "    token: t\n"),
       "", "certificate-authority-data: decoded data is not PEM"},
      {"ca data and file",
       Kubeconfig(kServer + "    certificate-authority-data: " + Base64(kCa) + "\n    certificate-authority: /x\n",
                  "    token: t\n"),
       "", "set only one of certificate-authority-data and certificate-authority"},
      {"insecure with ca",
       Kubeconfig(kServer + "    insecure-skip-tls-verify: true\n    certificate-authority-data: " + Base64(kCa) + "\n",
                  "    token: t\n"),
       "", "insecure-skip-tls-verify and a certificate authority are mutually exclusive"},
      {"cert without key", Kubeconfig(kServer, "    client-certificate-data: " + Base64(kCert) + "\n"), "",
       "users[0].user: client-certificate is set without client-key"},
      {"bad key base64",
       Kubeconfig(kServer, "    client-certificate-data: " + Base64(kCert) + "\n    client-key-data: abc\n"), "",
       "users[0].user.client-key-data: not valid base64"},
      {"token and file", Kubeconfig(kServer, "    token: a\n    tokenFile: /x\n"), "",
       "users[0].user: set only one of token and tokenFile"},
      {"exec plugin", Kubeconfig(kServer, "    exec: {command: aws}\n"), "", "users[0].user.exec: not supported"},
      {"basic auth", Kubeconfig(kServer, "    username: a\n    password: b\n"), "",
       "users[0].user.username: not supported"},
      {"missing cert file",
       Kubeconfig(kServer, "    client-certificate: /nonexistent/c.crt\n    client-key: /nonexistent/c.key\n"), "",
       "users[0].user.client-certificate: cannot read file \"/nonexistent/c.crt\""},
      {"token not a string", Kubeconfig(kServer, "    token: [a, b]\n"), "", "users[0].user.token: expected a string"},
      {"unknown user",
       "clusters:\n- name: c\n  cluster: {server: https://a}\n"
       "contexts:\n- name: m\n  context: {cluster: c, user: ghost}\ncurrent-context: m\n",
       "", "contexts[0].context.user: no entry named \"ghost\" in users"},
      {"context without cluster", "contexts:\n- name: m\n  context: {user: u}\ncurrent-context: m\n", "",
       "contexts[0].context.cluster: required"},
  };
  for (const BadCase& c : cases) {
    auto cfg = ParseKubeconfig(c.yaml, c.context);
    ASSERT_FALSE(cfg.ok()) << c.what;
    EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(cfg.status().message().find(c.expect), std::string::npos)
        << c.what << ": got \"" << cfg.status().message() << "\", want \"" << c.expect << "\"";
  }
}

// A member's kubeconfig comes from a Secret that job authors write: it must
// not make the operator read its own files. (Found while writing
// kube_json_fuzzer: with ParseKubeconfig, "tokenFile: /var/run/secrets/
// kubernetes.io/serviceaccount/token" plus an arbitrary server would have sent
// the operator's service-account token to that server.)
TEST(KubeconfigTest, InlineKubeconfigsRefuseFileReferencesNamingTheField) {
  stella::testing::TempDir dir;
  stella::testing::WriteFile(dir.path() + "/token", "operator-token\n");
  stella::testing::WriteFile(dir.path() + "/ca.crt", kCa);
  stella::testing::WriteFile(dir.path() + "/client.crt", kCert);
  stella::testing::WriteFile(dir.path() + "/client.key", kKey);
  struct Case {
    std::string cluster, user, expect;
  };
  const Case cases[] = {
      {"", "    tokenFile: " + dir.path() + "/token\n", "users[0].user.tokenFile: file references"},
      {"    certificate-authority: " + dir.path() + "/ca.crt\n", "    token: t\n",
       "clusters[1].cluster.certificate-authority: file references"},
      {"", "    client-certificate: " + dir.path() + "/client.crt\n    client-key-data: " + Base64(kKey) + "\n",
       "users[0].user.client-certificate: file references"},
      {"", "    client-certificate-data: " + Base64(kCert) + "\n    client-key: " + dir.path() + "/client.key\n",
       "users[0].user.client-key: file references"},
  };
  for (const Case& c : cases) {
    const std::string yaml = Kubeconfig(kServer + c.cluster, c.user);
    ASSERT_TRUE(ParseKubeconfig(yaml).ok()) << "the files exist, so only the inline rule can refuse: " << yaml;
    auto cfg = ParseInlineKubeconfig(yaml);
    ASSERT_FALSE(cfg.ok()) << yaml;
    EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(cfg.status().message().find(c.expect), std::string::npos) << cfg.status().message();
    EXPECT_NE(cfg.status().message().find(dir.path()), std::string::npos) << cfg.status().message();
  }
  // Everything inline is accepted as by ParseKubeconfig.
  auto inline_cfg = ParseInlineKubeconfig(
      Kubeconfig(kServer + "    certificate-authority-data: " + Base64(kCa) + "\n",
                 "    client-certificate-data: " + Base64(kCert) + "\n    client-key-data: " + Base64(kKey) + "\n"));
  ASSERT_TRUE(inline_cfg.ok()) << inline_cfg.status().ToString();
  EXPECT_EQ(inline_cfg->ca_pem, kCa);
  EXPECT_EQ(inline_cfg->client_key_pem, kKey);
  EXPECT_EQ(inline_cfg->server, "https://127.0.0.1:6443");
  EXPECT_TRUE(inline_cfg->token_file.empty());
}

TEST(KubeconfigTest, Base64) {
  EXPECT_EQ(*DecodeBase64(""), "");
  EXPECT_EQ(*DecodeBase64("YQ=="), "a");
  EXPECT_EQ(*DecodeBase64("YWI="), "ab");
  EXPECT_EQ(*DecodeBase64("YWJj"), "abc");
  EXPECT_EQ(*DecodeBase64("YWJj\nZGVm\n"), "abcdef");  // wrapped lines
  EXPECT_EQ(*DecodeBase64(Base64(std::string("\0\xff\x10 bin", 7))), std::string("\0\xff\x10 bin", 7));
  EXPECT_FALSE(DecodeBase64("YWJ").ok());
  EXPECT_FALSE(DecodeBase64("Y=Jj").ok());
  EXPECT_FALSE(DecodeBase64("YW=j").ok());
  EXPECT_FALSE(DecodeBase64("YWJj YWJj").ok());
}

class InClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stella::testing::WriteFile(sa_.path() + "/token", "sa-token\n");
    stella::testing::WriteFile(sa_.path() + "/ca.crt", kCa);
    stella::testing::WriteFile(sa_.path() + "/namespace", "stella-system\n");
  }
  void TearDown() override {
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
  }
  stella::testing::TempDir sa_;
};

TEST_F(InClusterTest, ReadsTheServiceAccount) {
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto cfg = InClusterConfig(sa_.path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->server, "https://10.96.0.1:443");
  EXPECT_EQ(cfg->token_file, sa_.path() + "/token");
  EXPECT_EQ(cfg->ca_pem, kCa);
  EXPECT_EQ(cfg->default_namespace, "stella-system");
  EXPECT_FALSE(cfg->insecure_skip_tls_verify);

  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  auto v6 = InClusterConfig(sa_.path());
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->server, "https://[fd00::1]:443");
}

TEST_F(InClusterTest, ErrorsSayWhatIsMissing) {
  auto no_env = InClusterConfig(sa_.path());
  EXPECT_EQ(no_env.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(no_env.status().message().find("KUBERNETES_SERVICE_HOST"), std::string::npos);

  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto no_sa = InClusterConfig(sa_.path() + "/missing");
  ASSERT_FALSE(no_sa.ok());
  EXPECT_NE(no_sa.status().message().find("token"), std::string::npos) << no_sa.status().message();
}

}  // namespace
}  // namespace stella::kube
