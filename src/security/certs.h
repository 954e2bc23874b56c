// Certificates for mutual TLS between cluster gateways (docs/reliability.md,
// "Mutual TLS").
//
// Every job has its own certificate authority; every gateway holds a
// certificate signed by it that names the gateway's identity as a URI in the
// subjectAltName:
//
//   stella://<namespace>/<job>/<cluster>
//
// (three DNS-1123 labels, as the StellaJob spec requires of them). A gateway
// accepts a peer only if the peer's certificate chains to the job CA, is
// within its validity period and names the same namespace and job (and the
// expected cluster); src/net/tls_stream.h enforces that.
//
// This library makes that material in memory with the OpenSSL 3 API (ECDSA
// P-256 keys, SHA-256 signatures) as PEM text, so the operator can put it in
// Kubernetes Secrets, and writes/reads the directory layout stella-runtime
// takes with --tls-dir: the keys of a Kubernetes TLS Secret plus the CA,
//
//   DIR/ca.crt   the job CA certificate (the only trust anchor)
//   DIR/tls.crt  this gateway's certificate
//   DIR/tls.key  its private key (PKCS#8 PEM, mode 0600)
//
// Thread safety: every function is reentrant; values are plain data.
#ifndef STELLA_SRC_SECURITY_CERTS_H_
#define STELLA_SRC_SECURITY_CERTS_H_

#include <chrono>
#include <string>
#include <string_view>

#include "src/base/status.h"

namespace stella::security {

// Who a gateway certificate speaks for.
struct GatewayIdentity {
  std::string namespace_name;
  std::string job;
  std::string cluster;

  // "stella://<namespace>/<job>/<cluster>".
  std::string Uri() const;
  // Parses Uri()'s format; each part must be a DNS-1123 label. The error
  // names the offending part and value.
  static StatusOr<GatewayIdentity> FromUri(std::string_view uri);

  bool operator==(const GatewayIdentity& o) const {
    return namespace_name == o.namespace_name && job == o.job && cluster == o.cluster;
  }
  bool operator!=(const GatewayIdentity& o) const { return !(*this == o); }
};

struct CertificateOptions {
  // Start of validity relative to now. Default -1 h: a peer cluster whose
  // clock runs somewhat behind still accepts a fresh certificate.
  std::chrono::seconds valid_from{-3600};
  // Validity period from that start. Must be > 0. Default 365 days.
  std::chrono::seconds valid_for{std::chrono::hours(24 * 365)};
};

// A job CA: its certificate and its private key, PEM.
struct JobCa {
  std::string certificate_pem;
  std::string private_key_pem;  // secret: never log it
};

// What one gateway needs (and what --tls-dir holds), PEM.
struct TlsMaterial {
  std::string ca_crt;   // the job CA certificate
  std::string tls_crt;  // this gateway's certificate
  std::string tls_key;  // its private key; secret: never log it
};

// Facts read back from a certificate (for checks, messages and tests).
struct CertificateInfo {
  std::string subject;  // one line, e.g. "CN=alpha"
  bool is_ca = false;
  // The stella:// identity in the subjectAltName; a job CA names its
  // namespace and job (stella://<namespace>/<job>) and leaves cluster empty.
  GatewayIdentity identity;
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
};

// Creates the CA of job `job` in `namespace_name` (both DNS-1123 labels):
// CA:TRUE with path length 0, so it can sign gateway certificates only.
StatusOr<JobCa> CreateJobCa(const std::string& namespace_name, const std::string& job,
                            const CertificateOptions& options = {});

// Issues the certificate of cluster `cluster`'s gateway (a DNS-1123 label),
// signed by `ca`, for both TLS client and server use. The namespace and job
// come from the CA. Returns the CA certificate along with it.
StatusOr<TlsMaterial> IssueGatewayCertificate(const JobCa& ca, const std::string& cluster,
                                              const CertificateOptions& options = {});

// Parses one PEM certificate.
StatusOr<CertificateInfo> DescribeCertificate(const std::string& pem);

// Writes ca.crt, tls.crt (0644) and tls.key (0600) into `dir`, creating it
// with mode 0700 if missing. Each file is written to a temporary name, synced
// and renamed into place, so a reader sees the old or the new file, never a
// partial one. (The three renames are not one atomic step; a reader that
// catches a mix finds a key that does not match its certificate and says so.)
Status WriteTlsDir(const std::string& dir, const TlsMaterial& material);

// Reads the three files back; errors name the missing or unreadable file.
StatusOr<TlsMaterial> ReadTlsDir(const std::string& dir);

}  // namespace stella::security

#endif  // STELLA_SRC_SECURITY_CERTS_H_
