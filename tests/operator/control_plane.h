// Test helpers for the operator suites (library stella_operator_testing):
// a real etcd + kube-apiserver started through scripts/control-plane.sh in a
// temporary directory, clients for it, direct etcd access for what the API
// cannot do (delete behind the API server's back, compact), and a loopback TCP
// proxy whose connections a test can cut.
//
// Start the control plane once per test binary with
// InstallSharedControlPlane() (a gtest Environment): when scripts/testbin.sh
// cannot provide the binaries the process prints why and exits 77, which
// ctest reports as skipped (SKIP_RETURN_CODE 77) — never a silent pass.
//
// Thread safety: ControlPlane's accessors are thread-safe; StopApiServer and
// StartApiServer must not race each other. TcpProxy is thread-safe.
#ifndef STELLA_TESTS_OPERATOR_CONTROL_PLANE_H_
#define STELLA_TESTS_OPERATOR_CONTROL_PLANE_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "src/base/status.h"

namespace stella::kube::testing {

// The exit code ctest treats as "skipped" for the operator suites.
inline constexpr int kSkipExitCode = 77;

class ControlPlane {
 public:
  // Runs scripts/testbin.sh: FailedPrecondition (with its last output lines)
  // when the binaries cannot be provided; then starts a control plane.
  // `extra_apiserver_args` goes to STELLA_APISERVER_ARGS.
  static StatusOr<std::unique_ptr<ControlPlane>> Start(const std::string& extra_apiserver_args = "");
  ~ControlPlane();  // stops it and removes its directory
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  const std::string& dir() const { return dir_; }
  std::string kubeconfig_path() const { return dir_ + "/kubeconfig"; }            // token, insecure
  std::string cert_kubeconfig_path() const { return dir_ + "/kubeconfig-cert"; }  // client cert + CA
  const ClusterConfig& config() const { return config_; }
  const std::string& etcd_url() const { return etcd_url_; }

  StatusOr<std::unique_ptr<Client>> NewClient(ClientOptions options = {}) const;

  // Stops only kube-apiserver (etcd keeps the data) / starts it again on the
  // same port and waits until it is ready.
  Status StopApiServer();
  Status StartApiServer();

  // etcd's current revision, a key deleted behind the API server's back
  // (e.g. "/registry/configmaps/ns/name"), and a compaction up to `revision`.
  StatusOr<int64_t> EtcdRevision() const;
  Status EtcdDelete(const std::string& key) const;
  Status EtcdPut(const std::string& key, const std::string& value) const;
  Status EtcdCompact(int64_t revision) const;

 private:
  ControlPlane() = default;
  StatusOr<nlohmann::json> EtcdPost(const std::string& api, const nlohmann::json& body) const;

  std::string root_;  // the temporary directory holding dir_
  std::string dir_;   // the control plane's directory (control-plane.sh DIR)
  std::string etcd_url_;
  ClusterConfig config_;
};

// The repository root: STELLA_SOURCE_DIR (set by ctest) or the configure-time
// source directory.
std::string SourceDir();

// Runs a shell command; returns its exit status and combined output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

// Registers a gtest Environment that starts one control plane for the whole
// test binary (exiting 77 with the reason when the binaries are unavailable)
// and stops it at the end. Call at namespace scope through a static
// initializer or from main before RUN_ALL_TESTS.
void InstallSharedControlPlane(const std::string& extra_apiserver_args = "");
// The shared control plane; only valid inside tests.
ControlPlane& SharedControlPlane();

// A unique DNS-1123 name for objects/namespaces of one test ("prefix-<n>").
std::string UniqueName(const std::string& prefix);

// Creates a namespace (ok if it exists).
Status EnsureNamespace(Client& client, const std::string& name);

// Loopback TCP proxy to 127.0.0.1:target_port on a port of its own. Cut()
// closes every open connection and refuses new ones (connections are reset,
// as when a network path breaks); Restore() accepts again. Owns one accept
// thread and one thread per connection; the destructor joins them all.
class TcpProxy {
 public:
  static StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  ~TcpProxy();
  int port() const { return port_; }
  void Cut();
  void Restore();

 private:
  TcpProxy() = default;
  void AcceptLoop();
  void Pump(int client_fd, int server_fd);

  int target_port_ = 0;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cut_{false};
  std::mutex mu_;
  std::vector<int> open_fds_;       // guarded by mu_: both ends of live connections
  std::vector<std::thread> pumps_;  // guarded by mu_
  std::thread accept_thread_;
};

}  // namespace stella::kube::testing

#endif  // STELLA_TESTS_OPERATOR_CONTROL_PLANE_H_
