// Mutual TLS between gateways: handshakes over real loopback TCP (and the
// in-memory pipe), data both ways, concurrent reader and writer, and every
// refusal the promise in docs/reliability.md names, each asserting its
// specific reason on the refusing side and, where the protocol lets it see
// one, the alert on the refused side.
#include "src/net/tls_stream.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "src/net/frame.h"
#include "src/net/framed_connection.h"
#include "src/net/memory_stream.h"
#include "src/net/shaped_stream.h"
#include "src/net/tcp.h"
#include "src/security/certs.h"
#include "tests/testing/process_util.h"

namespace stella {
namespace net {
namespace {

using security::CertificateOptions;
using security::JobCa;
using security::TlsMaterial;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Clock::TimePoint In(milliseconds ms) { return std::chrono::steady_clock::now() + ms; }
constexpr milliseconds kLong(20000);

JobCa MakeCa(const std::string& job) {
  auto ca = security::CreateJobCa("default", job);
  STELLA_CHECK(ca.ok());
  return std::move(ca).value();
}

TlsMaterial Issue(const JobCa& ca, const std::string& cluster, const CertificateOptions& o = {}) {
  auto m = security::IssueGatewayCertificate(ca, cluster, o);
  STELLA_CHECK(m.ok());
  return std::move(m).value();
}

std::unique_ptr<TlsContext> Context(const TlsMaterial& m) {
  auto ctx = TlsContext::Create({m});
  EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
  return ctx.ok() ? std::move(ctx).value() : nullptr;
}

// A gateway certificate for `uri`, signed with `ca`'s key directly through
// OpenSSL: identities the library refuses to issue (another job's name under
// this job's CA).
TlsMaterial Forge(const JobCa& ca, const std::string& uri) {
  BIO* cb = BIO_new_mem_buf(ca.certificate_pem.data(), static_cast<int>(ca.certificate_pem.size()));
  X509* ca_cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  BIO* kb = BIO_new_mem_buf(ca.private_key_pem.data(), static_cast<int>(ca.private_key_pem.size()));
  EVP_PKEY* ca_key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("forged"), -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
  X509_set_pubkey(x, key);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, ca_cert, x, nullptr, nullptr, 0);
  const std::string san = "URI:" + uri;
  for (auto [nid, value] : {std::pair<int, const char*>{NID_basic_constraints, "critical,CA:FALSE"},
                            {NID_ext_key_usage, "serverAuth,clientAuth"},
                            {NID_authority_key_identifier, "keyid:always"},
                            {NID_subject_alt_name, san.c_str()}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    STELLA_CHECK(ext != nullptr);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  STELLA_CHECK(X509_sign(x, ca_key, EVP_sha256()) > 0);
  auto to_pem = [](auto write) {
    BIO* b = BIO_new(BIO_s_mem());
    write(b);
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<size_t>(n));
    BIO_free(b);
    return s;
  };
  TlsMaterial m;
  m.ca_crt = ca.certificate_pem;
  m.tls_crt = to_pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
  m.tls_key = to_pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(x);
  EVP_PKEY_free(key);
  EVP_PKEY_free(ca_key);
  X509_free(ca_cert);
  return m;
}

// A TLS client written directly against OpenSSL on a blocking socket, to be
// the peers TlsContext refuses to be: no certificate, TLS 1.2 only, an
// expired or forged certificate. It trusts any server. Returns "accepted"
// when the server sent its confirmation byte, else the client's error.
std::string RawClient(int port, const TlsMaterial* m, int max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  if (m != nullptr) {
    BIO* cb = BIO_new_mem_buf(m->tls_crt.data(), static_cast<int>(m->tls_crt.size()));
    X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    BIO* kb = BIO_new_mem_buf(m->tls_key.data(), static_cast<int>(m->tls_key.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string result;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    result = "connect failed";
  } else {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    unsigned char byte = 0;
    if (SSL_connect(ssl) == 1 && SSL_read(ssl, &byte, 1) == 1) {
      result = "accepted";
    } else {
      char buf[256];
      const unsigned long e = ERR_get_error();
      ERR_error_string_n(e, buf, sizeof(buf));
      result = e != 0 ? buf : "connection closed";
    }
    ERR_clear_error();
    SSL_free(ssl);
  }
  ::close(fd);
  SSL_CTX_free(ctx);
  return result;
}

class TlsStreamTest : public ::testing::Test {
 protected:
  TlsStreamTest()
      : ca_(MakeCa("job-a")),
        alpha_material_(Issue(ca_, "alpha")),
        alpha_(Context(alpha_material_)),
        beta_(Context(Issue(ca_, "beta"))) {}

  struct Result {
    std::optional<StatusOr<std::unique_ptr<TlsStream>>> client;
    std::optional<StatusOr<std::unique_ptr<TlsStream>>> server;
  };

  // `client` dials a loopback listener whose accepting side is `server`.
  Result Connect(const TlsContext& client, const TlsContext& server, const std::string& client_expects = "",
                 const std::string& server_expects = "") {
    Result r;
    auto listener = TcpListener::Create("127.0.0.1", 0);
    EXPECT_TRUE(listener.ok());
    std::thread accept([&] {
      auto raw = (*listener)->Accept(In(kLong));
      EXPECT_TRUE(raw.ok()) << raw.status().ToString();
      TlsHandshakeOptions o;
      o.role = TlsRole::kServer;
      o.expected_peer_cluster = server_expects;
      o.peer_label = "client";
      r.server = TlsStream::Handshake(server, std::move(raw).value(), o, In(kLong));
    });
    auto raw = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
    EXPECT_TRUE(raw.ok()) << raw.status().ToString();
    TlsHandshakeOptions o;
    o.role = TlsRole::kClient;
    o.expected_peer_cluster = client_expects;
    o.peer_label = "server";
    r.client = TlsStream::Handshake(client, std::move(raw).value(), o, In(kLong));
    accept.join();
    return r;
  }

  // Runs a TlsStream server on a loopback listener while `client(port)`
  // connects; returns the server's handshake result.
  template <typename F>
  StatusOr<std::unique_ptr<TlsStream>> ServeOnce(const TlsContext& server, F client) {
    auto listener = TcpListener::Create("127.0.0.1", 0);
    EXPECT_TRUE(listener.ok());
    std::optional<StatusOr<std::unique_ptr<TlsStream>>> result;
    std::thread accept([&] {
      auto raw = (*listener)->Accept(In(kLong));
      EXPECT_TRUE(raw.ok()) << raw.status().ToString();
      TlsHandshakeOptions o;
      o.role = TlsRole::kServer;
      o.peer_label = "client";
      result = TlsStream::Handshake(server, std::move(raw).value(), o, In(kLong));
    });
    client((*listener)->port());
    accept.join();
    return std::move(*result);
  }

  JobCa ca_;
  TlsMaterial alpha_material_;
  std::unique_ptr<TlsContext> alpha_;
  std::unique_ptr<TlsContext> beta_;
};

TEST_F(TlsStreamTest, HandshakeVerifiesBothIdentitiesAndCarriesDataBothWays) {
  Result r = Connect(*beta_, *alpha_, /*client_expects=*/"alpha");
  ASSERT_TRUE(r.client->ok()) << r.client->status().ToString();
  ASSERT_TRUE(r.server->ok()) << r.server->status().ToString();
  TlsStream& client = ***r.client;
  TlsStream& server = ***r.server;
  EXPECT_EQ(client.peer_identity().Uri(), "stella://default/job-a/alpha");
  EXPECT_EQ(server.peer_identity().Uri(), "stella://default/job-a/beta");
  EXPECT_THAT(client.cipher(), StartsWith("TLS_"));

  ASSERT_TRUE(client.WriteAll("hello", 5, In(kLong)).ok());
  char buf[5];
  ASSERT_TRUE(server.ReadAll(buf, 5, In(kLong)).ok());
  EXPECT_EQ(std::string(buf, 5), "hello");
  // Larger than one write piece and many records, the other way.
  std::vector<uint8_t> big(3 * 1024 * 1024 + 17);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 131 + 7);
  std::thread writer([&] { EXPECT_TRUE(server.WriteAll(big.data(), big.size(), In(kLong)).ok()); });
  std::vector<uint8_t> in(big.size());
  ASSERT_TRUE(client.ReadAll(in.data(), in.size(), In(kLong)).ok());
  writer.join();
  EXPECT_EQ(in, big);
  EXPECT_TRUE(server.Flush(In(kLong)).ok());
}

// The WanMesh pattern: on each end one thread only reads while another only
// writes, both directions at once (TSan checks the locking in `make tsan`).
TEST_F(TlsStreamTest, ConcurrentReaderAndWriterOnBothEnds) {
  Result r = Connect(*alpha_, *beta_);
  ASSERT_TRUE(r.client->ok()) << r.client->status().ToString();
  ASSERT_TRUE(r.server->ok()) << r.server->status().ToString();
  TlsStream* ends[2] = {r.client->value().get(), r.server->value().get()};
  constexpr size_t kBytes = 8 << 20;
  auto pattern = [](int side, size_t i) { return static_cast<uint8_t>(i * 131 + static_cast<size_t>(side) * 17); };
  std::vector<std::thread> threads;
  for (int side = 0; side < 2; ++side) {
    threads.emplace_back([&, side] {  // writer: uneven piece sizes
      std::vector<uint8_t> piece;
      size_t sent = 0;
      for (size_t k = 1; sent < kBytes; ++k) {
        const size_t n = std::min(kBytes - sent, (k * 7919) % 70000 + 1);
        piece.resize(n);
        for (size_t i = 0; i < n; ++i) piece[i] = pattern(side, sent + i);
        ASSERT_TRUE(ends[side]->WriteAll(piece.data(), n, In(kLong)).ok());
        sent += n;
      }
    });
    threads.emplace_back([&, side] {  // reader of the other side's bytes
      std::vector<uint8_t> piece(50000);
      size_t got = 0;
      while (got < kBytes) {
        const size_t n = std::min(kBytes - got, piece.size());
        const Status s = ends[side]->ReadAll(piece.data(), n, In(kLong));
        ASSERT_TRUE(s.ok()) << s.ToString();
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(piece[i], pattern(1 - side, got + i)) << "byte " << got + i;
        }
        got += n;
      }
    });
  }
  for (auto& t : threads) t.join();
}

TEST_F(TlsStreamTest, PeerWithAnotherJobsCaIsRefusedOnBothSides) {
  const JobCa other_ca = MakeCa("job-b");
  auto stranger = Context(Issue(other_ca, "alpha"));
  Result r = Connect(*stranger, *alpha_);
  // The dialing stranger checks the server first and refuses it ...
  ASSERT_FALSE(r.client->ok());
  EXPECT_EQ(r.client->status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.client->status().message(), HasSubstr("refused the peer's certificate"));
  EXPECT_THAT(r.client->status().message(),
              HasSubstr("\"CN=alpha,OU=job-a,O=default\": unable to get local issuer certificate (not signed by "
                        "this job's CA)"));
  // ... and the server learns it through the alert: no connection either way.
  ASSERT_FALSE(r.server->ok());
  EXPECT_EQ(r.server->status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.server->status().message(), HasSubstr("the peer refused us (TLS alert \"unknown CA\""));

  // The accepting side refuses a stranger that does not check the server.
  auto refused = ServeOnce(*alpha_, [&](int port) {
    const TlsMaterial m = Issue(other_ca, "beta");
    EXPECT_THAT(RawClient(port, &m), HasSubstr("unknown ca"));
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("TLS handshake with client: refused the peer's certificate \"CN=beta,OU=job-b,O=default\""));
  EXPECT_THAT(refused.status().message(), HasSubstr("unable to get local issuer certificate"));
}

TEST_F(TlsStreamTest, RightCaButAnotherJobNameIsRefused) {
  const TlsMaterial forged = Forge(ca_, "stella://default/job-b/beta");
  auto refused =
      ServeOnce(*alpha_, [&](int port) { EXPECT_THAT(RawClient(port, &forged), HasSubstr("handshake failure")); });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("it names stella://default/job-b/beta, a gateway of job default/job-b, not of "
                        "default/job-a"));
  // Another namespace with the same job name is another job too.
  const TlsMaterial other_ns = Forge(ca_, "stella://prod/job-a/beta");
  auto refused_ns = ServeOnce(*alpha_, [&](int port) { RawClient(port, &other_ns); });
  ASSERT_FALSE(refused_ns.ok());
  EXPECT_THAT(refused_ns.status().message(), HasSubstr("a gateway of job prod/job-a, not of default/job-a"));
  // No stella:// identity at all.
  const TlsMaterial anonymous = Forge(ca_, "https://example.com/");
  auto refused_anon = ServeOnce(*alpha_, [&](int port) { RawClient(port, &anonymous); });
  ASSERT_FALSE(refused_anon.ok());
  EXPECT_THAT(refused_anon.status().message(), HasSubstr("names no stella:// identity"));
}

TEST_F(TlsStreamTest, ClientWithoutCertificateIsRefused) {
  auto refused =
      ServeOnce(*alpha_, [&](int port) { EXPECT_THAT(RawClient(port, nullptr), HasSubstr("certificate required")); });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("peer did not return a certificate"));
}

TEST_F(TlsStreamTest, ExpiredCertificateIsRefused) {
  CertificateOptions expired;
  expired.valid_from = std::chrono::hours(-48);
  expired.valid_for = std::chrono::hours(24);
  const TlsMaterial old = Issue(ca_, "beta", expired);
  auto refused =
      ServeOnce(*alpha_, [&](int port) { EXPECT_THAT(RawClient(port, &old), HasSubstr("certificate expired")); });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("\"CN=beta,OU=job-a,O=default\": certificate has expired (valid "));

  // A gateway refuses to start with an expired certificate of its own.
  auto own = TlsContext::Create({old});
  ASSERT_FALSE(own.ok());
  EXPECT_EQ(own.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(own.status().message(),
              HasSubstr("tls.crt (stella://default/job-a/beta) fails verification against ca.crt: certificate "
                        "has expired"));
}

TEST_F(TlsStreamTest, WrongClusterIdentityIsRefused) {
  auto gamma = Context(Issue(ca_, "gamma"));
  // Dialing "alpha" but reaching gamma's gateway (same job, wrong cluster).
  Result r = Connect(*beta_, *gamma, /*client_expects=*/"alpha");
  ASSERT_FALSE(r.client->ok());
  EXPECT_EQ(r.client->status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.client->status().message(),
              HasSubstr("it names stella://default/job-a/gamma, but the gateway of cluster alpha was expected"));
  ASSERT_FALSE(r.server->ok());
  EXPECT_THAT(r.server->status().message(), HasSubstr("TLS alert \"handshake failure\""));
  // The accepting side can insist on a cluster too.
  Result s = Connect(*gamma, *alpha_, "", /*server_expects=*/"beta");
  ASSERT_FALSE(s.server->ok());
  EXPECT_THAT(s.server->status().message(),
              HasSubstr("it names stella://default/job-a/gamma, but the gateway of cluster beta was expected"));
  ASSERT_FALSE(s.client->ok());
  EXPECT_THAT(s.client->status().message(), HasSubstr("the peer refused us (TLS alert \"handshake failure\""));
}

TEST_F(TlsStreamTest, Tls12AndPlainTcpPeersAreRefused) {
  auto tls12 = ServeOnce(*alpha_, [&](int port) {
    EXPECT_THAT(RawClient(port, &alpha_material_, TLS1_2_VERSION), HasSubstr("protocol version"));
  });
  ASSERT_FALSE(tls12.ok());
  EXPECT_EQ(tls12.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(tls12.status().message(), HasSubstr("unsupported protocol"));

  // A gateway without --tls-dir opens with a plaintext Hello frame.
  auto plain = ServeOnce(*alpha_, [&](int port) {
    auto raw = TcpConnect("127.0.0.1", port, In(kLong));
    ASSERT_TRUE(raw.ok());
    FramedConnection conn(std::move(raw).value());
    auto hello = EncodeHello({"job-a", 1});
    ASSERT_TRUE(hello.ok());
    EXPECT_TRUE(conn.Send(FrameType::kHello, 0, hello->data(), hello->size(), In(kLong)).ok());
  });
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(plain.status().message(), HasSubstr("the peer does not speak TLS (record header 53 54 4c 41"));

  // And a TLS gateway dialing a plaintext one is told the peer hung up.
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  std::thread plain_server([&] {
    auto raw = (*listener)->Accept(In(kLong));
    ASSERT_TRUE(raw.ok());
    FramedConnection conn(std::move(raw).value());
    EXPECT_FALSE(conn.Receive(In(kLong)).ok());  // bad magic: it drops the link
  });
  auto raw = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  ASSERT_TRUE(raw.ok());
  auto client = TlsStream::Handshake(*alpha_, std::move(raw).value(), {}, In(kLong));
  plain_server.join();
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(client.status().message(), HasSubstr("is it a gateway of this job, with TLS on?"));
}

TEST_F(TlsStreamTest, PollingReadShutdownAndPeerClose) {
  Result r = Connect(*alpha_, *beta_);
  ASSERT_TRUE(r.client->ok() && r.server->ok());
  std::unique_ptr<TlsStream> client = std::move(*r.client).value();
  std::unique_ptr<TlsStream> server = std::move(*r.server).value();
  char buf[4];
  // Nothing sent yet: a short deadline passes and the stream stays usable.
  const Status early = server->ReadAll(buf, 4, In(milliseconds(30)));
  EXPECT_EQ(early.code(), StatusCode::kDeadlineExceeded) << early.ToString();
  ASSERT_TRUE(client->WriteAll("ping", 4, In(kLong)).ok());
  ASSERT_TRUE(server->ReadAll(buf, 4, In(kLong)).ok());
  EXPECT_EQ(std::string(buf, 4), "ping");

  // Shutdown wakes a blocked reader with kCancelled.
  std::thread reader([&] {
    const Status s = server->ReadAll(buf, 4, In(kLong));
    EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  });
  std::this_thread::sleep_for(milliseconds(20));  // usually blocked by now; either order passes
  server->Shutdown();
  reader.join();

  // The client sees its peer gone.
  const Status gone = client->ReadAll(buf, 4, In(kLong));
  EXPECT_EQ(gone.code(), StatusCode::kUnavailable) << gone.ToString();
  EXPECT_THAT(gone.message(), HasSubstr("peer closed connection after 0 of 4 bytes"));
}

// A record that trickles in over a slow link: polls with short deadlines
// time out while it is incomplete, and the stream stays usable.
TEST_F(TlsStreamTest, DeadlineInTheMiddleOfARecordLeavesTheStreamUsable) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  std::optional<StatusOr<std::unique_ptr<TlsStream>>> server;
  std::thread accept([&] {
    auto raw = (*listener)->Accept(In(kLong));
    ASSERT_TRUE(raw.ok());
    TlsHandshakeOptions o;
    o.role = TlsRole::kServer;
    server = TlsStream::Handshake(*beta_, std::move(raw).value(), o, In(kLong));
  });
  auto raw = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  ASSERT_TRUE(raw.ok());
  ShapedStream::Options so;
  so.rate_bits_per_s = 80e3;  // 10 KB/s
  so.chunk_bytes = 64;
  so.burst_bytes = 64;
  auto slow = ShapedStream::Create(std::move(raw).value(), so);
  ASSERT_TRUE(slow.ok());
  auto client = TlsStream::Handshake(*alpha_, std::move(slow).value(), {}, In(kLong));
  accept.join();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(server->ok()) << server->status().ToString();
  // One 2000-byte record takes ~200 ms to cross; poll every 20 ms.
  std::vector<uint8_t> sent(2000);
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE((*client)->WriteAll(sent.data(), sent.size(), In(kLong)).ok());
  std::vector<uint8_t> got(sent.size());
  int timeouts = 0;
  Status s = DeadlineExceededError("not read");
  for (int polls = 0; polls < 1000 && s.code() == StatusCode::kDeadlineExceeded; ++polls) {
    s = (**server)->ReadAll(got.data(), got.size(), In(milliseconds(20)));
    timeouts += s.code() == StatusCode::kDeadlineExceeded;
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(timeouts, 0);  // the record was incomplete at the first poll
  EXPECT_EQ(got, sent);
}

TEST_F(TlsStreamTest, HandshakeDeadlineWithASilentPeer) {
  // Connected and silent: the accepting side gives up at its deadline.
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  auto silent = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  ASSERT_TRUE(silent.ok());
  auto raw = (*listener)->Accept(In(kLong));
  ASSERT_TRUE(raw.ok());
  TlsHandshakeOptions o;
  o.role = TlsRole::kServer;
  auto s = TlsStream::Handshake(*alpha_, std::move(raw).value(), o, In(milliseconds(100)));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDeadlineExceeded) << s.status().ToString();
  EXPECT_THAT(s.status().message(), HasSubstr("TLS handshake with peer"));
}

// The layering WanMesh uses: frames over TLS over the egress shaper over TCP,
// and TLS over the in-memory pipe (no sockets).
TEST_F(TlsStreamTest, FramesOverTlsOverShapedStreamAndOverMemoryPipe) {
  auto listener = TcpListener::Create("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  ShapedStream::Options so;
  so.rate_bits_per_s = 50e6;
  so.latency = std::chrono::milliseconds(2);
  std::unique_ptr<FramedConnection> server_conn;
  std::thread accept([&] {
    auto raw = (*listener)->Accept(In(kLong));
    ASSERT_TRUE(raw.ok());
    auto shaped = ShapedStream::Create(std::move(raw).value(), so);
    ASSERT_TRUE(shaped.ok());
    TlsHandshakeOptions o;
    o.role = TlsRole::kServer;
    auto tls = TlsStream::Handshake(*beta_, std::move(shaped).value(), o, In(kLong));
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    server_conn = std::make_unique<FramedConnection>(std::move(tls).value());
  });
  auto raw = TcpConnect("127.0.0.1", (*listener)->port(), In(kLong));
  ASSERT_TRUE(raw.ok());
  auto shaped = ShapedStream::Create(std::move(raw).value(), so);
  ASSERT_TRUE(shaped.ok());
  TlsHandshakeOptions co;
  co.expected_peer_cluster = "beta";
  auto tls = TlsStream::Handshake(*alpha_, std::move(shaped).value(), co, In(kLong));
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  accept.join();
  ASSERT_NE(server_conn, nullptr);
  FramedConnection client_conn(std::move(tls).value());
  const std::vector<uint8_t> payload(200000, 0x3C);
  ASSERT_TRUE(client_conn.Send(FrameType::kDense, 7, payload.data(), payload.size(), In(kLong)).ok());
  ASSERT_TRUE(client_conn.Flush(In(kLong)).ok());
  auto f = server_conn->Receive(In(kLong));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->header.tag, 7u);
  EXPECT_EQ(f->payload, payload);
  ASSERT_TRUE(server_conn->Send(FrameType::kControl, 8, "ok", 2, In(kLong)).ok());
  ASSERT_TRUE(server_conn->Flush(In(kLong)).ok());
  auto back = client_conn.Receive(In(kLong));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->header.tag, 8u);

  auto [a, b] = CreateMemoryStreamPair();
  std::optional<StatusOr<std::unique_ptr<TlsStream>>> mem_server;
  std::thread mem_accept([&, b = std::move(b)]() mutable {
    TlsHandshakeOptions o;
    o.role = TlsRole::kServer;
    mem_server = TlsStream::Handshake(*beta_, std::move(b), o, In(kLong));
  });
  auto mem_client = TlsStream::Handshake(*alpha_, std::move(a), {}, In(kLong));
  mem_accept.join();
  ASSERT_TRUE(mem_client.ok()) << mem_client.status().ToString();
  ASSERT_TRUE(mem_server->ok()) << mem_server->status().ToString();
  ASSERT_TRUE((*mem_client)->WriteAll("abc", 3, In(kLong)).ok());
  char buf[3];
  ASSERT_TRUE((**mem_server)->ReadAll(buf, 3, In(kLong)).ok());
  EXPECT_EQ(std::string(buf, 3), "abc");
}

TEST_F(TlsStreamTest, ContextRefusesInconsistentMaterialNamingTheFile) {
  const TlsMaterial good = Issue(ca_, "alpha");
  const TlsMaterial other = Issue(ca_, "beta");
  auto mismatch = TlsContext::Create({TlsMaterial{good.ca_crt, good.tls_crt, other.tls_key}});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("tls.key does not match tls.crt"));
  EXPECT_THAT(mismatch.status().message(), ::testing::Not(HasSubstr("PRIVATE KEY")));

  const JobCa other_ca = MakeCa("job-b");
  auto wrong_ca = TlsContext::Create({TlsMaterial{other_ca.certificate_pem, good.tls_crt, good.tls_key}});
  ASSERT_FALSE(wrong_ca.ok());
  EXPECT_THAT(wrong_ca.status().message(),
              HasSubstr("tls.crt names stella://default/job-a/alpha but ca.crt is the CA of job default/job-b"));

  auto leaf_as_ca = TlsContext::Create({TlsMaterial{good.tls_crt, good.tls_crt, good.tls_key}});
  ASSERT_FALSE(leaf_as_ca.ok());
  EXPECT_THAT(leaf_as_ca.status().message(), HasSubstr("ca.crt: "));
  EXPECT_THAT(leaf_as_ca.status().message(), HasSubstr("is not a CA certificate"));

  testing::TempDir tmp;
  auto missing = TlsContext::FromDir(tmp.path());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(tmp.path() + "/ca.crt"));
  ASSERT_TRUE(security::WriteTlsDir(tmp.path() + "/alpha", good).ok());
  auto from_dir = TlsContext::FromDir(tmp.path() + "/alpha");
  ASSERT_TRUE(from_dir.ok()) << from_dir.status().ToString();
  EXPECT_EQ((*from_dir)->identity().Uri(), "stella://default/job-a/alpha");
}

}  // namespace
}  // namespace net
}  // namespace stella
