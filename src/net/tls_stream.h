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
// How it works: OpenSSL runs on a custom BIO over two buffers, not on the
// socket. The reader thread fills a receive buffer with Stream::ReadSome (one
// system call takes whatever records have arrived) and OpenSSL decrypts from
// it; OpenSSL's output is appended to an outbox that the writing thread
// swaps out and writes to the inner stream. One mutex (ssl_mu_) is held only
// around OpenSSL calls and buffer hand-overs, never across inner-stream I/O,
// so one thread can block in ReadAll while another writes: the inner
// Stream's own one-reader/one-writer contract does the rest. Bytes OpenSSL
// produces while reading (e.g. a TLS alert or a KeyUpdate reply) wait in the
// outbox and leave with the next WriteAll or Flush, so only the writing
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
#include <string>
#include <utility>
#include <vector>

#include "src/base/clock.h"
#include "src/base/mutex.h"
#include "src/base/status.h"
#include "src/base/thread_annotations.h"
#include "src/net/stream.h"
#include "src/security/certs.h"

// OpenSSL types, kept out of this header's includes.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;

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
                                                        const TlsHandshakeOptions& options, Clock::TimePoint deadline);

  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Encrypts in pieces of at most 64 KiB (four TLS records) and writes each
  // to the inner stream before encrypting the next, so memory stays bounded.
  Status WriteAll(const void* data, size_t n, Clock::TimePoint deadline) override;
  // A kDeadlineExceeded before any byte of this call was returned leaves the
  // stream usable, even in the middle of a TLS record (its bytes stay
  // buffered): polling with short deadlines works as on TCP.
  Status ReadAll(void* data, size_t n, Clock::TimePoint deadline) override;
  // Returns the plaintext already decrypted or buffered (at least one byte):
  // a framing layer above TLS gets whole records per call, not single bytes.
  StatusOr<size_t> ReadSome(void* data, size_t max, Clock::TimePoint deadline) override;
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
  TlsStream(std::unique_ptr<Stream> inner, std::string peer_label);
  // Creates ssl_ over our BIO; called once by Handshake.
  Status Init(const TlsContext& context, TlsRole role);

  // The BIO's callbacks (OpenSSL calls them under ssl_mu_, which they assert
  // for the analysis).
  static int BioRead(BIO* bio, char* out, int len);
  static int BioWrite(BIO* bio, const char* in, int len);
  static long BioCtrl(BIO* bio, int cmd, long num, void* ptr);

  // ReadAll (fill) and ReadSome (stop after the first plaintext) in one loop.
  StatusOr<size_t> Read(void* data, size_t n, bool fill, Clock::TimePoint deadline);
  // Reads what has arrived from inner_ into the receive buffer. Reader
  // thread only.
  Status Receive(Clock::TimePoint deadline);
  // Writes the outbox to inner_. Writer thread only.
  Status SendPending(Clock::TimePoint deadline);

  const std::unique_ptr<Stream> inner_;
  const std::string peer_label_;
  security::GatewayIdentity peer_identity_;  // set by Handshake, then constant

  mutable Mutex ssl_mu_;
  BIO_METHOD* bio_method_ = nullptr;  // owned; outlives ssl_
  // Owned. The pointer is set by Init before the stream is shared, then
  // constant; the session it points to is used under ssl_mu_.
  SSL* ssl_ PT_GUARDED_BY(ssl_mu_) = nullptr;
  // Receive buffer: OpenSSL consumes [in_begin_, in_end_); the reader fills
  // the tail beyond in_end_ without the lock (nobody else touches it).
  std::vector<uint8_t> in_;
  size_t in_begin_ GUARDED_BY(ssl_mu_) = 0;
  size_t in_end_ GUARDED_BY(ssl_mu_) = 0;
  std::vector<uint8_t> outbox_ GUARDED_BY(ssl_mu_);  // ciphertext not yet sent
  std::vector<uint8_t> sending_;                     // writer thread only: the outbox being sent
  // The peer's first 5 bytes, checked for a TLS record header (a peer that
  // speaks the plaintext protocol gets a clear message). Reader thread only.
  uint8_t first_header_[5] = {};
  size_t first_header_bytes_ = 0;
};

}  // namespace net
}  // namespace stella

#endif  // STELLA_SRC_NET_TLS_STREAM_H_
