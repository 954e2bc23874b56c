// VersionGate, BoundedQueue and StalePipeline: the bounded-staleness contract
// with a step function the test releases one step at a time.
#include "runtime/pipeline/stale_pipeline.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace stella::pipeline {
namespace {

using std::chrono::milliseconds;

TEST(VersionGateTest, WaitsForTheVersionAndReportsFinishAndFailure) {
  VersionGate gate;
  auto r = gate.WaitAtLeast(0, milliseconds(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 0);
  // Nothing published: a wait for version 1 times out on progress.
  EXPECT_EQ(gate.WaitAtLeast(1, milliseconds(20)).status().code(), StatusCode::kDeadlineExceeded);
  std::thread producer([&] {
    for (int v = 1; v <= 3; ++v) gate.Publish(v);
  });
  r = gate.WaitAtLeast(3, milliseconds(10000));
  producer.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->version, 3);
  EXPECT_FALSE(r->finished);
  gate.Finish();
  r = gate.WaitAtLeast(10, milliseconds(10));  // finished: no wait
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->finished);
  EXPECT_EQ(r->version, 3);
  gate.Fail(InternalError("boom"));
  gate.Fail(InternalError("second"));  // the first failure wins
  EXPECT_EQ(gate.WaitAtLeast(0, milliseconds(10)).status().message(), "boom");
}

TEST(VersionGateTest, FailureWakesAWaiter) {
  VersionGate gate;
  std::thread failer([&] { gate.Fail(UnavailableError("peer gone")); });
  auto r = gate.WaitAtLeast(5, milliseconds(10000));
  failer.join();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(BoundedQueueTest, BlocksWhenFullAndDrainsAfterClose) {
  BoundedQueue<int> q(2);
  auto soon = [] { return std::chrono::steady_clock::now() + milliseconds(20); };
  ASSERT_TRUE(q.Push(1, soon()).ok());
  ASSERT_TRUE(q.Push(2, soon()).ok());
  EXPECT_EQ(q.Push(3, soon()).code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(*q.Pop(soon()), 1);
  ASSERT_TRUE(q.Push(3, soon()).ok());
  q.Close(/*discard=*/false);
  EXPECT_EQ(q.Push(4, soon()).code(), StatusCode::kCancelled);
  EXPECT_EQ(*q.Pop(soon()), 2);
  EXPECT_EQ(*q.Pop(soon()), 3);
  EXPECT_EQ(q.Pop(soon()).status().code(), StatusCode::kCancelled);
  BoundedQueue<int> empty(1);
  EXPECT_EQ(empty.Pop(soon()).status().code(), StatusCode::kDeadlineExceeded);
}

// A step function that the test releases step by step. The "master copy" is
// one float that holds the number of steps applied, so installed parameters
// show their version.
class Harness {
 public:
  explicit Harness(int staleness, int stop_after = -1, int fail_at = -1, milliseconds timeout = milliseconds(20000)) {
    StalePipelineOptions o;
    o.staleness = staleness;
    o.num_parameters = 1;
    o.num_control = 1;
    o.progress_timeout = timeout;
    o.thread_name = "test-comm";
    auto p = StalePipeline::Create(o, &master_, [this, stop_after, fail_at](int64_t step, std::vector<float>* b)
                                                    -> StatusOr<bool> {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return released_ > step; });
      }
      processed_.push_back(step);  // communication thread only
      if (step == fail_at) return UnavailableError("peer cluster 1 went away");
      master_ = static_cast<float>(step + 1);
      (*b)[1] = (*b)[0] * 2;  // agreed control value
      return step == stop_after;
    });
    STELLA_CHECK(p.ok());
    pipeline_ = std::move(p).value();
  }
  ~Harness() {
    Release(1 << 20);  // let a blocked step function finish before the join
    pipeline_.reset();
  }
  void Release(int64_t through) {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = std::max(released_, through);
    cv_.notify_all();
  }
  StalePipeline& pipeline() { return *pipeline_; }
  const std::vector<int64_t>& processed() const { return processed_; }

 private:
  float master_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t released_ = 0;  // guarded by mu_: steps < released_ may run
  std::vector<int64_t> processed_;
  std::unique_ptr<StalePipeline> pipeline_;
};

// The compute side: begins and submits steps 0..n-1, recording the version it
// started each step from, until the pipeline says stop or fails.
struct ComputeLoop {
  std::atomic<int> begun{0};
  std::vector<int64_t> versions;     // per begun step: installed version
  std::vector<float> installed;      // per begun step: installed parameter value
  Status status;
  bool finished = false;

  void Run(StalePipeline& p, int n) {
    float model = -1;
    for (int t = 0; t < n; ++t) {
      auto s = p.BeginStep(t, [&](const float* params) { model = params[0]; });
      if (!s.ok()) { status = s.status(); return; }
      if (s->finished) { finished = true; return; }
      versions.push_back(s->version);
      installed.push_back(model);
      begun.fetch_add(1);
      std::vector<float> b = p.AcquireBuffer();
      b[0] = static_cast<float>(t);
      b[1] = 0;
      status = p.Submit(t, std::move(b));
      if (!status.ok()) return;
    }
  }
};

void WaitUntil(const std::function<bool()>& cond) {
  for (int i = 0; i < 2000 && !cond(); ++i) std::this_thread::sleep_for(milliseconds(5));
  ASSERT_TRUE(cond());
}

// With staleness s and k steps applied, the compute thread gets exactly to the
// start of step k + s and no further; step t starts from exactly version
// max(0, t - s) even when newer ones exist (s = 0: the synchronous schedule).
TEST(StalePipelineTest, ForwardOfStepTWaitsForTheUpdateOfStepTMinusOneMinusS) {
  for (int s : {0, 1, 2}) {
    SCOPED_TRACE("staleness " + std::to_string(s));
    Harness h(s);
    ComputeLoop loop;
    constexpr int kSteps = 8;
    std::thread compute([&] { loop.Run(h.pipeline(), kSteps); });
    for (int k = 0; k + s < kSteps; ++k) {
      // k updates released: steps 0 .. k+s may begin, step k+s+1 may not.
      WaitUntil([&] { return loop.begun.load() == k + s + 1; });
      std::this_thread::sleep_for(milliseconds(30));  // give a broken gate the chance to run ahead
      EXPECT_EQ(loop.begun.load(), k + s + 1) << "ran ahead with " << k << " updates applied";
      h.Release(k + 1);
    }
    h.Release(kSteps);
    compute.join();
    ASSERT_TRUE(loop.status.ok()) << loop.status.ToString();
    ASSERT_EQ(loop.versions.size(), static_cast<size_t>(kSteps));
    for (int t = 0; t < kSteps; ++t) {
      EXPECT_EQ(loop.versions[t], std::max(0, t - s)) << "step " << t;
      EXPECT_EQ(loop.installed[t], static_cast<float>(loop.versions[t])) << "step " << t;
    }
    float final_param = -1;
    auto fin = h.pipeline().Finish([&](const float* p) { final_param = p[0]; });
    ASSERT_TRUE(fin.ok()) << fin.status().ToString();
    EXPECT_EQ(fin->version, kSteps);
    EXPECT_FALSE(fin->finished);
    EXPECT_EQ(final_param, static_cast<float>(kSteps));
    EXPECT_EQ(fin->control, (std::vector<float>{2.0f * (kSteps - 1)}));  // last step's agreed value
    EXPECT_EQ(h.processed().size(), static_cast<size_t>(kSteps));
  }
}

// An agreed stop after step 3: the steps already submitted behind it are
// dropped, the compute thread is told to stop, and 4 updates are final.
// All updates released up front (the communication thread runs ahead as far
// as it can): still exactly version t - s at step t.
TEST(StalePipelineTest, InstalledVersionIsFixedEvenWhenNewerOnesExist) {
  for (int s : {1, 2}) {
    Harness h(s);
    h.Release(1 << 20);
    ComputeLoop loop;
    loop.Run(h.pipeline(), 30);
    ASSERT_TRUE(loop.status.ok()) << loop.status.ToString();
    for (int t = 0; t < 30; ++t) {
      EXPECT_EQ(loop.versions[t], std::max(0, t - s)) << "staleness " << s << " step " << t;
      EXPECT_EQ(loop.installed[t], static_cast<float>(std::max(0, t - s))) << "staleness " << s << " step " << t;
    }
    auto fin = h.pipeline().Finish([](const float*) {});
    ASSERT_TRUE(fin.ok());
    EXPECT_EQ(fin->version, 30);
  }
}

TEST(StalePipelineTest, AgreedStopDropsLaterStepsOnEveryWorker) {
  Harness h(2, /*stop_after=*/3);
  h.Release(1 << 20);
  ComputeLoop loop;
  loop.Run(h.pipeline(), 100);
  ASSERT_TRUE(loop.status.ok()) << loop.status.ToString();
  EXPECT_TRUE(loop.finished);
  EXPECT_LE(loop.begun.load(), 4 + 2 + 1);
  auto fin = h.pipeline().Finish([](const float*) {});
  ASSERT_TRUE(fin.ok()) << fin.status().ToString();
  EXPECT_EQ(fin->version, 4);
  EXPECT_TRUE(fin->finished);
  EXPECT_EQ(h.processed(), (std::vector<int64_t>{0, 1, 2, 3}));
}

// The communication thread's error reaches the compute thread (no hang), with
// its message, and Finish reports it too.
TEST(StalePipelineTest, CommunicationErrorSurfacesOnTheComputeThread) {
  Harness h(1, /*stop_after=*/-1, /*fail_at=*/2);
  h.Release(1 << 20);
  ComputeLoop loop;
  loop.Run(h.pipeline(), 100);
  ASSERT_FALSE(loop.status.ok());
  EXPECT_EQ(loop.status.code(), StatusCode::kUnavailable);
  EXPECT_NE(loop.status.message().find("peer cluster 1 went away"), std::string::npos) << loop.status.ToString();
  EXPECT_LE(loop.begun.load(), 2 + 1 + 1);
  EXPECT_EQ(h.pipeline().Finish([](const float*) {}).status().code(), StatusCode::kUnavailable);
}

// A communication thread that makes no progress fails the wait after the
// progress timeout instead of hanging the worker.
TEST(StalePipelineTest, StalledCommunicationTimesOut) {
  Harness h(0, -1, -1, milliseconds(100));
  ComputeLoop loop;
  loop.Run(h.pipeline(), 5);  // step 0 never completes: BeginStep(1) times out
  EXPECT_EQ(loop.status.code(), StatusCode::kDeadlineExceeded) << loop.status.ToString();
  EXPECT_EQ(loop.begun.load(), 1);
}

// Destroying a pipeline with queued work (an error on the compute side)
// drops the work and joins the thread.
TEST(StalePipelineTest, DestructionWithQueuedStepsDoesNotHang) {
  Harness h(3);
  ComputeLoop loop;
  loop.Run(h.pipeline(), 4);  // steps 0..3 begin without any update (staleness 3)
  ASSERT_TRUE(loop.status.ok());
  EXPECT_EQ(loop.begun.load(), 4);
  h.Release(1);  // step 0 may run; the rest are dropped by the destructor
}

TEST(StalePipelineTest, RejectsBadOptions) {
  float master = 0;
  auto fn = [](int64_t, std::vector<float>*) -> StatusOr<bool> { return false; };
  StalePipelineOptions o;
  o.num_parameters = 1;
  o.staleness = -1;
  EXPECT_EQ(StalePipeline::Create(o, &master, fn).status().code(), StatusCode::kInvalidArgument);
  o.staleness = 1;
  EXPECT_EQ(StalePipeline::Create(o, nullptr, fn).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(StalePipeline::Create(o, &master, nullptr).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stella::pipeline
