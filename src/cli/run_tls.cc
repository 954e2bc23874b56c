#include "src/cli/run_tls.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "src/security/certs.h"

namespace stella::cli {

StatusOr<std::vector<std::string>> WriteJobTls(const spec::StellaJob& job, const std::string& root) {
  auto ca = security::CreateJobCa(job.metadata.namespace_name, job.metadata.name);
  if (!ca.ok()) return ca.status().WithContext("creating the job CA");
  std::vector<std::string> dirs;
  for (const auto& cluster : job.spec.clusters) {
    auto material = security::IssueGatewayCertificate(*ca, cluster.name);
    if (!material.ok()) return material.status().WithContext("certificate of cluster " + cluster.name);
    const std::string dir = root + "/" + cluster.name;
    STELLA_RETURN_IF_ERROR(security::WriteTlsDir(dir, *material));
    dirs.push_back(dir);
  }
  return dirs;
}

StatusOr<std::unique_ptr<EphemeralTls>> EphemeralTls::Create(const spec::StellaJob& job, const std::string& parent) {
  std::string base = parent;
  if (base.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    base = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  }
  std::string root = base + "/stella-tls-XXXXXX";
  if (::mkdtemp(root.data()) == nullptr) {
    return ErrnoError("cannot create a private TLS directory under " + base, errno);
  }
  // From here the destructor cleans up, also on the error paths below.
  std::unique_ptr<EphemeralTls> tls(new EphemeralTls(root));
  STELLA_ASSIGN_OR_RETURN(tls->cluster_dirs_, WriteJobTls(job, root));
  return tls;
}

EphemeralTls::~EphemeralTls() {
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
  if (ec) {
    std::fprintf(stderr, "stella: warning: could not remove the run's TLS directory %s: %s\n", root_.c_str(),
                 ec.message().c_str());
  }
}

}  // namespace stella::cli
