// wan_mesh_peer: one gateway's WanMesh in its own process, so that
// wan_mesh_test can kill it (SIGKILL, no goodbye) and start it again, as a
// crashed and restarted gateway.
//
//   wan_mesh_peer --cluster C --addresses h0:p0,h1:p1 --first-tag T --rounds K
//                 [--then exit|wait]
//
// Runs rounds T .. T+K-1 (payload "c<C>-<tag>"), printing one line per round:
// "round <tag>: complete" when every peer's payload arrived and read
// "c<peer>-<tag>", else "round <tag>: <what>". Then exits 0 (orderly: its mesh
// says Bye) or, with --then wait, waits to be killed. Exit 1 on errors, 2 on
// bad flags.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/exchange/wan_mesh.h"

int main(int argc, char** argv) {
  using stella::exchange::WanMeshOptions;
  WanMeshOptions o;
  o.job_name = "wan-mesh-test";
  o.cluster_names = {"zero", "one"};
  o.link_timeout = std::chrono::milliseconds(2000);
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.reconnect_min_backoff = std::chrono::milliseconds(20);
  o.reconnect_max_backoff = std::chrono::milliseconds(500);
  o.connect_timeout = std::chrono::milliseconds(30000);
  long first = 0, rounds = 0;
  std::string then = "exit";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--cluster") {
      o.cluster_index = std::atoi(value.c_str());
    } else if (flag == "--addresses") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        o.addresses.push_back(value.substr(start, end - start));
        start = end + 1;
      }
    } else if (flag == "--first-tag") {
      first = std::atol(value.c_str());
    } else if (flag == "--rounds") {
      rounds = std::atol(value.c_str());
    } else if (flag == "--then") {
      then = value;
    } else {
      std::fprintf(stderr, "wan_mesh_peer: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  auto mesh = stella::exchange::WanMesh::Create(o);
  if (!mesh.ok()) {
    std::printf("create: %s\n", mesh.status().ToString().c_str());
    return 1;
  }
  std::printf("connected\n");
  std::fflush(stdout);
  for (long t = first; t < first + rounds; ++t) {
    const std::string text = "c" + std::to_string(o.cluster_index) + "-" + std::to_string(t);
    stella::exchange::GatherResult r;
    auto st = (*mesh)->AllGather(static_cast<uint32_t>(t), std::vector<uint8_t>(text.begin(), text.end()), &r,
                                 stella::SystemClock::Get().Now() + std::chrono::seconds(30));
    if (!st.ok()) {
      std::printf("round %ld: %s\n", t, st.ToString().c_str());
      return 1;
    }
    std::string what = "complete";
    for (size_t c = 0; c < r.payloads.size(); ++c) {
      const std::string want = "c" + std::to_string(c) + "-" + std::to_string(t);
      if (r.outcome[c] != stella::exchange::PeerRound::kReceived) {
        what = "cluster " + std::to_string(c) + " " + stella::exchange::PeerRoundName(r.outcome[c]);
      } else if (std::string(r.payloads[c].begin(), r.payloads[c].end()) != want) {
        what = "cluster " + std::to_string(c) + " sent the wrong payload";
      }
    }
    std::printf("round %ld: %s\n", t, what.c_str());
    std::fflush(stdout);
  }
  if (then == "wait") {
    while (true) pause();
  }
  return 0;
}
