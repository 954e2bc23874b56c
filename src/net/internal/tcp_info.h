// The kernel's per-connection TCP statistics. Kept in its own file because the
// fields we need (tcpi_delivery_rate) exist only in <linux/tcp.h>, which
// conflicts with glibc's <netinet/tcp.h>.
#ifndef STELLA_SRC_NET_INTERNAL_TCP_INFO_H_
#define STELLA_SRC_NET_INTERNAL_TCP_INFO_H_

namespace stella::net::internal {

// tcpi_delivery_rate (bytes/s) of the TCP socket fd; 0 if the kernel does not
// report it (Linux < 4.9), fd is not a TCP socket, or the last sample was
// application-limited (the sender ran out of data, so the sample says nothing
// about the path; over a token bucket it may even show the burst rate).
double KernelDeliveryRate(int fd);

}  // namespace stella::net::internal

#endif  // STELLA_SRC_NET_INTERNAL_TCP_INFO_H_
