// RuntimeScraper: reads the training runtime's own /metrics (rank 0 of a
// Running job, through its API server's pod proxy) on its own thread and
// keeps the latest figures per job, so a reconcile never blocks on a
// worker's HTTP endpoint: it names the target (Track) and reads the cache
// (Latest).
//
// Each tracked job is scraped once right after it is first tracked and then
// every `interval`; when its figures change `on_update(key)` is called (the
// controller enqueues the job, whose next pass shows them). Jobs not tracked
// again within three intervals are dropped (deleted jobs leave no target).
//
// Thread safety: all methods are thread-safe. One thread ("stella-scrape"),
// started by Start and joined by Stop. The kube::Api* of a target must stay
// valid until Stop or Forget (members live until their ClusterSet is
// destroyed, which happens after the manager stopped this).
#ifndef STELLA_OPERATOR_CONTROLLER_RUNTIME_SCRAPER_H_
#define STELLA_OPERATOR_CONTROLLER_RUNTIME_SCRAPER_H_

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "operator/controller/log.h"
#include "operator/controller/manager.h"
#include "operator/controller/status.h"
#include "operator/kube/api.h"
#include "src/base/mutex.h"
#include "src/base/thread_annotations.h"

namespace stella::op {

struct RuntimeScraperOptions {
  std::chrono::milliseconds interval{10000};  // between scrapes of one job; default 10 s
  // Called (on the scraper's thread) with the job key when its figures
  // changed. Optional.
  std::function<void(const std::string& key)> on_update;
};

class RuntimeScraper final : public Runnable {
 public:
  // `log` outlives the scraper.
  RuntimeScraper(RuntimeScraperOptions options, Logger* log);
  ~RuntimeScraper() override;
  RuntimeScraper(const RuntimeScraper&) = delete;
  RuntimeScraper& operator=(const RuntimeScraper&) = delete;

  // Sets the hook after construction (main wires it to the controller).
  void SetOnUpdate(std::function<void(const std::string& key)> on_update);

  // Scrape `path` through `api` for the job `uid` (its key for on_update).
  void Track(const std::string& uid, const std::string& key, kube::Api* api, const std::string& path);
  // Stop scraping the job and drop its figures.
  void Forget(const std::string& uid);
  // The latest figures read for the job; nullopt before the first success.
  std::optional<RuntimeFigures> Latest(const std::string& uid) const;

  // One pass: scrapes every target that is due at `now` and drops stale
  // ones. The thread's body; public so tests run it without the thread.
  void ScrapeDue(std::chrono::steady_clock::time_point now);

  void Start() override;
  void Stop() override;
  std::string RunnableName() const override { return "runtime-scraper"; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Target {
    std::string key;
    kube::Api* api = nullptr;
    std::string path;
    Clock::time_point tracked;      // last Track
    Clock::time_point last_scrape;  // epoch = never
    std::optional<RuntimeFigures> figures;
  };
  void Loop();

  RuntimeScraperOptions options_;
  Logger* log_;
  mutable Mutex mu_;
  CondVar cv_;
  std::map<std::string, Target> targets_ GUARDED_BY(mu_);  // by job uid
  bool started_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  bool wake_ GUARDED_BY(mu_) = false;  // a new target is due now
  // Set by Start under mu_, joined by Stop without it (Manager serializes
  // Start and Stop), so not GUARDED_BY.
  std::thread thread_;
};

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_RUNTIME_SCRAPER_H_
