#include "src/net/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>

#include "src/security/openssl_util.h"

namespace stella {
namespace net {
namespace {

constexpr size_t kRecordHeaderBytes = 5;
// RFC 8446 5.2: a TLSCiphertext fragment never exceeds 2^14 + 256 bytes.
constexpr size_t kMaxRecordBodyBytes = (1 << 14) + 256;
// Plaintext encrypted per inner write (four full records).
constexpr size_t kWritePieceBytes = 64 * 1024;
// Ciphertext taken from the inner stream per ReadSome (several records).
constexpr size_t kReceiveBufferBytes = 256 * 1024;
// The server's "your certificate was accepted" byte (see the header).
constexpr uint8_t kConfirmByte = 0x5A;

using security::BioFree;
using security::OpenSslReasons;
using security::PkeyFree;
using security::X509Free;
using security::X509Ptr;

struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};

std::string SubjectOf(X509* cert) {
  if (cert == nullptr) return "(none)";
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? "\"" + std::string(data, static_cast<size_t>(n)) + "\"" : "\"\"";
}

std::string TimeText(const ASN1_TIME* t) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : "?";
}

StatusOr<std::string> PemOf(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return InternalError("PEM_write_bio_X509 failed");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(std::max(0L, n)));
}

// A certificate verification error, with the dates where they matter.
std::string VerifyErrorText(int err, X509* cert) {
  std::string text = X509_verify_cert_error_string(err);
  if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY || err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
      err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
      err == X509_V_ERR_CERT_SIGNATURE_FAILURE) {
    text += " (not signed by this job's CA)";
  }
  if (cert != nullptr && (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID)) {
    text += " (valid " + TimeText(X509_get0_notBefore(cert)) + " to " + TimeText(X509_get0_notAfter(cert)) + ")";
  }
  return text;
}

// Checks `peer`'s identity against ours; "" if acceptable, else why not.
std::string IdentityMismatch(const security::GatewayIdentity& ours, const std::string& expected_cluster,
                             const security::GatewayIdentity& peer) {
  if (peer.namespace_name != ours.namespace_name || peer.job != ours.job) {
    return "it names " + peer.Uri() + ", a gateway of job " + peer.namespace_name + "/" + peer.job + ", not of " +
           ours.namespace_name + "/" + ours.job;
  }
  if (!expected_cluster.empty() && peer.cluster != expected_cluster) {
    return "it names " + peer.Uri() + ", but the gateway of cluster " + expected_cluster + " was expected";
  }
  return "";
}

// What one handshake learns; SSL app data while the handshake runs.
struct HandshakeState {
  const security::GatewayIdentity* ours = nullptr;
  std::string expected_cluster;
  std::string refusal;         // why we refused the peer's certificate
  std::string alert_received;  // a fatal alert from the peer
  bool alert_sent = false;
  bool peer_verified = false;
  security::GatewayIdentity peer;
};

HandshakeState* StateOf(const SSL* ssl) {
  return ssl == nullptr ? nullptr : static_cast<HandshakeState*>(SSL_get_app_data(ssl));
}

// OpenSSL calls this for each certificate of the peer's chain, top down;
// depth 0 with ok = 1 is the final "chain verified" call (x509_vfy.c,
// internal_verify), where the stella:// identity is checked.
int VerifyCallback(int ok, X509_STORE_CTX* store) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  HandshakeState* st = StateOf(ssl);
  if (st == nullptr) return 0;  // no handshake in progress (e.g. renegotiation): refuse
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  const int depth = X509_STORE_CTX_get_error_depth(store);
  if (!ok) {
    if (st->refusal.empty()) {
      st->refusal = "certificate " + SubjectOf(cert) +
                    (depth > 0 ? " (chain depth " + std::to_string(depth) + ")" : "") + ": " +
                    VerifyErrorText(X509_STORE_CTX_get_error(store), cert);
    }
    return 0;
  }
  if (depth != 0) return 1;
  auto pem = PemOf(cert);
  auto info = pem.ok() ? security::DescribeCertificate(*pem) : StatusOr<security::CertificateInfo>(pem.status());
  std::string why;
  if (!info.ok()) {
    why = info.status().message();
  } else if (info->is_ca) {
    why = "it is a CA certificate, not a gateway certificate";
  } else {
    why = IdentityMismatch(*st->ours, st->expected_cluster, info->identity);
  }
  if (!why.empty()) {
    st->refusal = "certificate " + SubjectOf(cert) + ": " + why;
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  st->peer = info->identity;
  st->peer_verified = true;
  return 1;
}

void InfoCallback(const SSL* ssl, int where, int ret) {
  HandshakeState* st = StateOf(ssl);
  if (st == nullptr || (where & SSL_CB_ALERT) == 0) return;
  const bool fatal = std::string(SSL_alert_type_string(ret)) == "F";
  if ((where & SSL_CB_READ) != 0 && fatal && st->alert_received.empty()) {
    st->alert_received = SSL_alert_desc_string_long(ret);
  }
  if ((where & SSL_CB_WRITE) != 0) st->alert_sent = true;
}

Status HandshakeError(const HandshakeState& st, const std::string& peer, const std::string& openssl_reasons) {
  const std::string prefix = "TLS handshake with " + peer + ": ";
  if (!st.refusal.empty()) return FailedPreconditionError(prefix + "refused the peer's " + st.refusal);
  if (!st.alert_received.empty()) {
    return FailedPreconditionError(prefix + "the peer refused us (TLS alert \"" + st.alert_received +
                                   "\"; does it trust this job's CA and expect our cluster?)");
  }
  return FailedPreconditionError(
      prefix + "failed: " + (openssl_reasons.empty() ? std::string("unknown OpenSSL error") : openssl_reasons));
}

}  // namespace

// ---------------------------------------------------------------- TlsContext

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

StatusOr<std::unique_ptr<TlsContext>> TlsContext::FromDir(const std::string& dir) {
  auto material = security::ReadTlsDir(dir);
  if (!material.ok()) return material.status().WithContext("TLS directory " + dir);
  Options o;
  o.material = std::move(material).value();
  auto ctx = Create(o);
  if (!ctx.ok()) return ctx.status().WithContext("TLS directory " + dir);
  return ctx;
}

StatusOr<std::unique_ptr<TlsContext>> TlsContext::Create(const Options& options) {
  const security::TlsMaterial& m = options.material;
  // Describe first: its messages name the file and never include key text.
  auto ca_info = security::DescribeCertificate(m.ca_crt);
  if (!ca_info.ok()) return ca_info.status().WithContext("ca.crt");
  if (!ca_info->is_ca) return InvalidArgumentError("ca.crt: " + ca_info->subject + " is not a CA certificate");
  auto own_info = security::DescribeCertificate(m.tls_crt);
  if (!own_info.ok()) return own_info.status().WithContext("tls.crt");
  if (own_info->is_ca) {
    return InvalidArgumentError("tls.crt: " + own_info->subject + " is a CA certificate, expected a gateway's");
  }
  const security::GatewayIdentity& id = own_info->identity;
  if (id.namespace_name != ca_info->identity.namespace_name || id.job != ca_info->identity.job) {
    return InvalidArgumentError("tls.crt names " + id.Uri() + " but ca.crt is the CA of job " +
                                ca_info->identity.namespace_name + "/" + ca_info->identity.job);
  }

  ERR_clear_error();
  auto read_cert = [](const std::string& pem) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  };
  X509Ptr ca = read_cert(m.ca_crt);
  X509Ptr own = read_cert(m.tls_crt);
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new_mem_buf(m.tls_key.data(), static_cast<int>(m.tls_key.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
                                                  : nullptr);
  if (!ca || !own) return InternalError("re-reading certificates failed: " + OpenSslReasons());
  if (!key) {
    ERR_clear_error();
    return InvalidArgumentError("tls.key: not an unencrypted PEM private key");
  }

  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return InternalError("SSL_CTX_new failed: " + OpenSslReasons());
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 || SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return InternalError("restricting TLS to version 1.3 failed: " + OpenSslReasons());
  }
  // No resumption: every connection presents and checks certificates.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  // Send only our certificate: the peer holds the CA already, and a chain
  // from another job then fails as "unable to get local issuer".
  SSL_CTX_set_mode(c, SSL_MODE_NO_AUTO_CHAIN);
  // The job CA is the only trust anchor (no system CAs are loaded).
  if (X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca.get()) != 1) {
    return InternalError("adding ca.crt to the trust store failed: " + OpenSslReasons());
  }
  if (SSL_CTX_use_certificate(c, own.get()) != 1) {
    return InvalidArgumentError("tls.crt: OpenSSL refused it: " + OpenSslReasons());
  }
  if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 || SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("tls.key does not match tls.crt (" + own_info->subject + ")");
  }
  // Our own certificate must pass the checks the peer will apply.
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
  if (!vctx || X509_STORE_CTX_init(vctx.get(), SSL_CTX_get_cert_store(c), own.get(), nullptr) != 1) {
    return InternalError("X509_STORE_CTX_init failed: " + OpenSslReasons());
  }
  if (X509_verify_cert(vctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(vctx.get());
    ERR_clear_error();
    return InvalidArgumentError("tls.crt (" + id.Uri() +
                                ") fails verification against ca.crt: " + VerifyErrorText(err, own.get()));
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, VerifyCallback);
  return std::unique_ptr<TlsContext>(new TlsContext(ctx.release(), id));
}

// ---------------------------------------------------------------- TlsStream

TlsStream::TlsStream(std::unique_ptr<Stream> inner, std::string peer_label)
    : inner_(std::move(inner)), peer_label_(std::move(peer_label)), in_(kReceiveBufferBytes) {}

TlsStream::~TlsStream() {
  SSL_free(ssl_);  // frees the BIO too
  BIO_meth_free(bio_method_);
}

int TlsStream::BioRead(BIO* bio, char* out, int len) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  s->ssl_mu_.AssertHeld();  // OpenSSL calls under the caller's lock
  BIO_clear_retry_flags(bio);
  const size_t available = s->in_end_ - s->in_begin_;
  if (available == 0) {
    BIO_set_retry_read(bio);  // SSL_ERROR_WANT_READ: Receive, then retry
    return -1;
  }
  const size_t n = std::min(available, static_cast<size_t>(std::max(len, 0)));
  std::memcpy(out, s->in_.data() + s->in_begin_, n);
  s->in_begin_ += n;
  return static_cast<int>(n);
}

int TlsStream::BioWrite(BIO* bio, const char* in, int len) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  s->ssl_mu_.AssertHeld();  // OpenSSL calls under the caller's lock
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  const size_t old = s->outbox_.size();
  s->outbox_.resize(old + static_cast<size_t>(len));  // then memcpy: a char->uint8_t insert is a byte loop
  std::memcpy(s->outbox_.data() + old, in, static_cast<size_t>(len));
  return len;
}

long TlsStream::BioCtrl(BIO* bio, int cmd, long num, void* ptr) {
  auto* s = static_cast<TlsStream*>(BIO_get_data(bio));
  s->ssl_mu_.AssertHeld();  // OpenSSL calls under the caller's lock
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // the outbox leaves with SendPending
      return 1;
    case BIO_CTRL_PENDING: return static_cast<long>(s->in_end_ - s->in_begin_);
    case BIO_CTRL_WPENDING: return static_cast<long>(s->outbox_.size());
    default: return 0;
  }
}

Status TlsStream::Init(const TlsContext& context, TlsRole role) {
  ERR_clear_error();
  // Per stream, so a stream never depends on its TlsContext staying alive.
  bio_method_ = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "stella-tls-stream");
  if (bio_method_ == nullptr || BIO_meth_set_read(bio_method_, &TlsStream::BioRead) != 1 ||
      BIO_meth_set_write(bio_method_, &TlsStream::BioWrite) != 1 ||
      BIO_meth_set_ctrl(bio_method_, &TlsStream::BioCtrl) != 1) {
    return InternalError("creating the TLS stream's BIO method failed: " + OpenSslReasons());
  }
  ssl_ = SSL_new(context.ctx_);
  BIO* bio = BIO_new(bio_method_);
  if (ssl_ == nullptr || bio == nullptr) {
    BIO_free(bio);
    return InternalError("creating the TLS session failed: " + OpenSslReasons());
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways; ssl_ owns it
  if (role == TlsRole::kClient) {
    SSL_set_connect_state(ssl_);
  } else {
    SSL_set_accept_state(ssl_);
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<TlsStream>> TlsStream::Handshake(const TlsContext& context, std::unique_ptr<Stream> inner,
                                                          const TlsHandshakeOptions& options,
                                                          Clock::TimePoint deadline) {
  if (inner == nullptr) return InvalidArgumentError("TlsStream::Handshake: inner stream is null");
  std::unique_ptr<TlsStream> s(new TlsStream(std::move(inner), options.peer_label));
  STELLA_RETURN_IF_ERROR(s->Init(context, options.role));
  SSL* ssl = s->ssl_;

  HandshakeState st;
  st.ours = &context.identity();
  st.expected_cluster = options.expected_peer_cluster;
  SSL_set_app_data(ssl, &st);  // cleared below, before `st` goes away
  SSL_set_info_callback(ssl, InfoCallback);

  // Runs `op` until it returns > 0: its output goes to the peer, the peer's
  // bytes feed it.
  auto drive = [&](const std::function<int()>& op) -> Status {
    while (true) {
      int r = 0;
      int err = SSL_ERROR_NONE;
      std::string reasons;
      {
        MutexLock lock(&s->ssl_mu_);
        ERR_clear_error();
        r = op();
        if (r <= 0) {
          err = SSL_get_error(ssl, r);
          reasons = OpenSslReasons();
        }
      }
      // Our flight, or the alert that ends the handshake.
      const Status sent = s->SendPending(deadline);
      if (r > 0) return sent;
      if (err == SSL_ERROR_WANT_READ && sent.ok()) {
        const Status got = s->Receive(deadline);
        if (got.ok()) continue;
        if (got.code() == StatusCode::kUnavailable) {
          return UnavailableError(
              "TLS handshake with " + s->peer_label_ +
              ": the peer closed the connection (is it a gateway of this job, with TLS on?): " + got.message());
        }
        return got.WithContext("TLS handshake with " + s->peer_label_);
      }
      if (err == SSL_ERROR_WANT_READ) return sent.WithContext("TLS handshake with " + s->peer_label_);
      return HandshakeError(st, s->peer_label_, reasons);
    }
  };

  Status status = drive([&] { return SSL_do_handshake(ssl); });
  if (status.ok() && !st.peer_verified) {
    // Unreachable with SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT; kept as a guard.
    status = FailedPreconditionError("TLS handshake with " + s->peer_label_ + ": the peer's identity was not verified");
  }
  if (status.ok() && options.role == TlsRole::kServer) {
    {
      MutexLock lock(&s->ssl_mu_);
      ERR_clear_error();
      if (SSL_write(ssl, &kConfirmByte, 1) != 1) {
        status = InternalError("TLS handshake with " + s->peer_label_ +
                               ": sending the confirmation failed: " + OpenSslReasons());
      }
    }
    if (status.ok()) status = s->SendPending(deadline).WithContext("TLS handshake with " + s->peer_label_);
  } else if (status.ok()) {
    uint8_t confirm = 0;
    status = drive([&] { return SSL_read(ssl, &confirm, 1); });
    if (status.ok() && confirm != kConfirmByte) {
      status = FailedPreconditionError("TLS handshake with " + s->peer_label_ + ": unexpected confirmation byte " +
                                       std::to_string(confirm) + " (is the peer a Stella gateway?)");
    }
  }
  {
    MutexLock lock(&s->ssl_mu_);
    SSL_set_info_callback(ssl, nullptr);
    SSL_set_app_data(ssl, nullptr);
  }
  if (!status.ok()) {
    if (st.alert_sent) {
      // Let our alert reach the peer: closing with its unread bytes in our
      // receive buffer would send a TCP reset, which may destroy the alert.
      const Clock::TimePoint linger = std::min(deadline, std::chrono::steady_clock::now() + options.refusal_linger);
      if (s->inner_->Flush(linger).ok()) {
        uint8_t sink[4096];
        while (s->inner_->ReadSome(sink, sizeof(sink), linger).ok()) {
        }
      }
    }
    return status;
  }
  s->peer_identity_ = st.peer;
  return s;
}

Status TlsStream::Receive(Clock::TimePoint deadline) {
  uint8_t* tail = nullptr;
  size_t room = 0;
  {
    MutexLock lock(&ssl_mu_);
    // OpenSSL asks for more only once it took everything, so this usually
    // just rewinds; the move is for a partial record left behind.
    if (in_begin_ > 0) {
      std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    tail = in_.data() + in_end_;
    room = in_.size() - in_end_;
  }
  if (room == 0) return InternalError("tls " + peer_label_ + ": receive buffer full");
  STELLA_ASSIGN_OR_RETURN(const size_t got, inner_->ReadSome(tail, room, deadline));
  if (first_header_bytes_ < kRecordHeaderBytes) {
    const size_t k = std::min(got, kRecordHeaderBytes - first_header_bytes_);
    std::memcpy(first_header_ + first_header_bytes_, tail, k);
    first_header_bytes_ += k;
    if (first_header_bytes_ == kRecordHeaderBytes) {
      const uint8_t* h = first_header_;
      const size_t length = (size_t{h[3]} << 8) | h[4];
      // Content types 20..23 (change_cipher_spec, alert, handshake,
      // application_data), legacy version 3.x, a possible length.
      if (h[0] < 20 || h[0] > 23 || h[1] != 3 || length == 0 || length > kMaxRecordBodyBytes) {
        char hex[32];
        std::snprintf(hex, sizeof(hex), "%02x %02x %02x %02x %02x", h[0], h[1], h[2], h[3], h[4]);
        return InvalidArgumentError("tls " + peer_label_ + ": the peer does not speak TLS (record header " + hex +
                                    "); is it running without --tls-dir?");
      }
    }
  }
  MutexLock lock(&ssl_mu_);
  in_end_ += got;
  return Status::Ok();
}

Status TlsStream::SendPending(Clock::TimePoint deadline) {
  {
    MutexLock lock(&ssl_mu_);
    sending_.swap(outbox_);  // outbox_ keeps the old buffer's capacity
  }
  if (sending_.empty()) return Status::Ok();
  const Status s = inner_->WriteAll(sending_.data(), sending_.size(), deadline);
  sending_.clear();
  return s;
}

Status TlsStream::WriteAll(const void* data, size_t n, Clock::TimePoint deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    const size_t k = std::min(kWritePieceBytes, n - done);
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      const int r = SSL_write(ssl_, p + done, static_cast<int>(k));
      if (r != static_cast<int>(k)) {
        return DataLossError("tls " + peer_label_ + ": encrypting failed after " + std::to_string(done) + " of " +
                             std::to_string(n) + " bytes: " + OpenSslReasons());
      }
    }
    done += k;
    // Also sends what the reader's SSL_read queued before, in order.
    STELLA_RETURN_IF_ERROR(SendPending(deadline));
  }
  return Status::Ok();
}

Status TlsStream::ReadAll(void* data, size_t n, Clock::TimePoint deadline) {
  return Read(data, n, /*fill=*/true, deadline).status();
}

StatusOr<size_t> TlsStream::ReadSome(void* data, size_t max, Clock::TimePoint deadline) {
  if (max == 0) return InvalidArgumentError("tls " + peer_label_ + ": ReadSome: max must be > 0");
  return Read(data, max, /*fill=*/false, deadline);
}

StatusOr<size_t> TlsStream::Read(void* data, size_t n, bool fill, Clock::TimePoint deadline) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < n && (fill || done == 0)) {
    int err = SSL_ERROR_NONE;
    std::string reasons;
    {
      MutexLock lock(&ssl_mu_);
      ERR_clear_error();
      const int r = SSL_read(ssl_, p + done, static_cast<int>(std::min<size_t>(n - done, INT_MAX)));
      if (r > 0) {
        done += static_cast<size_t>(r);
        continue;
      }
      err = SSL_get_error(ssl_, r);
      if (err != SSL_ERROR_WANT_READ) reasons = OpenSslReasons();
    }
    const std::string progress = " after " + std::to_string(done) + " of " + std::to_string(n) + " bytes";
    if (err == SSL_ERROR_WANT_READ) {
      const Status s = Receive(deadline);
      if (s.ok()) continue;
      if (s.code() == StatusCode::kUnavailable) {
        return UnavailableError("tls " + peer_label_ + ": peer closed connection" + progress + " (" + s.message() +
                                ")");
      }
      return s.WithContext("tls " + peer_label_ + ": read" + progress);
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      return UnavailableError("tls " + peer_label_ + ": peer closed connection" + progress + " (close_notify)");
    }
    return DataLossError("tls " + peer_label_ + ": decrypting failed" + progress + ": " +
                         (reasons.empty() ? std::string("unknown OpenSSL error") : reasons));
  }
  return done;
}

Status TlsStream::Flush(Clock::TimePoint deadline) {
  STELLA_RETURN_IF_ERROR(SendPending(deadline));
  return inner_->Flush(deadline);
}

void TlsStream::Shutdown() { inner_->Shutdown(); }

double TlsStream::DeliveryRateBytesPerSecond() const { return inner_->DeliveryRateBytesPerSecond(); }

std::string TlsStream::cipher() const {
  MutexLock lock(&ssl_mu_);
  const char* name = SSL_get_cipher_name(ssl_);
  return name != nullptr ? name : "";
}

}  // namespace net
}  // namespace stella
