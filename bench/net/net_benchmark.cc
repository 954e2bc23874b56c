// Micro-benchmarks for the WAN transport's CPU costs: the software CRC32C
// that checksums every frame, framed transfer over loopback TCP (the ceiling
// a gateway reaches when the WAN is not the bottleneck), and the cost of
// mutual TLS: throughput of WanMesh's layering (frames -> [TLS ->] shaper ->
// TCP) at a shaped egress rate, plain vs TLS, and the handshake itself.
//
// The TLS cost figure in docs/benchmarks.md:
//   build/bench/net/net_benchmark --benchmark_filter='Shaped|Handshake'
//   --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>
#include <vector>

#include "src/base/crc32c.h"
#include "src/net/frame.h"
#include "src/net/framed_connection.h"
#include "src/net/shaped_stream.h"
#include "src/net/tcp.h"
#include "src/net/tls_stream.h"
#include "src/security/certs.h"

namespace stella {
namespace net {
namespace {

Clock::TimePoint Deadline() { return std::chrono::steady_clock::now() + std::chrono::seconds(30); }

void BM_Crc32c(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)), 0x5A);
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = Crc32c(data.data(), data.size(), crc);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(4 << 10)->Arg(1 << 20);

void BM_FramesOverLoopbackTcp(benchmark::State& state) {
  const size_t payload_bytes = static_cast<size_t>(state.range(0));
  auto listener = TcpListener::Create("127.0.0.1", 0);
  if (!listener.ok()) {
    state.SkipWithError(listener.status().ToString().c_str());
    return;
  }
  auto client = TcpConnect("127.0.0.1", (*listener)->port(), Deadline());
  auto server = (*listener)->Accept(Deadline());
  if (!client.ok() || !server.ok()) {
    state.SkipWithError("loopback connect failed");
    return;
  }
  FramedConnection sender(std::move(client).value());
  FramedConnection receiver(std::move(server).value());
  // The receiver drains until the Bye frame that ends the run.
  std::thread drain([&] {
    while (true) {
      auto f = receiver.Receive(Deadline());
      if (!f.ok() || f->header.type == FrameType::kBye) return;
    }
  });
  const std::vector<uint8_t> payload(payload_bytes, 0xA5);
  uint32_t tag = 0;
  for (auto _ : state) {
    Status s = sender.Send(FrameType::kDense, tag++, payload.data(), payload.size(), Deadline());
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  sender.Send(FrameType::kBye, 0, nullptr, 0, Deadline()).IgnoreError();
  drain.join();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_FramesOverLoopbackTcp)->Arg(4 << 10)->Arg(1 << 20)->UseRealTime();

// Gateway credentials of one job, made once (key generation is not what is
// measured).
struct Credentials {
  std::unique_ptr<TlsContext> alpha;
  std::unique_ptr<TlsContext> beta;
};

const Credentials& JobCredentials() {
  static const Credentials* creds = [] {
    auto* c = new Credentials;
    auto ca = security::CreateJobCa("default", "bench");
    auto a = security::IssueGatewayCertificate(*ca, "alpha");
    auto b = security::IssueGatewayCertificate(*ca, "beta");
    c->alpha = std::move(TlsContext::Create({*a})).value();
    c->beta = std::move(TlsContext::Create({*b})).value();
    return c;
  }();
  return *creds;
}

// A connected {sender, receiver} pair built like a WanMesh link: the sender
// shapes its egress at `rate_bits_per_s` (0 = unshaped) and, with `tls`,
// runs TLS above the shaper on both ends.
StatusOr<std::pair<std::unique_ptr<Stream>, std::unique_ptr<Stream>>> MeshLink(double rate_bits_per_s, bool tls) {
  STELLA_ASSIGN_OR_RETURN(auto listener, TcpListener::Create("127.0.0.1", 0));
  StatusOr<std::unique_ptr<Stream>> receiver = InternalError("not accepted");
  std::thread accept([&] {
    receiver = listener->Accept(Deadline());
    if (receiver.ok() && tls) {
      TlsHandshakeOptions o;
      o.role = TlsRole::kServer;
      auto secure = TlsStream::Handshake(*JobCredentials().beta, std::move(receiver).value(), o, Deadline());
      if (secure.ok()) {
        receiver = std::unique_ptr<Stream>(std::move(secure).value());
      } else {
        receiver = secure.status();
      }
    }
  });
  StatusOr<std::unique_ptr<Stream>> sender = TcpConnect("127.0.0.1", listener->port(), Deadline());
  if (sender.ok()) {
    ShapedStream::Options so;
    so.rate_bits_per_s = rate_bits_per_s;
    auto shaped = ShapedStream::Create(std::move(sender).value(), so);
    sender = shaped.ok() ? StatusOr<std::unique_ptr<Stream>>(std::move(shaped).value())
                         : StatusOr<std::unique_ptr<Stream>>(shaped.status());
  }
  if (sender.ok() && tls) {
    auto secure = TlsStream::Handshake(*JobCredentials().alpha, std::move(sender).value(), {}, Deadline());
    sender = secure.ok() ? StatusOr<std::unique_ptr<Stream>>(std::move(secure).value())
                         : StatusOr<std::unique_ptr<Stream>>(secure.status());
  }
  accept.join();
  STELLA_RETURN_IF_ERROR(sender.status());
  STELLA_RETURN_IF_ERROR(receiver.status());
  return std::make_pair(std::move(sender).value(), std::move(receiver).value());
}

// Payload throughput of 1 MiB frames, each sent and flushed as WanMesh's
// Peer::Send does, over a link shaped at range(0) Mbit/s (0 = unshaped);
// range(1) = 1 for TLS. "Gbit/s" counts payload bits; the CPU column is the
// whole process's CPU time (sender, shaper and receiver threads) per frame;
// CPU / Time is the cores the link kept busy.
void BM_ShapedLinkThroughput(benchmark::State& state) {
  const double rate = static_cast<double>(state.range(0)) * 1e6;
  const bool tls = state.range(1) != 0;
  auto link = MeshLink(rate, tls);
  if (!link.ok()) {
    state.SkipWithError(link.status().ToString().c_str());
    return;
  }
  FramedConnection sender(std::move(link->first));
  FramedConnection receiver(std::move(link->second));
  std::thread drain([&] {
    while (true) {
      auto f = receiver.Receive(Deadline());
      if (!f.ok() || f->header.type == FrameType::kBye) return;
    }
  });
  const std::vector<uint8_t> payload(1 << 20, 0xA5);
  uint32_t tag = 0;
  for (auto _ : state) {
    Status s = sender.Send(FrameType::kDense, tag++, payload.data(), payload.size(), Deadline());
    if (s.ok()) s = sender.Flush(Deadline());
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  sender.Send(FrameType::kBye, 0, nullptr, 0, Deadline()).IgnoreError();
  sender.Flush(Deadline()).IgnoreError();
  drain.join();
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(payload.size());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["Gbit/s"] = benchmark::Counter(bytes * 8 / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(tls ? "tls" : "plain");
}
BENCHMARK(BM_ShapedLinkThroughput)
    ->ArgNames({"mbps", "tls"})
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Args({0, 0})
    ->Args({0, 1})
    ->MinTime(3.0)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

// One mutual TLS 1.3 handshake (ECDSA P-256, both certificates verified,
// plus the confirmation byte) over loopback TCP, connect included.
void BM_TlsHandshake(benchmark::State& state) {
  for (auto _ : state) {
    auto link = MeshLink(0, true);
    if (!link.ok()) {
      state.SkipWithError(link.status().ToString().c_str());
      break;
    }
  }
}
BENCHMARK(BM_TlsHandshake)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace net
}  // namespace stella

BENCHMARK_MAIN();
