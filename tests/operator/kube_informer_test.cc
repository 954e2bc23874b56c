// Informer against a real kube-apiserver: handlers see add/update/delete of
// label-selected objects with the cache already updated; across an API
// server restart it reports unhealthy while the server is down, and after it
// is back (the old resourceVersion is then too old: 410) re-lists and
// synthesizes DELETED for an object removed while it could not watch.
#include "operator/kube/informer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/operator/control_plane.h"

namespace stella::kube {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SharedControlPlane;

[[maybe_unused]] const bool kInstalled = (testing::InstallSharedControlPlane(), true);

struct Seen {
  EventType type;
  std::string name;
  std::string value;  // data.v
  bool cache_had_it;  // what Informer::Get returned inside the handler
  std::string rv;
};

class Recorder {
 public:
  void Add(Seen s) {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(std::move(s));
    cv_.notify_all();
  }
  // Waits (bounded) for an event of `type` on `name`; returns it.
  std::optional<Seen> WaitFor(EventType type, const std::string& name, seconds timeout = seconds(60)) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<Seen> found;
    cv_.wait_for(lock, timeout, [&] {
      for (const Seen& s : seen_) {
        if (s.type == type && s.name == name) {
          found = s;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::vector<Seen> All() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
};

// Polls `pred` every 20 ms for at most `timeout`.
template <typename Pred>
bool Eventually(Pred pred, seconds timeout = seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

class InformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions co;
    co.request_timeout = seconds(5);
    auto c = SharedControlPlane().NewClient(co);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
    ns_ = testing::UniqueName("inf");
    ASSERT_TRUE(testing::EnsureNamespace(*client_, ns_).ok());
    coll_ = ResourcePath("v1", "configmaps", ns_);
  }
  void Record(Informer* inf) {
    inf->AddHandler([this, inf](EventType t, const json& obj) {
      const std::string v = obj.contains("data") ? obj["data"].value("v", "") : "";
      rec_.Add({t, NameOf(obj), v, inf->Get(NamespaceOf(obj), NameOf(obj)).has_value(), ResourceVersionOf(obj)});
    });
  }
  void CreateCm(const std::string& name, const std::string& app, const std::string& v) {
    json cm = {{"apiVersion", "v1"},
               {"kind", "ConfigMap"},
               {"metadata", {{"name", name}, {"labels", {{"app", app}}}}},
               {"data", {{"v", v}}}};
    auto r = client_->Create(coll_, cm);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->code, 201) << r->body.dump();
  }

  std::unique_ptr<Client> client_;
  std::string ns_, coll_;
  Recorder rec_;
};

TEST_F(InformerTest, HandlersSeeAddUpdateDeleteOfSelectedObjects) {
  CreateCm("before", "x", "0");  // exists before the informer starts
  CreateCm("unselected", "y", "0");
  Informer inf(client_.get(), coll_, "app=x");
  Record(&inf);
  EXPECT_FALSE(inf.Healthy());
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(milliseconds(30000)));
  EXPECT_TRUE(inf.HasSynced());
  EXPECT_TRUE(inf.Healthy());
  ASSERT_TRUE(rec_.WaitFor(EventType::kAdded, "before"));
  EXPECT_EQ(inf.List().size(), 1u);
  EXPECT_FALSE(inf.Get(ns_, "unselected").has_value());

  CreateCm("a", "x", "1");
  auto added = rec_.WaitFor(EventType::kAdded, "a");
  ASSERT_TRUE(added);
  EXPECT_TRUE(added->cache_had_it);  // the cache is updated before handlers run
  ASSERT_EQ(
      client_->Patch(ResourcePath("v1", "configmaps", ns_, "a"), {{"data", {{"v", "2"}}}}, PatchType::Merge())->code,
      200);
  auto modified = rec_.WaitFor(EventType::kModified, "a");
  ASSERT_TRUE(modified);
  EXPECT_EQ(modified->value, "2");
  auto cached = inf.Get(ns_, "a");
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ((*cached)["data"]["v"], "2");
  EXPECT_EQ(inf.List("app=x").size(), 2u);
  EXPECT_EQ(inf.List("app=y").size(), 0u);

  ASSERT_EQ(client_->Delete(ResourcePath("v1", "configmaps", ns_, "a"))->code, 200);
  auto deleted = rec_.WaitFor(EventType::kDeleted, "a");
  ASSERT_TRUE(deleted);
  EXPECT_FALSE(deleted->cache_had_it);
  EXPECT_EQ(deleted->value, "2");  // the last known state
  EXPECT_FALSE(inf.Get(ns_, "a").has_value());

  for (const Seen& s : rec_.All()) EXPECT_NE(s.name, "unselected");
  inf.Stop();
  EXPECT_FALSE(inf.Healthy());
  EXPECT_EQ(inf.ListCount(), 1);
}

TEST_F(InformerTest, RelistsAfterApiServerRestartAndSynthesizesDeletes) {
  CreateCm("keep", "r", "1");
  CreateCm("doomed", "r", "1");
  InformerOptions o;
  o.backoff_initial = milliseconds(100);
  o.backoff_max = milliseconds(1000);
  Informer inf(client_.get(), coll_, "app=r", o);
  Record(&inf);
  inf.Start();
  ASSERT_TRUE(inf.WaitForSync(milliseconds(30000)));
  ASSERT_EQ(inf.List().size(), 2u);
  ASSERT_TRUE(Eventually([&] { return inf.Healthy(); }));
  rec_.Clear();

  ASSERT_TRUE(SharedControlPlane().StopApiServer().ok());
  EXPECT_TRUE(Eventually([&] { return !inf.Healthy(); })) << "still healthy with the API server down";
  EXPECT_FALSE(inf.LastError().ok());
  // While nobody can watch, "doomed" disappears behind the API server's back,
  // and storage moves on: the informer's version will be too old.
  ASSERT_TRUE(SharedControlPlane().EtcdDelete("/registry/configmaps/" + ns_ + "/doomed").ok());
  ASSERT_TRUE(SharedControlPlane().EtcdPut("/stella-test/bump", "1").ok());
  ASSERT_TRUE(SharedControlPlane().EtcdPut("/stella-test/bump", "2").ok());
  ASSERT_TRUE(SharedControlPlane().StartApiServer().ok());

  EXPECT_TRUE(Eventually([&] { return inf.Healthy(); })) << inf.LastError().ToString();
  auto gone = rec_.WaitFor(EventType::kDeleted, "doomed");
  ASSERT_TRUE(gone) << "no synthesized DELETED; lists: " << inf.ListCount();
  EXPECT_EQ(gone->value, "1");
  EXPECT_GE(inf.ListCount(), 2);
  EXPECT_FALSE(inf.Get(ns_, "doomed").has_value());
  EXPECT_TRUE(inf.Get(ns_, "keep").has_value());
  // "keep" did not change: the re-list reports nothing for it.
  for (const Seen& s : rec_.All()) {
    EXPECT_NE(s.name, "keep") << EventTypeName(s.type) << " v=" << s.value << " lists=" << inf.ListCount();
  }

  // And the watch runs again.
  CreateCm("after", "r", "1");
  EXPECT_TRUE(rec_.WaitFor(EventType::kAdded, "after"));
  inf.Stop();
}

}  // namespace
}  // namespace stella::kube
