#include "operator/controller/runtime_scraper.h"

#include <pthread.h>

#include <vector>

namespace stella::op {

namespace {

bool SameFigures(const std::optional<RuntimeFigures>& a, const RuntimeFigures& b) {
  return a && a->step == b.step && a->samples_per_second == b.samples_per_second && a->density == b.density &&
         a->batch_size == b.batch_size;
}

}  // namespace

RuntimeScraper::RuntimeScraper(RuntimeScraperOptions options, Logger* log) : options_(std::move(options)), log_(log) {}

RuntimeScraper::~RuntimeScraper() { Stop(); }

void RuntimeScraper::SetOnUpdate(std::function<void(const std::string& key)> on_update) {
  MutexLock lock(&mu_);
  options_.on_update = std::move(on_update);
}

void RuntimeScraper::Track(const std::string& uid, const std::string& key, kube::Api* api, const std::string& path) {
  MutexLock lock(&mu_);
  Target& t = targets_[uid];
  const bool fresh = t.api == nullptr;
  t.key = key;
  t.api = api;
  t.path = path;
  t.tracked = Clock::now();
  if (fresh) {
    wake_ = true;  // the first scrape now, not an interval later
    cv_.SignalAll();
  }
}

void RuntimeScraper::Forget(const std::string& uid) {
  MutexLock lock(&mu_);
  targets_.erase(uid);
}

std::optional<RuntimeFigures> RuntimeScraper::Latest(const std::string& uid) const {
  MutexLock lock(&mu_);
  auto it = targets_.find(uid);
  if (it == targets_.end()) return std::nullopt;
  return it->second.figures;
}

void RuntimeScraper::ScrapeDue(Clock::time_point now) {
  struct Due {
    std::string uid, key, path;
    kube::Api* api;
  };
  std::vector<Due> due;
  {
    MutexLock lock(&mu_);
    for (auto it = targets_.begin(); it != targets_.end();) {
      if (now - it->second.tracked > 3 * options_.interval) {
        it = targets_.erase(it);  // its job no longer reconciles as Running
        continue;
      }
      Target& t = it->second;
      if (t.last_scrape == Clock::time_point() || now - t.last_scrape >= options_.interval) {
        t.last_scrape = now;
        due.push_back({it->first, t.key, t.path, t.api});
      }
      ++it;
    }
  }
  // The blocking GETs run without the lock: Latest/Track never wait on a worker.
  for (const Due& d : due) {
    auto r = kube::CheckResponse(d.api->Get(d.path), "scraping " + d.path);
    if (!r.ok() || !r->body.is_string()) {
      log_->Debug("job " + d.key + ": runtime metrics not available: " +
                  (r.ok() ? std::string("answer is not text") : r.status().ToString()));
      continue;
    }
    RuntimeFigures f = ParseRuntimeMetrics(r->body.get<std::string>());
    std::function<void(const std::string&)> notify;
    {
      MutexLock lock(&mu_);
      auto it = targets_.find(d.uid);
      if (it == targets_.end()) continue;  // forgotten meanwhile
      if (SameFigures(it->second.figures, f)) continue;
      it->second.figures = f;
      notify = options_.on_update;
    }
    if (notify) notify(d.key);
  }
}

void RuntimeScraper::Start() {
  MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stella-scrape");
    Loop();
  });
}

void RuntimeScraper::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void RuntimeScraper::Loop() {
  // Wakes at least every interval/4 so a target is scraped at most a quarter
  // interval late.
  const auto tick = std::max(options_.interval / 4, std::chrono::milliseconds(10));
  // Held except around ScrapeDue (Lock/Unlock, as the unique_lock was).
  mu_.Lock();
  while (!stopping_) {
    // wait_for(tick) with the predicate stopping_ || wake_.
    const auto deadline = std::chrono::steady_clock::now() + tick;
    while (!(stopping_ || wake_)) {
      if (!cv_.WaitUntil(&mu_, deadline)) break;
    }
    if (stopping_) break;
    wake_ = false;
    mu_.Unlock();
    ScrapeDue(Clock::now());
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace stella::op
