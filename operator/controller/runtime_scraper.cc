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
  std::lock_guard<std::mutex> lock(mu_);
  options_.on_update = std::move(on_update);
}

void RuntimeScraper::Track(const std::string& uid, const std::string& key, kube::Api* api, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  Target& t = targets_[uid];
  const bool fresh = t.api == nullptr;
  t.key = key;
  t.api = api;
  t.path = path;
  t.tracked = Clock::now();
  if (fresh) {
    wake_ = true;  // the first scrape now, not an interval later
    cv_.notify_all();
  }
}

void RuntimeScraper::Forget(const std::string& uid) {
  std::lock_guard<std::mutex> lock(mu_);
  targets_.erase(uid);
}

std::optional<RuntimeFigures> RuntimeScraper::Latest(const std::string& uid) const {
  std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
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
      std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stella-scrape");
    Loop();
  });
}

void RuntimeScraper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RuntimeScraper::Loop() {
  // Wakes at least every interval/4 so a target is scraped at most a quarter
  // interval late.
  const auto tick = std::max(options_.interval / 4, std::chrono::milliseconds(10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, tick, [this] { return stopping_ || wake_; });
    if (stopping_) break;
    wake_ = false;
    lock.unlock();
    ScrapeDue(Clock::now());
    lock.lock();
  }
}

}  // namespace stella::op
