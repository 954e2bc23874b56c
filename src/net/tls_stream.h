// Mutual TLS over any Stream: TlsContext holds one gateway's credentials and
// the job CA; TlsStream::Handshake turns a connected Stream (TCP, shaped TCP,
// in-memory) into an authenticated, encrypted Stream that FramedConnection
// and WanMesh use unchanged.
//
// What is enforced (docs/reliability.md, "Mutual TLS"): TLS 1.3 only; both
// sides present a certificate; a peer certificate must chain to the job CA
// (the only trust anchor), be within its validity period, carry exactly one
// stella://<namespace>/<job>/<cluster> identity (src/security/certs.h) naming
// this gateway's namespace and job, and, when the caller names one, the
// expected peer cluster. Anything else ends the handshake with the reason in
// the returned Status (certificates are described by subject and identity;
// key material never appears in a message). Session tickets are off: every
// connection authenticates afresh.
//
// Layering: put TlsStream *above* a ShapedStream (TLS -> shaper -> TCP) so
// the emulated bandwidth paces ciphertext, i.e. the bytes that cross the
// wire. TlsStream forwards DeliveryRateBytesPerSecond to the inner stream.
//
// How it works: OpenSSL runs on memory BIOs; the record layer is read from
// the inner stream one TLS record at a time (5-byte header, then the body it
// announces), so ReadAll on the inner stream never over-reads. One mutex
// (ssl_mu_) is held only around the OpenSSL calls, never across inner-stream
// I/O, so one thread can block in ReadAll while another writes: the inner
// Stream's own one-reader/one-writer contract does the rest. Bytes OpenSSL
// produces while reading (e.g. a TLS alert or a KeyUpdate reply) wait in the
// write BIO and leave with the next WriteAll or Flush, so only the writing
// thread ever writes to the inner stream, and in OpenSSL's order.
//
// Handshake confirmation: in TLS 1.3 a client finishes its handshake before
// the server has checked the client certificate. So the server sends one
// confirmation byte after accepting the client, and the client's Handshake
// returns only after reading it: on both sides an ok Handshake means "both
// certificates were accepted", and a refused client gets the server's alert
// as its error.
//
// Thread safety: TlsContext is immutable after Create and may be shared by
// any number of handshakes on any threads. TlsStream follows the Stream
// contract (one reader and one writer concurrently, Shutdown from any
// thread). Lock order: ssl_mu_ is a leaf (no other lock is taken under it).
#ifndef STELLA_SRC_NET_TLS_STREAM_H_
#define STELLA_SRC_NET_TLS_STREAM_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "src/base/clock.h"
#include "src/base/status.h"
#include "src/net/stream.h"
#include "src/security/certs.h"

// OpenSSL types, kept out of this header's includes.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace stella {
namespace net {

class TlsContext {
 public:
  struct Options {
    // PEM text of the job CA certificate, this gateway's certificate and its
    // private key (what --tls-dir holds: ca.crt, tls.crt, tls.key). All
    // required.
    security::TlsMaterial material;
  };

  // Checks the material before any connection: the certificate must match
  // the key, chain to the CA, be valid now and name a stella:// gateway
  // identity. Errors say which file and why.
  static StatusOr<std::unique_ptr<TlsContext>> Create(const Options& options);
  // Reads DIR/ca.crt, DIR/tls.crt, DIR/tls.key and calls Create.
  static StatusOr<std::unique_ptr<TlsContext>> FromDir(const std::string& dir);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // The identity this gateway's certificate names.
  const security::GatewayIdentity& identity() const { return identity_; }

 private:
  friend class TlsStream;
  TlsContext(SSL_CTX* ctx, security::GatewayIdentity identity) : ctx_(ctx), identity_(std::move(identity)) {}

  SSL_CTX* const ctx_;  // owned; each SSL holds its own reference too
  const security::GatewayIdentity identity_;
};

enum class TlsRole { kClient, kServer };

struct TlsHandshakeOptions {
  // Client: the dialing side. Server: the accepting side. Default client.
  TlsRole role = TlsRole::kClient;
  // The cluster the peer's certificate must name; "" accepts any cluster of
  // this gateway's namespace and job (an accepting gateway learns who called
  // from peer_identity()). Default "".
  std::string expected_peer_cluster;
  // Names the peer in messages, e.g. "10.0.0.2:7000". Default "peer".
  std::string peer_label = "peer";
  // After refusing a peer, how long to keep reading (and discarding) its
  // bytes so that our alert reaches it before the connection closes (closing
  // with unread bytes sends a TCP reset, which can destroy the alert). Also
  // bounded by the handshake deadline. Default 1 s.
  Clock::Duration refusal_linger = std::chrono::seconds(1);
};

class TlsStream final : public Stream {
 public:
  // Runs the TLS 1.3 handshake (plus the confirmation, see above) over
  // `inner` and returns the encrypted stream. On error `inner` is destroyed;
  // the message says why: kFailedPrecondition when a certificate was refused
  // (by us: the verification error, e.g. "certificate has expired", or the
  // identity mismatch; by the peer: the TLS alert it sent), kUnavailable when
  // the peer closed the connection, kDeadlineExceeded, kCancelled after
  // Shutdown of the inner stream, kInvalidArgument when the peer does not
  // speak TLS.
  static StatusOr<std::unique_ptr<TlsStream>> Handshake(const TlsContext& context, std::unique_ptr<Stream> inner,
                                                        const TlsHandshakeOptions& options,
                                                        Clock::TimePoint deadline);

  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Encrypts in pieces of at most 64 KiB (four TLS records) and writes each
  // to the inner stream before encrypting the next, so memory stays bounded.
  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override;
  // A kDeadlineExceeded before the first byte of a TLS record arrived leaves
  // the stream usable (polling with short deadlines works as on TCP); one in
  // the middle of a record does not (the Stream contract: abandon it).
  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override;
  // Sends bytes OpenSSL queued while reading, then flushes the inner stream.
  Status Flush(Clock::TimePoint deadline) override;
  // Shuts the inner stream down (no close_notify: Shutdown must not block).
  void Shutdown() override;
  double DeliveryRateBytesPerSecond() const override;

  // The verified identity of the peer.
  const security::GatewayIdentity& peer_identity() const { return peer_identity_; }
  // The negotiated cipher suite, e.g. "TLS_AES_256_GCM_SHA384".
  std::string cipher() const;

 private:
  TlsStream(std::unique_ptr<Stream> inner, SSL* ssl, BIO* rbio, BIO* wbio, std::string peer_label);

  // Reads one whole TLS record from inner_ into OpenSSL's read BIO. Reader
  // thread only.
  Status ReadRecord(Clock::TimePoint deadline);
  // Moves everything in the write BIO into `out` (appending). Needs ssl_mu_.
  void DrainWriteBioLocked(std::vector<uint8_t>* out);
  // Writes what the write BIO holds to inner_. Writer thread only.
  Status SendPending(Clock::TimePoint deadline);

  const std::unique_ptr<Stream> inner_;
  const std::string peer_label_;
  security::GatewayIdentity peer_identity_;  // set by Handshake, then constant

  mutable std::mutex ssl_mu_;
  SSL* const ssl_;    // owned; guarded by ssl_mu_
  BIO* const rbio_;   // owned by ssl_; guarded by ssl_mu_
  BIO* const wbio_;   // owned by ssl_; guarded by ssl_mu_

  std::vector<uint8_t> record_;     // reader thread only: the record being read
  std::vector<uint8_t> ciphertext_;  // writer thread only: drained write BIO
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_TLS_STREAM_H_
