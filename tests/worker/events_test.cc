// EventSink: one "@stella {json}" line per event, and never an exception:
// a WAN peer controls some of the text that events carry (its job name in a
// Hello that is refused, say), and invalid UTF-8 in it once made
// nlohmann::json::dump throw and end the worker.
#include "runtime/worker/events.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

namespace stella::worker {
namespace {

std::string Capture(const std::function<void(EventSink&)>& emit) {
  char* buf = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&buf, &size);
  {
    EventSink sink(out, nlohmann::json{{"cluster", 1}});
    emit(sink);
  }
  std::fclose(out);
  std::string text(buf, size);
  std::free(buf);
  return text;
}

TEST(EventSinkTest, OneLinePerEventWithTheIdentity) {
  const std::string text = Capture([](EventSink& s) { s.Emit("progress", {{"step", 3}}); });
  EXPECT_EQ(text, "@stella {\"cluster\":1,\"event\":\"progress\",\"step\":3}\n");
}

TEST(EventSinkTest, InvalidUtf8FromAPeerIsReplacedNotThrown) {
  // A job name of bytes that are not UTF-8, as a hostile Hello could carry.
  const std::string hostile = std::string("job-") + "\xff\xfe\xc3" + "\n\"";
  std::string text;
  EXPECT_NO_THROW(text = Capture([&](EventSink& s) {
                    s.Emit("wan_link", {{"state", "down"}, {"reason", "Hello from job " + hostile}});
                  }));
  EXPECT_NE(text.find("Hello from job job-\xef\xbf\xbd"), std::string::npos) << text;  // U+FFFD
  EXPECT_EQ(text.find('\xff'), std::string::npos);
  // Still one line, and valid JSON after the prefix.
  ASSERT_EQ(text.rfind("@stella ", 0), 0u);
  EXPECT_EQ(text.find('\n'), text.size() - 1);
  const auto parsed = nlohmann::json::parse(text.substr(8));
  EXPECT_EQ(parsed.at("state"), "down");
  EXPECT_EQ(EventSink::Dump({{"m", hostile}}).find('\xfe'), std::string::npos);
}

}  // namespace
}  // namespace stella::worker
