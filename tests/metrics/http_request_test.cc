#include "src/metrics/http_request.h"

#include <gtest/gtest.h>

namespace stella {
namespace metrics {
namespace {

TEST(FindRequestHeadEndTest, FindsBlankLineWithCrlfOrLf) {
  EXPECT_EQ(FindRequestHeadEnd("GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), 27u);
  EXPECT_EQ(FindRequestHeadEnd("GET / HTTP/1.1\n\n"), 16u);
  EXPECT_EQ(FindRequestHeadEnd("GET / HTTP/1.1\r\nHost: a\r\n"), std::string_view::npos);
  EXPECT_EQ(FindRequestHeadEnd("GET / HTTP/1.1"), std::string_view::npos);
  // Empty lines before the request line do not end the head.
  EXPECT_EQ(FindRequestHeadEnd("\r\n\r\n"), std::string_view::npos);
  EXPECT_EQ(FindRequestHeadEnd("\r\nGET / HTTP/1.0\r\n\r\n"), 20u);
}

TEST(ParseRequestHeadTest, ParsesRequestLineAndHeaders) {
  StatusOr<HttpRequest> r = ParseRequestHead(
      "GET /metrics?name=x&y=2 HTTP/1.1\r\nHost: example:9090\r\n"
      "Accept-Encoding:gzip \t\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->target, "/metrics?name=x&y=2");
  EXPECT_EQ(r->path, "/metrics");
  EXPECT_EQ(r->query, "name=x&y=2");
  EXPECT_EQ(r->version_major, 1);
  EXPECT_EQ(r->version_minor, 1);
  ASSERT_EQ(r->headers.size(), 2u);
  EXPECT_EQ(r->headers[0].first, "host");
  EXPECT_EQ(r->headers[0].second, "example:9090");
  EXPECT_EQ(r->headers[1].first, "accept-encoding");
  EXPECT_EQ(r->headers[1].second, "gzip");
}

TEST(ParseRequestHeadTest, AcceptsAbsoluteFormAndLeadingEmptyLines) {
  StatusOr<HttpRequest> r = ParseRequestHead("\r\nGET http://host:1/healthz?a HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->path, "/healthz");
  EXPECT_EQ(r->query, "a");
  EXPECT_EQ(r->version_minor, 0);
  StatusOr<HttpRequest> bare = ParseRequestHead("GET http://host HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->path, "/");
}

TEST(ParseRequestHeadTest, KeepsOtherMethodsAndVersionsForTheCallerToJudge) {
  StatusOr<HttpRequest> post = ParseRequestHead("POST /metrics HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(post.ok());
  EXPECT_EQ(post->method, "POST");
  StatusOr<HttpRequest> v2 = ParseRequestHead("GET / HTTP/2.0\r\n\r\n");
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version_major, 2);
}

TEST(ParseRequestHeadTest, RejectsMalformedRequestLines) {
  for (const char* bad : {
           "",                                // nothing
           "\r\n\r\n",                        // only empty lines
           "GET\r\n\r\n",                     // no target/version
           "GET /metrics\r\n\r\n",            // HTTP/0.9 style, no version
           "GET  /metrics HTTP/1.1\r\n\r\n",  // double space
           "GET /metrics HTTP/1.1 \r\n\r\n",  // trailing space
           "GET /a b HTTP/1.1\r\n\r\n",       // space in target
           "G(T / HTTP/1.1\r\n\r\n",          // method not a token
           "GET metrics HTTP/1.1\r\n\r\n",    // not an absolute path
           "GET / HTTP/1\r\n\r\n",            // bad version
           "GET / http/1.1\r\n\r\n",          // version is case-sensitive
           "GET / HTTP/1.1x\r\n\r\n",         // junk after version
           "GET /\x01 HTTP/1.1\r\n\r\n",      // control byte in target
       }) {
    StatusOr<HttpRequest> r = ParseRequestHead(bad);
    EXPECT_FALSE(r.ok()) << "accepted: " << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(ParseRequestHeadTest, RejectsMalformedHeaderFields) {
  for (const char* bad : {
           "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
           "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
           "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n",
       }) {
    EXPECT_FALSE(ParseRequestHead(bad).ok()) << "accepted: " << bad;
  }
}

TEST(ParseRequestHeadTest, ErrorMessagesNameTheOffendingPart) {
  StatusOr<HttpRequest> r = ParseRequestHead("GET / HTTP/9\r\n\r\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("HTTP/9"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace metrics
}  // namespace stella
