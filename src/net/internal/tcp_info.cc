#include "src/net/internal/tcp_info.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstring>

namespace stella::net::internal {

double KernelDeliveryRate(int fd) {
  struct tcp_info info;
  std::memset(&info, 0, sizeof(info));
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
  // Older kernels fill a shorter struct without the field.
  if (len < offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof(info.tcpi_delivery_rate)) return 0;
  if (info.tcpi_delivery_rate_app_limited) return 0;
  return static_cast<double>(info.tcpi_delivery_rate);
}

}  // namespace stella::net::internal
