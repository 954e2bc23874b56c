// WorkQueue semantics with a manually advanced clock: de-duplication, re-add
// during processing, per-key exponential backoff and Forget, the global token
// bucket, AddAfter ordering, and shutdown. No assertion depends on how fast
// the machine is: a key is due only when the fake clock says so.
#include "operator/kube/workqueue.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "src/base/testing/fake_clock.h"

namespace stella::kube {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kGetBound{10000};  // generous bound for keys that are due

class WorkQueueTest : public ::testing::Test {
 protected:
  std::unique_ptr<WorkQueue> Make(WorkQueueOptions o = {}) {
    o.clock = &clock_;
    o.max_wait = milliseconds(1);  // notice clock advances promptly
    auto q = WorkQueue::Create(o);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return std::move(*q);
  }
  // Lets the delay thread run a few rounds; keys not yet due must stay put
  // whatever this waits (a too-short wait can only hide a bug, never fail).
  static void Settle() { std::this_thread::sleep_for(milliseconds(20)); }

  FakeClock clock_;
};

TEST_F(WorkQueueTest, DuplicateAddsAreMerged) {
  auto q = Make();
  q->Add("a");
  q->Add("b");
  q->Add("a");
  EXPECT_EQ(q->Len(), 2u);
  EXPECT_EQ(q->GetFor(kGetBound), "a");
  EXPECT_EQ(q->GetFor(kGetBound), "b");
  EXPECT_EQ(q->Len(), 0u);
  EXPECT_EQ(q->GetFor(milliseconds(10)), std::nullopt);
}

TEST_F(WorkQueueTest, KeyAddedWhileProcessingIsRequeuedAfterDone) {
  auto q = Make();
  q->Add("a");
  ASSERT_EQ(q->GetFor(kGetBound), "a");
  q->Add("a");
  q->Add("a");
  // Not handed to a second worker while the first still holds it.
  EXPECT_EQ(q->Len(), 0u);
  EXPECT_EQ(q->GetFor(milliseconds(10)), std::nullopt);
  q->Done("a");
  EXPECT_EQ(q->Len(), 1u);
  EXPECT_EQ(q->GetFor(kGetBound), "a");
  q->Done("a");
  EXPECT_EQ(q->Len(), 0u);  // processed once for both adds
}

TEST_F(WorkQueueTest, PerKeyBackoffDoublesUntilForget) {
  WorkQueueOptions o;
  o.base_delay = milliseconds(5);
  o.max_delay = milliseconds(40);
  auto q = Make(o);
  const std::vector<int> expected_ms = {5, 10, 20, 40, 40};
  for (size_t i = 0; i < expected_ms.size(); ++i) {
    q->AddRateLimited("k");
    EXPECT_EQ(q->NumRequeues("k"), static_cast<int>(i + 1));
    clock_.Advance(milliseconds(expected_ms[i] - 1));
    Settle();
    EXPECT_EQ(q->Len(), 0u) << "due too early at step " << i;
    EXPECT_EQ(q->NumWaiting(), 1u);
    clock_.Advance(milliseconds(1));
    ASSERT_EQ(q->GetFor(kGetBound), "k") << "step " << i;
    q->Done("k");
  }
  q->Forget("k");
  EXPECT_EQ(q->NumRequeues("k"), 0);
  q->AddRateLimited("k");
  clock_.Advance(milliseconds(5));
  EXPECT_EQ(q->GetFor(kGetBound), "k");
  // Backoff is per key: another key starts from the base delay.
  q->AddRateLimited("other");
  EXPECT_EQ(q->NumRequeues("other"), 1);
  EXPECT_EQ(q->NumRequeues("k"), 1);
}

TEST_F(WorkQueueTest, GlobalBucketBoundsTheRetryRate) {
  WorkQueueOptions o;
  o.base_delay = milliseconds(1);
  o.qps = 1;
  o.burst = 2;
  auto q = Make(o);
  q->AddRateLimited("x");
  q->AddRateLimited("y");
  q->AddRateLimited("z");  // the bucket is empty: waits a full second
  clock_.Advance(milliseconds(1));
  std::set<std::string> first = {*q->GetFor(kGetBound), *q->GetFor(kGetBound)};
  EXPECT_EQ(first, (std::set<std::string>{"x", "y"}));
  Settle();
  EXPECT_EQ(q->Len(), 0u);
  clock_.Advance(milliseconds(998));
  Settle();
  EXPECT_EQ(q->Len(), 0u);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(q->GetFor(kGetBound), "z");
}

TEST_F(WorkQueueTest, AddAfterReleasesInDeadlineOrder) {
  auto q = Make();
  q->AddAfter("c", milliseconds(30));
  q->AddAfter("a", milliseconds(10));
  q->AddAfter("b", milliseconds(20));
  // A later deadline for a waiting key is ignored; an earlier one wins.
  q->AddAfter("a", milliseconds(100));
  q->AddAfter("d", milliseconds(500));
  q->AddAfter("d", milliseconds(15));
  EXPECT_EQ(q->NumWaiting(), 4u);
  Settle();
  EXPECT_EQ(q->Len(), 0u);
  clock_.Advance(milliseconds(30));
  EXPECT_EQ(q->GetFor(kGetBound), "a");
  EXPECT_EQ(q->GetFor(kGetBound), "d");
  EXPECT_EQ(q->GetFor(kGetBound), "b");
  EXPECT_EQ(q->GetFor(kGetBound), "c");
  EXPECT_EQ(q->NumWaiting(), 0u);
  // No delay means now.
  q->AddAfter("now", milliseconds(0));
  EXPECT_EQ(q->Len(), 1u);
}

TEST_F(WorkQueueTest, ShutDownWakesGettersAndDrains) {
  auto q = Make();
  auto blocked = std::async(std::launch::async, [&q] { return q->Get(); });
  // Whether Get is already waiting or not, ShutDown must end it.
  Settle();
  q->ShutDown();
  ASSERT_EQ(blocked.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_EQ(blocked.get(), std::nullopt);
  EXPECT_TRUE(q->ShuttingDown());
  q->Add("late");
  EXPECT_EQ(q->Len(), 0u);

  auto q2 = Make();
  q2->Add("queued");
  q2->ShutDown();
  EXPECT_EQ(q2->Get(), "queued");  // already queued keys are still handed out
  EXPECT_EQ(q2->Get(), std::nullopt);
}

TEST_F(WorkQueueTest, ManyWorkersNeverShareAKey) {
  auto q = Make(WorkQueueOptions{});
  std::mutex mu;
  std::set<std::string> in_flight;
  std::atomic<int> overlaps{0}, processed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (auto key = q->Get()) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!in_flight.insert(*key).second) ++overlaps;
        }
        std::this_thread::yield();
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(*key);
        }
        ++processed;
        q->Done(*key);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) q->Add("k" + std::to_string(i % 7));
  // Wait (bounded) until everything queued was processed, then stop.
  for (int i = 0; i < 1000 && (q->Len() > 0); ++i) std::this_thread::sleep_for(milliseconds(5));
  q->ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GE(processed.load(), 7);
}

TEST(WorkQueueOptionsTest, BadOptionsAreRefused) {
  WorkQueueOptions o;
  o.base_delay = milliseconds(0);
  EXPECT_EQ(WorkQueue::Create(o).status().code(), StatusCode::kInvalidArgument);
  o = WorkQueueOptions{};
  o.max_delay = milliseconds(1);
  EXPECT_EQ(WorkQueue::Create(o).status().code(), StatusCode::kInvalidArgument);
  o = WorkQueueOptions{};
  o.qps = -1;
  auto bad = WorkQueue::Create(o);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("qps"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace stella::kube
