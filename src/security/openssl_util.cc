#include "src/security/openssl_util.h"

#include <openssl/err.h>

#include <cstdio>

namespace stella::security {

std::string OpenSslReasons() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char code[32];
    std::snprintf(code, sizeof(code), "error %lu", e);
    out += (out.empty() ? "" : "; ") + std::string(reason != nullptr ? reason : code);
  }
  return out;
}

}  // namespace stella::security
