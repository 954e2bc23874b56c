// EphemeralTls: the TLS material of one `stella run`. A fresh job CA and one
// gateway certificate per cluster (src/security/certs.h), written to a
// private temporary directory that lives exactly as long as this object:
//
//   <root>/<cluster name>/{ca.crt, tls.crt, tls.key}
//
// <root> is created by mkdtemp (mode 0700, so only this user can read the
// keys; tls.key files are 0600 as well). The CA's private key is never
// written: once the gateway certificates exist nothing else may be signed.
// The destructor removes the whole tree; a CLI killed by SIGKILL leaves it
// behind (still private to the user).
//
// Thread safety: thread-compatible; create and destroy on one thread.
#ifndef STELLA_SRC_CLI_RUN_TLS_H_
#define STELLA_SRC_CLI_RUN_TLS_H_

#include <memory>
#include <string>
#include <vector>

#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::cli {

// A fresh job CA and one gateway certificate per cluster, written to
// <root>/<cluster name>/ (root must exist); returns those directories in
// spec.clusters order. The CA's private key is not written.
StatusOr<std::vector<std::string>> WriteJobTls(const spec::StellaJob& job, const std::string& root);

class EphemeralTls {
 public:
  // `parent`: where to create "stella-tls-XXXXXX"; "" = $TMPDIR, else /tmp.
  static StatusOr<std::unique_ptr<EphemeralTls>> Create(const spec::StellaJob& job, const std::string& parent = "");
  ~EphemeralTls();
  EphemeralTls(const EphemeralTls&) = delete;
  EphemeralTls& operator=(const EphemeralTls&) = delete;

  const std::string& root() const { return root_; }
  // One --tls-dir per cluster, in spec.clusters order.
  const std::vector<std::string>& cluster_dirs() const { return cluster_dirs_; }

 private:
  explicit EphemeralTls(std::string root) : root_(std::move(root)) {}

  const std::string root_;
  std::vector<std::string> cluster_dirs_;
};

}  // namespace stella::cli

#endif  // STELLA_SRC_CLI_RUN_TLS_H_
