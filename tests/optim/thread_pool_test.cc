#include "runtime/optim/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace stella {
namespace optim {
namespace {

std::unique_ptr<ThreadPool> MakePool(size_t num_threads) {
  ThreadPool::Options options;
  options.num_threads = num_threads;
  auto pool = ThreadPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return std::move(pool).value();
}

// Runs ParallelFor and checks that every index in [0, n) was visited exactly
// once and that no chunk exceeded the grain.
void ExpectCoversOnce(ThreadPool* pool, size_t n, size_t grain) {
  std::vector<std::atomic<int>> hits(n);
  std::atomic<bool> chunk_too_long{false};
  const size_t max_len = grain == 0 ? 1 : grain;
  pool->ParallelFor(n, grain, [&](size_t begin, size_t end) {
    if (end <= begin || end - begin > max_len || end > n) chunk_too_long = true;
    for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  EXPECT_FALSE(chunk_too_long) << "n=" << n << " grain=" << grain;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(hits[i].load(), 1) << "index " << i << " n=" << n << " grain=" << grain;
  }
}

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  for (size_t threads : {1, 2, 4}) {
    auto pool = MakePool(threads);
    EXPECT_EQ(pool->num_threads(), threads);
    for (size_t n : {0, 1, 7, 100, 1000, 4097}) {
      for (size_t grain : {0, 1, 3, 64, 5000}) ExpectCoversOnce(pool.get(), n, grain);
    }
  }
}

TEST(ThreadPoolTest, WorkersReallyShareTheLoop) {
  auto pool = MakePool(3);
  // Each chunk waits (bounded) until it sees another thread inside the loop,
  // which can only happen if the workers take chunks too.
  std::atomic<int> inside{0};
  std::atomic<int> max_inside{0};
  for (int round = 0; round < 20 && max_inside.load() < 2; ++round) {
    pool->ParallelFor(6, 1, [&](size_t, size_t) {
      int now = inside.fetch_add(1) + 1;
      int prev = max_inside.load();
      while (now > prev && !max_inside.compare_exchange_weak(prev, now)) {
      }
      for (int spin = 0; spin < 200 && max_inside.load() < 2; ++spin) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      inside.fetch_sub(1);
    });
  }
  EXPECT_GE(max_inside.load(), 2);
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerializedAndComplete) {
  auto pool = MakePool(2);
  std::vector<std::thread> callers;
  std::atomic<long> total{0};
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) {
        pool->ParallelFor(1000, 37, [&](size_t begin, size_t end) { total.fetch_add(static_cast<long>(end - begin)); });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 3L * 50 * 1000);
}

TEST(ThreadPoolTest, CreateAndDestroyRepeatedly) {
  for (int i = 0; i < 20; ++i) {
    auto pool = MakePool(3);
    ExpectCoversOnce(pool.get(), 64, 8);
  }
  // A pool that never ran a loop also shuts down cleanly.
  auto idle = MakePool(4);
  idle.reset();
}

TEST(ThreadPoolTest, DefaultUsesHardwareConcurrencyAndRejectsTooMany) {
  auto pool = ThreadPool::Create(ThreadPool::Options{});
  ASSERT_TRUE(pool.ok());
  EXPECT_GE((*pool)->num_threads(), 1u);

  ThreadPool::Options too_many;
  too_many.num_threads = ThreadPool::kMaxThreads + 1;
  auto bad = ThreadPool::Create(too_many);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("num_threads"), std::string::npos);
}

}  // namespace
}  // namespace optim
}  // namespace stella
