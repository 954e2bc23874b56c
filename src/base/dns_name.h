// DNS-1123 names as Kubernetes defines them (object names, and the names
// Stella puts in certificate identities).
#ifndef STELLA_SRC_BASE_DNS_NAME_H_
#define STELLA_SRC_BASE_DNS_NAME_H_

#include <string_view>

namespace stella {

// True if `name` is a DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63 chars.
bool IsDns1123Label(std::string_view name);
// Kubernetes object names such as a PersistentVolumeClaim's: dot-separated
// DNS-1123 labels, at most 253 characters.
bool IsDns1123Subdomain(std::string_view name);

}  // namespace stella

#endif  // STELLA_SRC_BASE_DNS_NAME_H_
