#include "src/security/certs.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "src/base/dns_name.h"
#include "src/base/file.h"
#include "src/security/openssl_util.h"

namespace stella::security {
namespace {

constexpr char kScheme[] = "stella://";

// Owning handles for the OpenSSL objects used here (and openssl_util.h).
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};

Status OpenSslError(const std::string& what) {
  const std::string detail = OpenSslReasons();
  return InternalError(what + " failed" + (detail.empty() ? "" : ": " + detail));
}

Status CheckLabel(const char* what, const std::string& value) {
  if (IsDns1123Label(value)) return Status::Ok();
  return InvalidArgumentError(std::string(what) +
                              " must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 "
                              "characters), got \"" +
                              value + "\"");
}

Status CheckOptions(const CertificateOptions& o) {
  if (o.valid_for.count() <= 0) {
    return InvalidArgumentError("CertificateOptions.valid_for must be > 0 seconds, got " +
                                std::to_string(o.valid_for.count()));
  }
  return Status::Ok();
}

StatusOr<std::string> BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n < 0 || data == nullptr) return OpenSslError("reading a memory BIO");
  return std::string(data, static_cast<size_t>(n));
}

StatusOr<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("PEM_write_bio_X509");
  return BioText(bio.get());
}

StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("PEM_write_bio_PrivateKey");
  }
  return BioText(bio.get());
}

StatusOr<X509Ptr> ParseCert(const std::string& pem, const char* what) {
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    const std::string detail = OpenSslReasons();
    return InvalidArgumentError(std::string(what) + ": not a PEM certificate" +
                                (detail.empty() ? "" : " (" + detail + ")"));
  }
  return cert;
}

StatusOr<PkeyPtr> ParseKey(const std::string& pem, const char* what) {
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    // The key text itself never goes into the message.
    return InvalidArgumentError(std::string(what) + ": not an unencrypted PEM private key");
  }
  return key;
}

StatusOr<PkeyPtr> NewP256Key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("generating an ECDSA P-256 key");
  return key;
}

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(std::string("adding extension ") + OBJ_nid2sn(nid) + " = " + value);
  }
  return Status::Ok();
}

Status AddNameEntry(X509_NAME* name, const char* field, const std::string& value) {
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()), -1,
                                 -1, 0) != 1) {
    return OpenSslError(std::string("setting subject ") + field);
  }
  return Status::Ok();
}

// A new certificate with a random 127-bit serial, the given validity, the
// subject O=<namespace>, OU=<job>, CN=<cn>, and `key`'s public half.
StatusOr<X509Ptr> NewCert(const CertificateOptions& o, const std::string& namespace_name, const std::string& job,
                          const std::string& cn, EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return OpenSslError("X509_new");
  std::unique_ptr<BIGNUM, BnFree> serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslError("making a random serial number");
  }
  const time_t now = std::time(nullptr);
  const time_t from = now + static_cast<time_t>(o.valid_from.count());
  const time_t until = from + static_cast<time_t>(o.valid_for.count());
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), from) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), until) == nullptr) {
    return OpenSslError("setting the validity period");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  STELLA_RETURN_IF_ERROR(AddNameEntry(name, "O", namespace_name));
  STELLA_RETURN_IF_ERROR(AddNameEntry(name, "OU", job));
  STELLA_RETURN_IF_ERROR(AddNameEntry(name, "CN", cn));
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslError("X509_set_pubkey");
  return cert;
}

std::chrono::system_clock::time_point ToTimePoint(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// The stella:// URIs in the certificate's subjectAltName.
std::vector<std::string> StellaUris(X509* cert) {
  std::vector<std::string> out;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
    if (uri.rfind(kScheme, 0) == 0) out.push_back(std::move(uri));
  }
  return out;
}

// Splits "stella://a/b[/c]" into its parts.
std::vector<std::string> UriParts(std::string_view uri) {
  std::vector<std::string> parts;
  uri.remove_prefix(sizeof(kScheme) - 1);
  size_t start = 0;
  while (true) {
    const size_t slash = uri.find('/', start);
    parts.emplace_back(uri.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

}  // namespace

std::string GatewayIdentity::Uri() const { return kScheme + namespace_name + "/" + job + "/" + cluster; }

StatusOr<GatewayIdentity> GatewayIdentity::FromUri(std::string_view uri) {
  const std::string quoted = "\"" + std::string(uri) + "\"";
  if (uri.rfind(kScheme, 0) != 0) {
    return InvalidArgumentError("gateway identity " + quoted + ": expected stella://<namespace>/<job>/<cluster>");
  }
  const std::vector<std::string> parts = UriParts(uri);
  if (parts.size() != 3) {
    return InvalidArgumentError("gateway identity " + quoted + ": expected 3 parts " +
                                "(stella://<namespace>/<job>/<cluster>), got " + std::to_string(parts.size()));
  }
  GatewayIdentity id{parts[0], parts[1], parts[2]};
  Status s = CheckLabel("namespace", id.namespace_name);
  if (s.ok()) s = CheckLabel("job", id.job);
  if (s.ok()) s = CheckLabel("cluster", id.cluster);
  if (!s.ok()) return s.WithContext("gateway identity " + quoted);
  return id;
}

StatusOr<JobCa> CreateJobCa(const std::string& namespace_name, const std::string& job,
                            const CertificateOptions& options) {
  STELLA_RETURN_IF_ERROR(CheckLabel("namespace", namespace_name));
  STELLA_RETURN_IF_ERROR(CheckLabel("job", job));
  STELLA_RETURN_IF_ERROR(CheckOptions(options));
  ERR_clear_error();
  STELLA_ASSIGN_OR_RETURN(PkeyPtr key, NewP256Key());
  STELLA_ASSIGN_OR_RETURN(X509Ptr cert, NewCert(options, namespace_name, job, "stella job CA", key.get()));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) return OpenSslError("X509_set_issuer_name");
  STELLA_RETURN_IF_ERROR(AddExtension(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, c, NID_key_usage, "critical,keyCertSign,cRLSign"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, c, NID_subject_key_identifier, "hash"));
  STELLA_RETURN_IF_ERROR(
      AddExtension(c, c, NID_subject_alt_name, std::string("URI:") + kScheme + namespace_name + "/" + job));
  if (X509_sign(c, key.get(), EVP_sha256()) <= 0) return OpenSslError("signing the job CA");
  JobCa ca;
  STELLA_ASSIGN_OR_RETURN(ca.certificate_pem, CertPem(c));
  STELLA_ASSIGN_OR_RETURN(ca.private_key_pem, KeyPem(key.get()));
  return ca;
}

StatusOr<TlsMaterial> IssueGatewayCertificate(const JobCa& ca, const std::string& cluster,
                                              const CertificateOptions& options) {
  STELLA_RETURN_IF_ERROR(CheckLabel("cluster", cluster));
  STELLA_RETURN_IF_ERROR(CheckOptions(options));
  STELLA_ASSIGN_OR_RETURN(CertificateInfo ca_info, DescribeCertificate(ca.certificate_pem));
  if (!ca_info.is_ca || ca_info.identity.job.empty()) {
    return InvalidArgumentError("JobCa.certificate_pem (" + ca_info.subject + ") is not a Stella job CA");
  }
  STELLA_ASSIGN_OR_RETURN(X509Ptr ca_cert, ParseCert(ca.certificate_pem, "JobCa.certificate_pem"));
  STELLA_ASSIGN_OR_RETURN(PkeyPtr ca_key, ParseKey(ca.private_key_pem, "JobCa.private_key_pem"));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("JobCa.private_key_pem does not match JobCa.certificate_pem");
  }
  ERR_clear_error();
  GatewayIdentity id{ca_info.identity.namespace_name, ca_info.identity.job, cluster};
  STELLA_ASSIGN_OR_RETURN(PkeyPtr key, NewP256Key());
  STELLA_ASSIGN_OR_RETURN(X509Ptr cert, NewCert(options, id.namespace_name, id.job, cluster, key.get()));
  X509* c = cert.get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert.get())) != 1) {
    return OpenSslError("X509_set_issuer_name");
  }
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_subject_key_identifier, "hash"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  STELLA_RETURN_IF_ERROR(AddExtension(c, ca_cert.get(), NID_subject_alt_name, "URI:" + id.Uri()));
  if (X509_sign(c, ca_key.get(), EVP_sha256()) <= 0) return OpenSslError("signing the gateway certificate");
  TlsMaterial m;
  m.ca_crt = ca.certificate_pem;
  STELLA_ASSIGN_OR_RETURN(m.tls_crt, CertPem(c));
  STELLA_ASSIGN_OR_RETURN(m.tls_key, KeyPem(key.get()));
  return m;
}

StatusOr<CertificateInfo> DescribeCertificate(const std::string& pem) {
  STELLA_ASSIGN_OR_RETURN(X509Ptr cert, ParseCert(pem, "certificate"));
  CertificateInfo info;
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253) < 0) {
    return OpenSslError("printing the certificate subject");
  }
  STELLA_ASSIGN_OR_RETURN(info.subject, BioText(bio.get()));
  info.is_ca = X509_check_ca(cert.get()) > 0;
  info.not_before = ToTimePoint(X509_get0_notBefore(cert.get()));
  info.not_after = ToTimePoint(X509_get0_notAfter(cert.get()));
  const std::vector<std::string> uris = StellaUris(cert.get());
  if (uris.size() > 1) {
    return InvalidArgumentError("certificate " + info.subject + " names " + std::to_string(uris.size()) +
                                " stella:// identities (\"" + uris[0] + "\", \"" + uris[1] +
                                "\"); expected exactly one");
  }
  if (uris.empty()) {
    return InvalidArgumentError("certificate " + info.subject +
                                " names no stella:// identity in its subjectAltName (expected a URI "
                                "stella://<namespace>/<job>/<cluster>)");
  }
  if (info.is_ca) {
    const std::vector<std::string> parts = UriParts(uris[0]);
    if (parts.size() != 2 || !IsDns1123Label(parts[0]) || !IsDns1123Label(parts[1])) {
      return InvalidArgumentError("CA certificate " + info.subject + ": identity \"" + uris[0] +
                                  "\" is not stella://<namespace>/<job>");
    }
    info.identity.namespace_name = parts[0];
    info.identity.job = parts[1];
  } else {
    auto id = GatewayIdentity::FromUri(uris[0]);
    if (!id.ok()) return id.status().WithContext("certificate " + info.subject);
    info.identity = std::move(id).value();
  }
  ERR_clear_error();
  return info;
}

Status WriteTlsDir(const std::string& dir, const TlsMaterial& m) {
  if (dir.empty()) return InvalidArgumentError("TLS directory path is empty");
  if (m.ca_crt.empty() || m.tls_crt.empty() || m.tls_key.empty()) {
    return InvalidArgumentError("TlsMaterial for " + dir + ": ca.crt, tls.crt and tls.key must all be non-empty");
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("cannot create TLS directory " + dir, errno);
  }
  // Key first: a reader that sees a new certificate finds its key already.
  AtomicWriteOptions key_options;
  key_options.mode = 0600;
  STELLA_RETURN_IF_ERROR(WriteFileAtomically(dir + "/tls.key", m.tls_key, key_options));
  STELLA_RETURN_IF_ERROR(WriteFileAtomically(dir + "/tls.crt", m.tls_crt));
  return WriteFileAtomically(dir + "/ca.crt", m.ca_crt);
}

StatusOr<TlsMaterial> ReadTlsDir(const std::string& dir) {
  TlsMaterial m;
  STELLA_ASSIGN_OR_RETURN(m.ca_crt, ReadWholeFile(dir + "/ca.crt"));
  STELLA_ASSIGN_OR_RETURN(m.tls_crt, ReadWholeFile(dir + "/tls.crt"));
  STELLA_ASSIGN_OR_RETURN(m.tls_key, ReadWholeFile(dir + "/tls.key"));
  return m;
}

}  // namespace stella::security
