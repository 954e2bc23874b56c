// EventSink: the runtime's machine-readable progress stream. Each event is one
// line "@stella {json}" on stdout; the `stella` CLI (and log scrapers) parse
// them, everything else on stdout/stderr is human log text.
//
// Thread safety: Emit is thread-safe (one mutex around the write).
#ifndef STELLA_RUNTIME_WORKER_EVENTS_H_
#define STELLA_RUNTIME_WORKER_EVENTS_H_

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "src/base/mutex.h"
#include "src/base/thread_annotations.h"

namespace stella::worker {

class EventSink {
 public:
  // Fields added to every event (cluster, ranks).
  EventSink(FILE* out, nlohmann::json identity) : out_(out), identity_(std::move(identity)) {}

  void Emit(const std::string& event, nlohmann::json fields) {
    fields["event"] = event;
    for (auto it = identity_.begin(); it != identity_.end(); ++it) fields[it.key()] = it.value();
    std::string line = "@stella " + Dump(fields) + "\n";
    MutexLock lock(&mu_);
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
  }

  // One line of JSON. Invalid UTF-8 (a WAN peer's job name inside an error
  // message, say) becomes U+FFFD: dump() would otherwise throw and end the
  // worker.
  static std::string Dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

 private:
  Mutex mu_;
  FILE* out_ PT_GUARDED_BY(mu_);  // not owned (stdout); written under mu_
  const nlohmann::json identity_;
};

}  // namespace stella::worker

#endif  // STELLA_RUNTIME_WORKER_EVENTS_H_
