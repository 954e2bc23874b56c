// ThreadPool: a fixed set of owned worker threads that split one data-parallel
// loop (ParallelFor) between themselves and the calling thread. The optimizer
// uses it to update large parameter tensors on several cores.
//
// Thread safety: ParallelFor may be called from any number of threads; calls
// are serialized (one loop runs at a time, the others wait their turn), so a
// pool shared by several callers never oversubscribes the cores. The pool must
// outlive every ParallelFor call; the destructor joins all workers and must not
// run concurrently with ParallelFor.
#ifndef STELLA_RUNTIME_OPTIM_THREAD_POOL_H_
#define STELLA_RUNTIME_OPTIM_THREAD_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/base/mutex.h"
#include "src/base/status.h"

namespace stella {
namespace optim {

class ThreadPool {
 public:
  struct Options {
    // Threads that execute a ParallelFor, counting the caller: the pool starts
    // num_threads - 1 workers. 0 (the default) means
    // std::thread::hardware_concurrency(). 1 runs every loop inline. At most
    // kMaxThreads.
    size_t num_threads = 0;
    // Prefix of the worker thread names ("<name>-<i>", cut to the 15 bytes
    // Linux allows). Default "stella-optim".
    std::string name = "stella-optim";
  };
  static constexpr size_t kMaxThreads = 256;

  // Starts the workers. InvalidArgument for num_threads > kMaxThreads;
  // Internal if the OS refuses to start a thread.
  static StatusOr<std::unique_ptr<ThreadPool>> Create(const Options& options);

  ~ThreadPool();  // Joins every worker.
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that take part in a ParallelFor, the caller included.
  size_t num_threads() const { return workers_.size() + 1; }

  // Calls fn(begin, end) on consecutive chunks [begin, end) that together
  // cover [0, n) exactly once, each at most `grain` long (grain 0 counts as
  // 1), and returns when every chunk is done. The caller runs chunks too.
  // Chunks run concurrently, so fn must be safe to run on disjoint ranges at
  // once, and must not throw or call ParallelFor on this pool.
  // No timeout: this is a compute barrier on work the caller itself submitted
  // and helps to execute; it waits on no outside event.
  void ParallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  // One ParallelFor in flight; lives on the caller's stack. Workers touch it
  // only while counted in workers_in, and the caller waits for workers_in to
  // drop to zero (after unpublishing it) before returning.
  struct Job {
    const std::function<void(size_t, size_t)>* fn = nullptr;
    size_t n = 0;
    size_t grain = 1;
    size_t num_chunks = 0;
    std::atomic<size_t> next_chunk{0};
    // Guarded by ThreadPool::mu_ (an annotation cannot name the outer
    // object's member).
    size_t workers_in = 0;
  };

  ThreadPool() = default;
  void WorkerLoop();
  static void RunChunks(Job* job);

  // Serializes ParallelFor callers. Lock order: run_mu_ before mu_.
  Mutex run_mu_ ACQUIRED_BEFORE(mu_);
  Mutex mu_;
  CondVar work_cv_;  // a job was published, or stop_
  CondVar done_cv_;  // a worker left a job
  Job* job_ GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // bumped per job
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace optim
}  // namespace stella

#endif  // STELLA_RUNTIME_OPTIM_THREAD_POOL_H_
