// Small OpenSSL helpers shared by the certificate code and the TLS stream:
// owning handles and the error queue as text. Includes OpenSSL headers, so
// only .cc files of targets that link OpenSSL include it.
//
// Thread safety: OpenSslReasons reads the calling thread's error queue.
#ifndef STELLA_SRC_SECURITY_OPENSSL_UTIL_H_
#define STELLA_SRC_SECURITY_OPENSSL_UTIL_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace stella::security {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// This thread's OpenSSL error queue as "reason; reason" ("" if empty), and
// empties it.
std::string OpenSslReasons();

}  // namespace stella::security

#endif  // STELLA_SRC_SECURITY_OPENSSL_UTIL_H_
