#include "tests/operator/control_plane.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cpprest/asyncrt_utils.h>
#include <cpprest/http_client.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace stella::kube::testing {

using nlohmann::json;

#ifndef STELLA_SOURCE_DIR_DEFAULT
#define STELLA_SOURCE_DIR_DEFAULT "."
#endif

std::string SourceDir() {
  const char* d = std::getenv("STELLA_SOURCE_DIR");
  return d && *d ? d : STELLA_SOURCE_DIR_DEFAULT;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

namespace {

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  return out + "'";
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string LastLines(const std::string& text, int n) {
  size_t pos = text.size();
  for (int i = 0; i <= n && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

}  // namespace

StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::Start(const std::string& extra_apiserver_args) {
  const std::string scripts = SourceDir() + "/scripts";
  CommandResult bin = RunCommand("bash " + Quote(scripts + "/testbin.sh"));
  if (bin.exit_code != 0) {
    return FailedPreconditionError("scripts/testbin.sh could not provide the Kubernetes control-plane binaries (exit " +
                                   std::to_string(bin.exit_code) + "): " + LastLines(bin.output, 5));
  }
  char tmpl[] = "/tmp/stella-kube-XXXXXX";
  if (!mkdtemp(tmpl)) return IoError("mkdtemp failed");
  std::unique_ptr<ControlPlane> cp(new ControlPlane());
  cp->root_ = tmpl;
  cp->dir_ = cp->root_ + "/cp";
  // The plane dies with this test process, also when ctest kills it.
  std::string cmd = "STELLA_OWNER_PID=" + std::to_string(getpid()) + " ";
  if (!extra_apiserver_args.empty()) cmd += "STELLA_APISERVER_ARGS=" + Quote(extra_apiserver_args) + " ";
  cmd += "bash " + Quote(scripts + "/control-plane.sh") + " start " + Quote(cp->dir_);
  CommandResult start = RunCommand(cmd);
  if (start.exit_code != 0) {
    return UnavailableError("control-plane.sh start failed (exit " + std::to_string(start.exit_code) +
                            "): " + LastLines(start.output, 20));
  }
  STELLA_ASSIGN_OR_RETURN(cp->config_, LoadKubeconfigFile(cp->kubeconfig_path()));
  FILE* f = std::fopen((cp->dir_ + "/etcd.url").c_str(), "r");
  if (!f) return IoError("control plane wrote no etcd.url");
  char url[256] = {0};
  const bool read_ok = std::fgets(url, sizeof(url), f) != nullptr;
  std::fclose(f);
  if (!read_ok) return IoError("control plane wrote an empty etcd.url");
  cp->etcd_url_ = Trim(url);
  return cp;
}

ControlPlane::~ControlPlane() {
  RunCommand("bash " + Quote(SourceDir() + "/scripts/control-plane.sh") + " stop " + Quote(dir_));
  RunCommand("rm -rf " + Quote(root_));
}

StatusOr<std::unique_ptr<Client>> ControlPlane::NewClient(ClientOptions options) const {
  return Client::Create(config_, std::move(options));
}

Status ControlPlane::StopApiServer() {
  CommandResult r =
      RunCommand("bash " + Quote(SourceDir() + "/scripts/control-plane.sh") + " stop-apiserver " + Quote(dir_));
  if (r.exit_code != 0) return UnavailableError("stop-apiserver: " + r.output);
  return Status::Ok();
}

Status ControlPlane::StartApiServer() {
  CommandResult r =
      RunCommand("bash " + Quote(SourceDir() + "/scripts/control-plane.sh") + " start-apiserver " + Quote(dir_));
  if (r.exit_code != 0) return UnavailableError("start-apiserver: " + LastLines(r.output, 20));
  return Status::Ok();
}

StatusOr<json> ControlPlane::EtcdPost(const std::string& api, const json& body) const {
  try {
    web::http::client::http_client c(etcd_url_);
    web::http::http_request req(web::http::methods::POST);
    req.set_request_uri(api);
    const std::string text = body.dump();
    req.set_body(std::vector<unsigned char>(text.begin(), text.end()));
    req.headers().set_content_type("application/json");
    web::http::http_response resp = c.request(req).get();
    const std::string out = resp.extract_string(true).get();
    if (resp.status_code() != 200) {
      return UnavailableError("etcd " + api + ": HTTP " + std::to_string(resp.status_code()) + ": " + out);
    }
    return json::parse(out);
  } catch (const std::exception& e) {
    return UnavailableError("etcd " + api + ": " + e.what());
  }
}

StatusOr<int64_t> ControlPlane::EtcdRevision() const {
  // A range over a key that never exists still reports the store's revision.
  STELLA_ASSIGN_OR_RETURN(json r, EtcdPost("/v3/kv/range", {{"key", "AA=="}}));
  return std::stoll(r["header"]["revision"].get<std::string>());
}

Status ControlPlane::EtcdDelete(const std::string& key) const {
  STELLA_ASSIGN_OR_RETURN(
      json r, EtcdPost("/v3/kv/deleterange",
                       {{"key", utility::conversions::to_base64(std::vector<unsigned char>(key.begin(), key.end()))}}));
  if (r.value("deleted", "0") != "1") return NotFoundError("etcd: key " + key + " not deleted: " + r.dump());
  return Status::Ok();
}

Status ControlPlane::EtcdPut(const std::string& key, const std::string& value) const {
  auto b64 = [](const std::string& s) {
    return utility::conversions::to_base64(std::vector<unsigned char>(s.begin(), s.end()));
  };
  return EtcdPost("/v3/kv/put", {{"key", b64(key)}, {"value", b64(value)}}).status();
}

Status ControlPlane::EtcdCompact(int64_t revision) const {
  return EtcdPost("/v3/kv/compaction", {{"revision", std::to_string(revision)}, {"physical", true}}).status();
}

namespace {

// Owns the binary's control plane; gtest owns the Environment object.
class SharedControlPlaneEnv : public ::testing::Environment {
 public:
  explicit SharedControlPlaneEnv(std::string args) : args_(std::move(args)) {}
  void SetUp() override {
    StatusOr<std::unique_ptr<ControlPlane>> cp = ControlPlane::Start(args_);
    if (!cp.ok() && cp.status().code() == StatusCode::kFailedPrecondition) {
      std::cerr << "SKIPPED: " << cp.status().message() << std::endl;
      std::exit(kSkipExitCode);
    }
    ASSERT_TRUE(cp.ok()) << cp.status().ToString();
    cp_ = std::move(*cp);
    Instance() = cp_.get();
  }
  void TearDown() override {
    Instance() = nullptr;
    cp_.reset();
  }
  static ControlPlane*& Instance() {
    static ControlPlane* instance = nullptr;  // set only between SetUp and TearDown
    return instance;
  }

 private:
  std::string args_;
  std::unique_ptr<ControlPlane> cp_;
};

}  // namespace

void InstallSharedControlPlane(const std::string& extra_apiserver_args) {
  ::testing::AddGlobalTestEnvironment(new SharedControlPlaneEnv(extra_apiserver_args));
}

ControlPlane& SharedControlPlane() {
  ControlPlane* cp = SharedControlPlaneEnv::Instance();
  STELLA_CHECK(cp != nullptr);
  return *cp;
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid() % 100000) + "-" + std::to_string(++counter);
}

Status EnsureNamespace(Client& client, const std::string& name) {
  STELLA_ASSIGN_OR_RETURN(Response r,
                          client.Create(ResourcePath("v1", "namespaces"),
                                        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}}));
  if (IsSuccess(r) || IsAlreadyExists(r)) return Status::Ok();
  return ResponseStatus(r, "create namespace " + name);
}

// ---------------------------------------------------------------------------
// TcpProxy

StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  std::unique_ptr<TcpProxy> p(new TcpProxy());
  p->target_port_ = target_port;
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listen_fd_ < 0) return ErrnoError("proxy socket", errno);
  int one = 1;
  setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(p->listen_fd_, 64) != 0) {
    return ErrnoError("proxy bind/listen", errno);
  }
  socklen_t len = sizeof(a);
  getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  p->port_ = ntohs(a.sin_port);
  p->accept_thread_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  Cut();
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> pumps;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pumps.swap(pumps_);
  }
  for (std::thread& t : pumps) t.join();
  close(listen_fd_);
}

void TcpProxy::Cut() {
  cut_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
}

void TcpProxy::Restore() { cut_ = false; }

void TcpProxy::AcceptLoop() {
  while (!stopping_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (poll(&pfd, 1, 50) <= 0) continue;
    const int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    if (cut_) {
      // A broken path: the peer sees its connection reset.
      linger lg{1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      close(c);
      continue;
    }
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      if (s >= 0) close(s);
      close(c);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.push_back(c);
    open_fds_.push_back(s);
    pumps_.emplace_back([this, c, s] { Pump(c, s); });
  }
}

void TcpProxy::Pump(int client_fd, int server_fd) {
  char buf[16384];
  pollfd pfds[2] = {{client_fd, POLLIN, 0}, {server_fd, POLLIN, 0}};
  while (!stopping_ && !cut_) {
    if (poll(pfds, 2, 50) <= 0) continue;
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = read(pfds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        done = true;
        break;
      }
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = write(pfds[1 - i].fd, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) {
          done = true;
          break;
        }
        off += w;
      }
    }
    if (done) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (int fd : {client_fd, server_fd}) {
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    close(fd);
  }
}

}  // namespace stella::kube::testing
