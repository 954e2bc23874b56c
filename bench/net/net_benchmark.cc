// Micro-benchmarks for the WAN transport's CPU costs: the software CRC32C
// that checksums every frame, and framed transfer over loopback TCP (the
// ceiling a gateway reaches when the WAN is not the bottleneck).
#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>
#include <vector>

#include "src/net/crc32c.h"
#include "src/net/frame.h"
#include "src/net/framed_connection.h"
#include "src/net/tcp.h"

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

}  // namespace
}  // namespace net
}  // namespace stella

BENCHMARK_MAIN();
