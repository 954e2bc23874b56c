// Client against a real kube-apiserver: CRUD and error mapping on ConfigMaps,
// every patch type, pagination, the status subresource of the StellaJob CRD,
// client-certificate and CA-verified TLS, token files re-read on use,
// transport errors and the client-side rate limit.
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "operator/kube/client.h"
#include "tests/operator/control_plane.h"
#include "tests/testing/process_util.h"

namespace stella::kube {
namespace {

using nlohmann::json;
using testing::SharedControlPlane;

[[maybe_unused]] const bool kInstalled = (testing::InstallSharedControlPlane(), true);

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions opts;
    opts.on_request = [this](const std::string& verb, int code) {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(verb + " " + std::to_string(code));
    };
    auto c = SharedControlPlane().NewClient(opts);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
    ns_ = testing::UniqueName("client");
    ASSERT_TRUE(testing::EnsureNamespace(*client_, ns_).ok());
  }
  std::vector<std::string> Calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  static json ConfigMap(const std::string& name, json data) {
    return {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", name}}}, {"data", std::move(data)}};
  }

  std::unique_ptr<Client> client_;
  std::string ns_;
  std::mutex mu_;
  std::vector<std::string> calls_;
};

TEST_F(ClientTest, CrudAndErrorMapping) {
  const std::string coll = ResourcePath("v1", "configmaps", ns_);
  EXPECT_EQ(coll, "/api/v1/namespaces/" + ns_ + "/configmaps");
  const std::string path = ResourcePath("v1", "configmaps", ns_, "cm");

  auto missing = client_->Get(path);
  ASSERT_TRUE(missing.ok()) << missing.status().ToString();
  EXPECT_TRUE(IsNotFound(*missing));
  EXPECT_EQ(ApiReason(*missing), "NotFound");
  EXPECT_NE(ApiMessage(*missing).find("\"cm\" not found"), std::string::npos) << ApiMessage(*missing);
  Status st = ResponseStatus(*missing, "get cm");
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("get cm: HTTP 404 NotFound"), std::string::npos) << st.message();

  auto created = client_->Create(coll, ConfigMap("cm", {{"a", "1"}}));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_EQ(created->code, 201) << created->body.dump();
  const std::string rv1 = ResourceVersionOf(created->body);
  EXPECT_FALSE(rv1.empty());
  EXPECT_EQ(NameOf(created->body), "cm");
  EXPECT_EQ(NamespaceOf(created->body), ns_);

  auto again = client_->Create(coll, ConfigMap("cm", {{"a", "1"}}));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(IsAlreadyExists(*again)) << again->body.dump();
  EXPECT_FALSE(IsConflict(*again));

  auto got = client_->Get(path);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->code, 200);
  EXPECT_EQ(got->body["data"]["a"], "1");

  json upd = got->body;
  upd["data"]["a"] = "2";
  auto updated = client_->Update(path, upd);
  ASSERT_TRUE(updated.ok());
  ASSERT_EQ(updated->code, 200) << updated->body.dump();
  EXPECT_NE(ResourceVersionOf(updated->body), rv1);

  // A write from a stale resourceVersion is a 409 Conflict, not AlreadyExists.
  upd["data"]["a"] = "3";
  auto stale = client_->Update(path, upd);
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(IsConflict(*stale)) << stale->body.dump();
  EXPECT_FALSE(IsAlreadyExists(*stale));
  EXPECT_EQ(ResponseStatus(*stale, "update").code(), StatusCode::kUnavailable);

  // Invalid objects come back as 422 with the field in the message.
  auto invalid = client_->Create(coll, ConfigMap("Bad_Name", json::object()));
  ASSERT_TRUE(invalid.ok());
  EXPECT_EQ(invalid->code, 422);
  EXPECT_EQ(ResponseStatus(*invalid, "create").code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ApiMessage(*invalid).find("metadata.name"), std::string::npos) << ApiMessage(*invalid);

  auto del = client_->Delete(path);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->code, 200) << del->body.dump();
  auto gone = client_->Get(path);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(IsNotFound(*gone));
  auto del_again = client_->Delete(path);
  ASSERT_TRUE(del_again.ok());
  EXPECT_TRUE(IsNotFound(*del_again));

  // The metrics hook saw every verb with its code.
  const std::vector<std::string> calls = Calls();
  const std::set<std::string> seen(calls.begin(), calls.end());
  for (const char* c :
       {"GET 404", "POST 201", "POST 409", "GET 200", "PUT 200", "PUT 409", "POST 422", "DELETE 200", "DELETE 404"}) {
    EXPECT_TRUE(seen.count(c)) << c;
  }
}

TEST_F(ClientTest, EveryPatchType) {
  const std::string coll = ResourcePath("v1", "configmaps", ns_);
  const std::string path = ResourcePath("v1", "configmaps", ns_, "p");
  ASSERT_EQ(client_->Create(coll, ConfigMap("p", {{"a", "1"}, {"b", "1"}}))->code, 201);

  auto merge = client_->Patch(path, {{"data", {{"a", "2"}, {"b", nullptr}}}}, PatchType::Merge());
  ASSERT_TRUE(merge.ok());
  ASSERT_EQ(merge->code, 200) << merge->body.dump();
  EXPECT_EQ(merge->body["data"], json({{"a", "2"}}));

  auto jsonp =
      client_->Patch(path, json::array({{{"op", "add"}, {"path", "/data/c"}, {"value", "3"}}}), PatchType::Json());
  ASSERT_TRUE(jsonp.ok());
  ASSERT_EQ(jsonp->code, 200) << jsonp->body.dump();
  EXPECT_EQ(jsonp->body["data"]["c"], "3");

  auto smp = client_->Patch(path, {{"metadata", {{"labels", {{"x", "y"}}}}}}, PatchType::StrategicMerge());
  ASSERT_TRUE(smp.ok());
  ASSERT_EQ(smp->code, 200) << smp->body.dump();
  EXPECT_EQ(smp->body["metadata"]["labels"]["x"], "y");

  // Server-side apply: creates when absent, records the field manager, and a
  // second manager conflicts unless it forces.
  const std::string applied = ResourcePath("v1", "configmaps", ns_, "applied");
  auto apply = client_->Patch(applied, ConfigMap("applied", {{"k", "v"}}), PatchType::Apply("stella-test"));
  ASSERT_TRUE(apply.ok());
  ASSERT_EQ(apply->code, 201) << apply->body.dump();
  EXPECT_EQ(apply->body["metadata"]["managedFields"][0]["manager"], "stella-test");
  auto conflict = client_->Patch(applied, ConfigMap("applied", {{"k", "other"}}), PatchType::Apply("someone-else"));
  ASSERT_TRUE(conflict.ok());
  EXPECT_EQ(conflict->code, 409) << conflict->body.dump();
  auto forced =
      client_->Patch(applied, ConfigMap("applied", {{"k", "other"}}), PatchType::Apply("someone-else", /*force=*/true));
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->code, 200) << forced->body.dump();
  EXPECT_EQ(forced->body["data"]["k"], "other");

  auto no_manager = client_->Patch(applied, json::object(), PatchType::Apply(""));
  EXPECT_EQ(no_manager.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, ListFollowsEveryPage) {
  const std::string coll = ResourcePath("v1", "configmaps", ns_);
  constexpr int kObjects = 23;
  for (int i = 0; i < kObjects; ++i) {
    json cm = ConfigMap("page-" + std::to_string(i), {{"i", std::to_string(i)}});
    cm["metadata"]["labels"] = {{"set", i % 2 ? "odd" : "even"}};
    auto r = client_->Create(coll, cm);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->code, 201) << r->body.dump();
  }
  const size_t lists_before = Calls().size();
  auto all = client_->List(coll, "", /*page_size=*/5);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  // kube-root-ca.crt is published into every namespace by the controller
  // manager, which these tests do not run: only ours are here.
  std::set<std::string> names;
  for (const json& item : all->items) {
    names.insert(NameOf(item));
    EXPECT_EQ(item["kind"], "ConfigMap");
    EXPECT_EQ(item["apiVersion"], "v1");
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kObjects));
  EXPECT_EQ(all->items.size(), static_cast<size_t>(kObjects));
  EXPECT_FALSE(all->resource_version.empty());
  // ceil(23 / 5) = 5 pages.
  EXPECT_EQ(Calls().size() - lists_before, 5u);

  auto odd = client_->List(coll, "set=odd", 4);
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->items.size(), static_cast<size_t>(kObjects / 2));
  for (const json& item : odd->items) EXPECT_EQ(item["metadata"]["labels"]["set"], "odd");

  auto bad_selector = client_->List(coll, "set in (", 5);
  EXPECT_EQ(bad_selector.status().code(), StatusCode::kInvalidArgument) << bad_selector.status().ToString();
  EXPECT_EQ(client_->List(coll, "", 0).status().code(), StatusCode::kInvalidArgument);
  auto no_such = client_->List(ResourcePath("stella.dev/v1alpha1", "nosuchthings", ns_));
  EXPECT_EQ(no_such.status().code(), StatusCode::kNotFound) << no_such.status().ToString();
}

TEST_F(ClientTest, StatusSubresourceOfStellaJob) {
  // The real CRD of this repository.
  const testing::CommandResult bin = testing::RunCommand("bash " + testing::SourceDir() + "/scripts/testbin.sh");
  ASSERT_EQ(bin.exit_code, 0) << bin.output;
  const std::string kubectl =
      bin.output.substr(0, bin.output.find('\n')) + "/kubectl --kubeconfig " + SharedControlPlane().kubeconfig_path();
  const testing::CommandResult applied =
      testing::RunCommand(kubectl + " apply -f " + testing::SourceDir() + "/crds/stellajob.yaml && " + kubectl +
                          " wait --for condition=Established crd/stellajobs.stella.dev --timeout=60s");
  ASSERT_EQ(applied.exit_code, 0) << applied.output;

  const std::string coll = ResourcePath("stella.dev/v1alpha1", "stellajobs", ns_);
  const std::string path = ResourcePath("stella.dev/v1alpha1", "stellajobs", ns_, "job");
  EXPECT_EQ(path, "/apis/stella.dev/v1alpha1/namespaces/" + ns_ + "/stellajobs/job");
  json job = {{"apiVersion", "stella.dev/v1alpha1"},
              {"kind", "StellaJob"},
              {"metadata", {{"name", "job"}}},
              {"spec",
               {{"model", {{"name", "cnn"}}},
                {"dataset", {{"name", "fashion-mnist"}}},
                {"training", {{"steps", 10}}},
                {"clusters", json::array({{{"name", "a"}}})}}}};
  // The CRD may take a moment to be served after Established.
  StatusOr<Response> created = InternalError("not tried");
  for (int i = 0; i < 100; ++i) {
    created = client_->Create(coll, job);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    if (created->code != 404) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(created->code, 201) << created->body.dump();
  const int64_t generation = created->body["metadata"]["generation"];

  // Status goes through /status; a spec change sent there is ignored.
  json with_status = created->body;
  with_status["status"] = {{"phase", "Running"}, {"observedGeneration", generation}};
  with_status["spec"]["training"]["steps"] = 99;
  auto st = client_->Update(ResourcePath("stella.dev/v1alpha1", "stellajobs", ns_, "job", "status"), with_status);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->code, 200) << st->body.dump();
  EXPECT_EQ(st->body["status"]["phase"], "Running");
  EXPECT_EQ(st->body["spec"]["training"]["steps"], 10);
  EXPECT_EQ(st->body["metadata"]["generation"], generation);

  // And a status change sent to the main resource is ignored.
  auto main = client_->Patch(path, {{"status", {{"phase", "Hacked"}}}}, PatchType::Merge());
  ASSERT_TRUE(main.ok());
  ASSERT_EQ(main->code, 200) << main->body.dump();
  EXPECT_EQ(main->body["status"]["phase"], "Running");

  auto merge_status = client_->Patch(ResourcePath("stella.dev/v1alpha1", "stellajobs", ns_, "job", "status"),
                                     {{"status", {{"message", "hello"}}}}, PatchType::Merge());
  ASSERT_TRUE(merge_status.ok());
  ASSERT_EQ(merge_status->code, 200) << merge_status->body.dump();
  EXPECT_EQ(merge_status->body["status"]["message"], "hello");
  EXPECT_EQ(merge_status->body["status"]["phase"], "Running");
}

TEST(ClientAuthTest, ClientCertificateAndVerifiedCa) {
  auto cfg = LoadKubeconfigFile(SharedControlPlane().cert_kubeconfig_path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(cfg->bearer_token.empty());
  EXPECT_FALSE(cfg->client_cert_pem.empty());
  EXPECT_FALSE(cfg->ca_pem.empty());
  EXPECT_FALSE(cfg->insecure_skip_tls_verify);
  auto client = Client::Create(*cfg);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto who = (*client)->Create("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "SelfSubjectReview"}});
  ASSERT_TRUE(who.ok()) << who.status().ToString();
  ASSERT_EQ(who->code, 201) << who->body.dump();
  EXPECT_EQ(who->body["status"]["userInfo"]["username"], "admin");
  EXPECT_NE(who->body["status"]["userInfo"]["groups"].dump().find("system:masters"), std::string::npos);

  // Without credentials the server sees an anonymous user: a 401/403 answer.
  ClusterConfig anonymous = *cfg;
  anonymous.client_cert_pem.clear();
  anonymous.client_key_pem.clear();
  auto anon = Client::Create(anonymous);
  ASSERT_TRUE(anon.ok());
  auto denied = (*anon)->Get("/api/v1/namespaces");
  ASSERT_TRUE(denied.ok()) << denied.status().ToString();
  EXPECT_TRUE(denied->code == 401 || denied->code == 403) << denied->code;

  // A CA that did not sign the server's certificate: the TLS handshake fails
  // and the call is a transport error, not an HTTP answer.
  ClusterConfig wrong_ca = *cfg;
  wrong_ca.ca_pem = stella::testing::ReadFile(SharedControlPlane().dir() + "/certs/client-ca.crt");
  ASSERT_FALSE(wrong_ca.ca_pem.empty());
  auto untrusted = Client::Create(wrong_ca);
  ASSERT_TRUE(untrusted.ok()) << untrusted.status().ToString();
  auto refused = (*untrusted)->Get("/api/v1/namespaces");
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("GET https://127.0.0.1"), std::string::npos) << refused.status().message();
}

TEST(ClientAuthTest, BadTlsMaterialIsRefusedAtCreate) {
  ClusterConfig cfg = SharedControlPlane().config();
  cfg.insecure_skip_tls_verify = false;
  cfg.ca_pem = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
  auto bad_ca = Client::Create(cfg);
  EXPECT_EQ(bad_ca.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_ca.status().message().find("ca_pem"), std::string::npos) << bad_ca.status().message();

  ClusterConfig mismatched = SharedControlPlane().config();
  mismatched.client_cert_pem = stella::testing::ReadFile(SharedControlPlane().dir() + "/certs/admin.crt");
  mismatched.client_key_pem = stella::testing::ReadFile(SharedControlPlane().dir() + "/certs/client-ca.key");
  auto bad_key = Client::Create(mismatched);
  EXPECT_EQ(bad_key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_key.status().message().find("client_key_pem"), std::string::npos) << bad_key.status().message();

  ClusterConfig half = SharedControlPlane().config();
  half.client_cert_pem = mismatched.client_cert_pem;
  EXPECT_EQ(Client::Create(half).status().code(), StatusCode::kInvalidArgument);

  ClusterConfig no_scheme = SharedControlPlane().config();
  no_scheme.server = "127.0.0.1:6443";
  auto bad_server = Client::Create(no_scheme);
  EXPECT_NE(bad_server.status().message().find("server"), std::string::npos);
}

TEST(ClientAuthTest, TokenFileIsReadOnEveryRequest) {
  stella::testing::TempDir tmp;
  const std::string token_path = tmp.path() + "/token";
  ClusterConfig cfg = SharedControlPlane().config();
  stella::testing::WriteFile(token_path, cfg.bearer_token + "\n");
  cfg.token_file = token_path;
  cfg.bearer_token.clear();
  auto client = Client::Create(cfg);
  ASSERT_TRUE(client.ok());
  auto ok = (*client)->Get("/api/v1/namespaces/default");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->code, 200);
  // The token "rotates" to one the server does not know: the next request
  // uses it (401), proving the file is re-read.
  stella::testing::WriteFile(token_path, "rotated-unknown-token\n");
  auto rejected = (*client)->Get("/api/v1/namespaces/default");
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->code, 401);
  stella::testing::WriteFile(token_path, SharedControlPlane().config().bearer_token);
  EXPECT_EQ((*client)->Get("/api/v1/namespaces/default")->code, 200);
}

TEST(ClientTransportTest, UnreachableServerIsAnErrorWithContext) {
  ClusterConfig cfg = SharedControlPlane().config();
  cfg.server = "https://127.0.0.1:" + std::to_string(stella::testing::FreePort());
  std::vector<int> codes;
  ClientOptions opts;
  opts.request_timeout = std::chrono::seconds(5);
  opts.on_request = [&codes](const std::string&, int code) { codes.push_back(code); };
  auto client = Client::Create(cfg, opts);
  ASSERT_TRUE(client.ok());
  auto r = (*client)->Get("/api/v1/namespaces");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("GET " + cfg.server + "/api/v1/namespaces"), std::string::npos)
      << r.status().message();
  ASSERT_EQ(codes.size(), 1u);
  EXPECT_EQ(codes[0], 0);
}

TEST(ClientTransportTest, RateLimitSpacesRequests) {
  ClientOptions opts;
  opts.qps = 20;
  opts.burst = 1;
  auto client = SharedControlPlane().NewClient(opts);
  ASSERT_TRUE(client.ok());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 6; ++i) ASSERT_EQ((*client)->Get("/api/v1/namespaces/default")->code, 200);
  // A lower bound the token bucket guarantees (5 waits of 50 ms), not a
  // speed target: the first request passes on the burst.
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
}

}  // namespace
}  // namespace stella::kube
