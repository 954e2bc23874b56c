#include "src/cli/launch_plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <system_error>

namespace stella::cli {
namespace {

constexpr int kMaxPort = 65535;

std::string JoinPorts(const std::vector<int>& ports) {
  std::string out;
  for (int p : ports) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

}  // namespace

StatusOr<std::vector<int>> PickFreeLoopbackPorts(int count) {
  std::vector<int> sockets;
  std::vector<int> ports;
  Status status;
  // All sockets stay bound until every port is read back, so the ports are
  // distinct from each other.
  for (int i = 0; i < count && status.ok(); ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      status = ErrnoError("socket", errno);
      break;
    }
    sockets.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      status = ErrnoError("bind 127.0.0.1:0", errno);
    } else if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      status = ErrnoError("getsockname", errno);
    } else {
      ports.push_back(ntohs(addr.sin_port));
    }
  }
  for (int fd : sockets) close(fd);
  if (!status.ok()) return status.WithContext("picking free loopback ports");
  return ports;
}

StatusOr<LaunchPlan> BuildLaunchPlan(const spec::StellaJob& job, const LaunchPlanOptions& options) {
  if (options.job_path.empty()) return InvalidArgumentError("LaunchPlanOptions.job_path is empty");
  if (options.runtime_path.empty()) return InvalidArgumentError("LaunchPlanOptions.runtime_path is empty");
  const auto& clusters = job.spec.clusters;
  const int num_clusters = static_cast<int>(clusters.size());
  if (num_clusters == 0) return InvalidArgumentError("spec.clusters: the job has no clusters");
  if (options.base_port < 0 || options.base_port > kMaxPort) {
    return InvalidArgumentError("base port must be in 0..65535, got " + std::to_string(options.base_port));
  }

  if (!options.gateway_tls_dirs.empty() && static_cast<int>(options.gateway_tls_dirs.size()) != num_clusters) {
    return InvalidArgumentError("LaunchPlanOptions.gateway_tls_dirs: need one per cluster (" +
                                std::to_string(num_clusters) + "), got " +
                                std::to_string(options.gateway_tls_dirs.size()));
  }

  std::error_code ec;
  std::filesystem::path job_path = std::filesystem::absolute(options.job_path, ec);
  if (ec) return InvalidArgumentError("cannot make job path " + options.job_path + " absolute: " + ec.message());

  LaunchPlan plan;
  if (options.base_port == 0) {
    STELLA_ASSIGN_OR_RETURN(std::vector<int> ports, PickFreeLoopbackPorts(2 * num_clusters));
    plan.store_ports.assign(ports.begin(), ports.begin() + num_clusters);
    plan.wan_ports.assign(ports.begin() + num_clusters, ports.end());
  } else {
    if (options.base_port + 2 * num_clusters - 1 > kMaxPort) {
      return InvalidArgumentError("base port " + std::to_string(options.base_port) + " + " +
                                  std::to_string(2 * num_clusters) + " ports exceeds 65535");
    }
    for (int c = 0; c < num_clusters; ++c) {
      plan.store_ports.push_back(options.base_port + c);
      plan.wan_ports.push_back(options.base_port + num_clusters + c);
    }
  }

  const int metrics_base = job.spec.metrics.port;
  const int total_workers = job.TotalWorkers();
  if (metrics_base > 0) {
    if (metrics_base + total_workers - 1 > kMaxPort) {
      return InvalidArgumentError("spec.metrics.port: " + std::to_string(metrics_base) + " + " +
                                  std::to_string(total_workers) + " workers exceeds port 65535");
    }
    std::set<int> taken(plan.store_ports.begin(), plan.store_ports.end());
    taken.insert(plan.wan_ports.begin(), plan.wan_ports.end());
    for (int g = 0; g < total_workers; ++g) {
      if (taken.count(metrics_base + g) != 0) {
        return InvalidArgumentError("spec.metrics.port: metrics port " + std::to_string(metrics_base + g) +
                                    " of global rank " + std::to_string(g) +
                                    " collides with a store/gateway port; choose another metrics port");
      }
    }
  }

  const std::string wan_ports = JoinPorts(plan.wan_ports);
  int global_rank = 0;
  for (int c = 0; c < num_clusters; ++c) {
    for (int r = 0; r < clusters[c].workers; ++r, ++global_rank) {
      WorkerLaunch w;
      w.name = clusters[c].name + "/" + std::to_string(r);
      w.cluster_index = c;
      w.cluster_name = clusters[c].name;
      w.local_rank = r;
      w.global_rank = global_rank;
      w.metrics_port = metrics_base > 0 ? metrics_base + global_rank : 0;

      ProcessSpec p;
      p.name = w.name;
      p.argv = {options.runtime_path,
                "--job",
                job_path.string(),
                "--cluster-index",
                std::to_string(c),
                "--local-rank",
                std::to_string(r),
                "--store-port",
                std::to_string(plan.store_ports[c]),
                "--wan-ports",
                wan_ports,
                "--metrics-port",
                std::to_string(w.metrics_port)};
      if (r == 0 && num_clusters > 1 && !options.gateway_tls_dirs.empty()) {
        p.argv.push_back("--tls-dir");
        p.argv.push_back(options.gateway_tls_dirs[static_cast<size_t>(c)]);
      }
      if (options.resume) p.argv.push_back("--resume");
      plan.processes.push_back(std::move(p));
      plan.workers.push_back(std::move(w));
    }
  }
  return plan;
}

}  // namespace stella::cli
