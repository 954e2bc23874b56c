// Client::Watch against a real kube-apiserver: events in order, resume from a
// resourceVersion without repeats or gaps, bookmarks (through the
// streaming-list protocol, which sends one at once), a server-side close,
// prompt stop, and 410 Gone after an etcd compaction. The control plane runs
// with the watch cache off for podtemplates so that a watch on them is served
// by etcd and a compacted version is really gone.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "operator/kube/client.h"
#include "tests/operator/control_plane.h"

namespace stella::kube {
namespace {

using nlohmann::json;
using testing::SharedControlPlane;

[[maybe_unused]] const bool kInstalled =
    (testing::InstallSharedControlPlane("--watch-cache-sizes=podtemplates#0"), true);

// Collects events from a watch running on its own thread.
class Recorder {
 public:
  void Add(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  // Waits (bounded) until at least n events arrived.
  bool WaitFor(size_t n, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }
  std::vector<WatchEvent> Events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchEvent> events_;
};

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = SharedControlPlane().NewClient();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
    ns_ = testing::UniqueName("watch");
    ASSERT_TRUE(testing::EnsureNamespace(*client_, ns_).ok());
    coll_ = ResourcePath("v1", "configmaps", ns_);
  }
  std::future<StatusOr<WatchEnd>> StartWatch(const WatchOptions& o, Recorder* rec) {
    return std::async(std::launch::async, [this, o, rec] {
      return client_->Watch(
          coll_, o, [rec](const WatchEvent& e) { rec->Add(e); }, stop_);
    });
  }
  json ConfigMap(const std::string& name, const std::string& v) {
    return {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", name}}}, {"data", {{"v", v}}}};
  }

  std::unique_ptr<Client> client_;
  std::string ns_, coll_;
  std::atomic<bool> stop_{false};
};

TEST_F(WatchTest, EventsInOrderThenResumeWithoutRepeats) {
  auto list = client_->List(coll_);
  ASSERT_TRUE(list.ok());
  WatchOptions o;
  o.resource_version = list->resource_version;
  o.timeout_seconds = 60;
  Recorder rec;
  bool connected = false;
  o.on_connected = [&connected] { connected = true; };
  auto watch = StartWatch(o, &rec);

  const std::string path = ResourcePath("v1", "configmaps", ns_, "a");
  ASSERT_EQ(client_->Create(coll_, ConfigMap("a", "1"))->code, 201);
  ASSERT_EQ(client_->Patch(path, {{"data", {{"v", "2"}}}}, PatchType::Merge())->code, 200);
  ASSERT_EQ(client_->Delete(path)->code, 200);
  ASSERT_TRUE(rec.WaitFor(3));
  stop_ = true;
  ASSERT_EQ(watch.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  StatusOr<WatchEnd> end = watch.get();
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_TRUE(connected);
  EXPECT_FALSE(end->gone);

  std::vector<WatchEvent> ev = rec.Events();
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].type, EventType::kAdded);
  EXPECT_EQ(ev[1].type, EventType::kModified);
  EXPECT_EQ(ev[1].object["data"]["v"], "2");
  EXPECT_EQ(ev[2].type, EventType::kDeleted);
  for (const auto& e : ev) EXPECT_EQ(NameOf(e.object), "a");
  EXPECT_EQ(end->resource_version, ResourceVersionOf(ev[2].object));
  EXPECT_EQ(end->events, 3u);

  // Changes made while nobody watches arrive when resuming from the last
  // version, and nothing already seen is repeated.
  ASSERT_EQ(client_->Create(coll_, ConfigMap("b", "1"))->code, 201);
  ASSERT_EQ(client_->Create(coll_, ConfigMap("c", "1"))->code, 201);
  stop_ = false;
  WatchOptions resume = o;
  resume.resource_version = end->resource_version;
  Recorder rec2;
  auto watch2 = StartWatch(resume, &rec2);
  ASSERT_TRUE(rec2.WaitFor(2));
  stop_ = true;
  ASSERT_EQ(watch2.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(watch2.get().ok());
  std::vector<WatchEvent> ev2 = rec2.Events();
  ASSERT_EQ(ev2.size(), 2u);
  EXPECT_EQ(NameOf(ev2[0].object), "b");
  EXPECT_EQ(NameOf(ev2[1].object), "c");
  EXPECT_EQ(ev2[0].type, EventType::kAdded);
}

TEST_F(WatchTest, BookmarkFromStreamingList) {
  ASSERT_EQ(client_->Create(coll_, ConfigMap("x", "1"))->code, 201);
  ASSERT_EQ(client_->Create(coll_, ConfigMap("y", "1"))->code, 201);
  WatchOptions o;
  o.send_initial_events = true;
  o.timeout_seconds = 60;
  Recorder rec;
  auto watch = StartWatch(o, &rec);
  // The server sends the current state, then a bookmark that marks its end.
  ASSERT_TRUE(rec.WaitFor(3));
  stop_ = true;
  ASSERT_EQ(watch.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  StatusOr<WatchEnd> end = watch.get();
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  std::vector<WatchEvent> ev = rec.Events();
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].type, EventType::kAdded);
  EXPECT_EQ(ev[1].type, EventType::kAdded);
  ASSERT_EQ(ev[2].type, EventType::kBookmark);
  EXPECT_EQ(ev[2].object["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
  // The bookmark's version is where a resumed watch must start.
  EXPECT_EQ(end->resource_version, ResourceVersionOf(ev[2].object));
  EXPECT_FALSE(end->resource_version.empty());
}

TEST_F(WatchTest, ServerSideTimeoutIsANormalClose) {
  auto list = client_->List(coll_);
  ASSERT_TRUE(list.ok());
  WatchOptions o;
  o.resource_version = list->resource_version;
  o.timeout_seconds = 1;
  Recorder rec;
  auto watch = StartWatch(o, &rec);
  // The server ends the stream after ~1 s; the bound is generous.
  ASSERT_EQ(watch.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  StatusOr<WatchEnd> end = watch.get();
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_FALSE(end->gone);
  // Nothing changed: the version may only have moved forward through a bookmark.
  for (const WatchEvent& e : rec.Events()) EXPECT_EQ(e.type, EventType::kBookmark);
}

TEST_F(WatchTest, StopEndsAQuietWatch) {
  auto list = client_->List(coll_);
  ASSERT_TRUE(list.ok());
  WatchOptions o;
  o.resource_version = list->resource_version;
  o.timeout_seconds = 300;
  bool connected = false;
  std::promise<void> open;
  o.on_connected = [&] {
    connected = true;
    open.set_value();
  };
  Recorder rec;
  auto watch = StartWatch(o, &rec);
  ASSERT_EQ(open.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  stop_ = true;
  ASSERT_EQ(watch.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  StatusOr<WatchEnd> end = watch.get();
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_EQ(end->resource_version, list->resource_version);
  EXPECT_EQ(end->events, 0u);
}

TEST_F(WatchTest, CompactedVersionIsGone) {
  const std::string coll = ResourcePath("v1", "podtemplates", ns_);
  auto pod_template = [](const std::string& name) {
    return json{{"apiVersion", "v1"},
                {"kind", "PodTemplate"},
                {"metadata", {{"name", name}}},
                {"template", {{"spec", {{"containers", json::array({{{"name", "c"}, {"image", "x"}}})}}}}}};
  };
  auto first = client_->Create(coll, pod_template("t0"));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->code, 201) << first->body.dump();
  const std::string old_rv = ResourceVersionOf(first->body);
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(client_->Create(coll, pod_template("t" + std::to_string(i)))->code, 201);
  auto rev = SharedControlPlane().EtcdRevision();
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  ASSERT_TRUE(SharedControlPlane().EtcdCompact(*rev).ok());

  WatchOptions o;
  o.resource_version = old_rv;
  o.timeout_seconds = 30;
  Recorder rec;
  auto end = client_->Watch(
      coll, o, [&rec](const WatchEvent& e) { rec.Add(e); }, stop_);
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_TRUE(end->gone);
  EXPECT_FALSE(end->gone_message.empty());
  EXPECT_TRUE(rec.Events().empty());

  // A fresh list gives a version that can be watched again.
  auto list = client_->List(coll);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), 4u);
  o.resource_version = list->resource_version;
  o.timeout_seconds = 1;
  auto again = client_->Watch(
      coll, o, [&rec](const WatchEvent& e) { rec.Add(e); }, stop_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->gone);
}

TEST_F(WatchTest, ErrorsAreStatuses) {
  WatchOptions o;
  o.timeout_seconds = 5;
  auto missing = client_->Watch(
      ResourcePath("stella.dev/v1alpha1", "nosuchthings", ns_), o, [](const WatchEvent&) {}, stop_);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();

  o.timeout_seconds = 0;
  EXPECT_EQ(client_
                ->Watch(
                    coll_, o, [](const WatchEvent&) {}, stop_)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stella::kube
