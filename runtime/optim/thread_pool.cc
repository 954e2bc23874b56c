#include "runtime/optim/thread_pool.h"

#include <pthread.h>

#include <system_error>
#include <utility>

namespace stella {
namespace optim {

StatusOr<std::unique_ptr<ThreadPool>> ThreadPool::Create(const Options& options) {
  size_t num_threads = options.num_threads;
  if (num_threads == 0) {
    num_threads = std::thread::hardware_concurrency();
    if (num_threads == 0) num_threads = 1;  // unknown: run inline
    if (num_threads > kMaxThreads) num_threads = kMaxThreads;
  }
  if (num_threads > kMaxThreads) {
    return InvalidArgumentError("ThreadPool num_threads must be <= " + std::to_string(kMaxThreads) + ", got " +
                                std::to_string(num_threads));
  }
  std::unique_ptr<ThreadPool> pool(new ThreadPool());
  pool->workers_.reserve(num_threads - 1);
  for (size_t i = 0; i + 1 < num_threads; ++i) {
    try {
      pool->workers_.emplace_back(&ThreadPool::WorkerLoop, pool.get());
    } catch (const std::system_error& e) {
      // The destructor stops and joins the workers started so far.
      return InternalError("ThreadPool: starting worker " + std::to_string(i) + " of " +
                           std::to_string(num_threads - 1) + ": " + e.what());
    }
    // Linux limits thread names to 15 bytes plus the terminator.
    std::string name = (options.name + "-" + std::to_string(i)).substr(0, 15);
    pthread_setname_np(pool->workers_.back().native_handle(), name.c_str());
  }
  return pool;
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  work_cv_.SignalAll();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunks(Job* job) {
  for (;;) {
    size_t chunk = job->next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (chunk >= job->num_chunks) return;
    size_t begin = chunk * job->grain;
    size_t end = begin + job->grain < job->n ? begin + job->grain : job->n;
    (*job->fn)(begin, end);
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen_generation = 0;
  MutexLock lock(&mu_);
  for (;;) {
    while (!stop_ && (job_ == nullptr || generation_ == seen_generation)) work_cv_.Wait(&mu_);
    if (stop_) return;
    seen_generation = generation_;
    Job* job = job_;
    ++job->workers_in;
    mu_.Unlock();
    RunChunks(job);
    mu_.Lock();
    if (--job->workers_in == 0) done_cv_.SignalAll();
  }
}

void ThreadPool::ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  size_t num_chunks = n / grain + (n % grain != 0 ? 1 : 0);
  if (workers_.empty() || num_chunks == 1) {
    for (size_t begin = 0; begin < n; begin += grain) fn(begin, begin + grain < n ? begin + grain : n);
    return;
  }
  MutexLock run_lock(&run_mu_);
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.num_chunks = num_chunks;
  {
    MutexLock lock(&mu_);
    job_ = &job;
    ++generation_;
  }
  work_cv_.SignalAll();
  RunChunks(&job);
  // Every chunk is claimed; unpublish the job so that late workers skip it,
  // then wait for the workers still running chunks of it.
  MutexLock lock(&mu_);
  job_ = nullptr;
  while (job.workers_in != 0) done_cv_.Wait(&mu_);
}

}  // namespace optim
}  // namespace stella
