// The pure decoders of operator/kube/client.h: watch-stream lines
// (DecodeWatchEvent, WatchErrorCode, which Client::Watch uses for every line)
// and the metadata and Status accessors. Garbage must come back as an error
// Status or as "absent", never as an exception: kube_json_fuzzer
// (tests/fuzz) feeds them arbitrary bytes.
#include "operator/kube/client.h"

#include <gtest/gtest.h>

namespace stella::kube {
namespace {

using json = nlohmann::json;

TEST(DecodeWatchEventTest, DecodesEveryEventType) {
  const std::pair<const char*, EventType> cases[] = {{"ADDED", EventType::kAdded},
                                                     {"MODIFIED", EventType::kModified},
                                                     {"DELETED", EventType::kDeleted},
                                                     {"BOOKMARK", EventType::kBookmark},
                                                     {"ERROR", EventType::kError}};
  for (const auto& [name, type] : cases) {
    auto ev = DecodeWatchEvent(std::string(R"({"type":")") + name +
                               R"(","object":{"metadata":{"name":"p","resourceVersion":"42"}}})");
    ASSERT_TRUE(ev.ok()) << name << ": " << ev.status().ToString();
    EXPECT_EQ(ev->type, type);
    EXPECT_EQ(std::string(EventTypeName(ev->type)), name);
    EXPECT_EQ(ResourceVersionOf(ev->object), "42");
    EXPECT_EQ(NameOf(ev->object), "p");
  }
  auto no_object = DecodeWatchEvent(R"({"type":"BOOKMARK"})");
  ASSERT_TRUE(no_object.ok());
  EXPECT_TRUE(no_object->object.is_null());
}

TEST(DecodeWatchEventTest, RejectsGarbageNamingWhatIsWrong) {
  for (const char* line : {"", "not json", "[1,2]", "\"ADDED\"", "{\"object\":{}}", "{\"type\":7}",
                           "{\"type\":\"ADDED\"", "{\"type\":null}"}) {
    auto ev = DecodeWatchEvent(line);
    ASSERT_FALSE(ev.ok()) << line;
    EXPECT_EQ(ev.status().code(), StatusCode::kDataLoss) << line << ": " << ev.status().ToString();
    EXPECT_NE(ev.status().message().find("watch event"), std::string::npos) << ev.status().ToString();
  }
  auto unknown = DecodeWatchEvent(R"({"type":"RENAMED","object":{}})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("\"RENAMED\""), std::string::npos) << unknown.status().ToString();
  // The quoted line is bounded.
  auto long_line = DecodeWatchEvent(std::string(10000, 'x'));
  ASSERT_FALSE(long_line.ok());
  EXPECT_LT(long_line.status().message().size(), 300u);
}

TEST(DecodeWatchEventTest, ErrorCodesOnlyFromWellFormedStatuses) {
  auto gone = DecodeWatchEvent(
      R"({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"Expired","code":410}})");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(WatchErrorCode(gone->object), 410);
  // These used to throw json::type_error out of Client::Watch's
  // object.value("code", 500), or (1e30) convert a double out of int range.
  for (const char* status :
       {"null", "\"Gone\"", "[410]", R"({"code":"410"})", R"({"code":1e30})", R"({"code":410.5})", R"({"code":-410})",
        R"({"code":18446744073709551615})", R"({"code":99})", R"({"code":600})", R"({})"}) {
    EXPECT_EQ(WatchErrorCode(json::parse(status)), 500) << status;
  }
}

TEST(MetadataTest, MistypedMetadataReadsAsAbsent) {
  // A number where a string belongs used to throw json::type_error.
  const json obj = json::parse(R"({"metadata":{"name":5,"namespace":["ns"],"resourceVersion":42}})");
  EXPECT_EQ(NameOf(obj), "");
  EXPECT_EQ(NamespaceOf(obj), "");
  EXPECT_EQ(ResourceVersionOf(obj), "");
  EXPECT_EQ(NameOf(json::parse(R"({"metadata":"m"})")), "");
  EXPECT_EQ(NameOf(json::parse(R"({"metadata":{"name":"n","namespace":"ns"}})")), "n");
  EXPECT_EQ(NamespaceOf(json::parse(R"({"metadata":{"name":"n","namespace":"ns"}})")), "ns");

  const Response mistyped{409, json::parse(R"({"kind":"Status","reason":7,"message":"m"})")};
  EXPECT_EQ(ApiReason(mistyped), "");
  EXPECT_TRUE(IsConflict(mistyped));
  EXPECT_EQ(ApiReason(Response{409, json::parse(R"({"kind":5,"reason":"AlreadyExists"})")}), "");
  const Response exists{409, json::parse(R"({"kind":"Status","reason":"AlreadyExists","message":"m"})")};
  EXPECT_TRUE(IsAlreadyExists(exists));
  EXPECT_EQ(ResponseStatus(exists, "create").ToString().find("AlreadyExists") != std::string::npos, true);
}

}  // namespace
}  // namespace stella::kube
