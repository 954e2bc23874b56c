// ClusterConfig: how to reach and authenticate to one Kubernetes API server,
// read from a kubeconfig or from the in-cluster service-account environment.
//
// Parsing is strict: every problem is an InvalidArgument whose message names
// the kubeconfig field (e.g. "users[0].user.client-certificate-data: not valid
// base64"); unsupported auth methods (exec plugins, auth providers, basic
// auth) are refused by name rather than silently ignored. Files a kubeconfig
// references (certificate-authority, client-certificate, client-key) are read
// at parse time and their PEM stored inline; a tokenFile is kept as a path
// because projected service-account tokens rotate and must be re-read on use.
//
// Thread safety: free functions; reentrant.
#ifndef STELLA_OPERATOR_KUBE_CONFIG_H_
#define STELLA_OPERATOR_KUBE_CONFIG_H_

#include <string>

#include "src/base/status.h"

namespace stella::kube {

struct ClusterConfig {
  std::string name;          // for logs and metric labels (the kubeconfig context name)
  std::string server;        // https://host:port (http:// is accepted for tests/proxies)
  std::string bearer_token;  // a static token, or
  std::string token_file;    // a file re-read on every request (rotating SA tokens)
  std::string ca_pem;        // "" and !insecure -> the system roots
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client-certificate auth: both or neither
  std::string client_key_pem;
  std::string default_namespace = "default";
};

// Parses kubeconfig YAML. `context` "" means the current-context. Relative
// file paths are resolved against `base_dir` ("" = the working directory).
StatusOr<ClusterConfig> ParseKubeconfig(const std::string& yaml, const std::string& context = "",
                                        const std::string& base_dir = "");

// Parses a kubeconfig that does not come from this machine's own files (a
// member cluster's kubeconfig in a Secret): like ParseKubeconfig, but every
// file reference (certificate-authority, client-certificate, client-key,
// tokenFile) is an InvalidArgument naming the field. Reading them would let
// whoever writes the Secret make the operator load its own files -- tokenFile:
// /var/run/secrets/kubernetes.io/serviceaccount/token would send the
// operator's token to a server of the author's choosing. Such kubeconfigs
// must be self-contained (`kubectl config view --minify --flatten --raw`).
StatusOr<ClusterConfig> ParseInlineKubeconfig(const std::string& yaml, const std::string& context = "");

// Reads and parses a kubeconfig file; relative paths in it are resolved
// against the file's directory (as kubectl does).
StatusOr<ClusterConfig> LoadKubeconfigFile(const std::string& path, const std::string& context = "");

// The service-account directory every pod gets.
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// Config for a process running in a pod: server from KUBERNETES_SERVICE_HOST
// and KUBERNETES_SERVICE_PORT, token (as token_file, re-read on use), ca.crt
// and namespace from `sa_dir` (injectable for tests).
StatusOr<ClusterConfig> InClusterConfig(const std::string& sa_dir = kServiceAccountDir);

// Strict RFC 4648 base64 (padding required, no whitespace except newlines,
// which kubeconfigs sometimes wrap data with). Exposed for the tests.
StatusOr<std::string> DecodeBase64(const std::string& in);

}  // namespace stella::kube

#endif  // STELLA_OPERATOR_KUBE_CONFIG_H_
