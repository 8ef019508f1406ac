#include "monitor/json_text.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace vireo::monitor {
namespace {

std::string escaped(std::string_view s) {
  std::string out;
  append_json_escaped(out, s);
  return out;
}

TEST(JsonTextTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(escaped("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(escaped("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
  EXPECT_EQ(escaped(std::string("\x00\x01\x1b\x1f", 4)), "\\u0000\\u0001\\u001b\\u001f");
  EXPECT_EQ(escaped("\x7f plain"), "\x7f plain");
}

TEST(JsonTextTest, KeepsValidUtf8) {
  EXPECT_EQ(escaped("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"),
            "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(JsonTextTest, ReplacesEachInvalidUtf8ByteWithReplacementCharacter) {
  EXPECT_EQ(escaped("a\xff"
                    "b"),
            "a\\ufffdb");
  EXPECT_EQ(escaped("\x80\x80"), "\\ufffd\\ufffd");             // stray continuation bytes
  EXPECT_EQ(escaped("\xc0\xaf"), "\\ufffd\\ufffd");             // overlong '/'
  EXPECT_EQ(escaped("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd");  // UTF-16 surrogate
  EXPECT_EQ(escaped("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd");  // > U+10FFFF
  EXPECT_EQ(escaped("ok\xe2\x82"), "ok\\ufffd\\ufffd");                    // truncated at the end
}

TEST(JsonTextTest, EscapedArbitraryBytesAreValidJson) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string doc = "\"" + escaped(all) + "\"";
  auto parsed = nlohmann::json::parse(doc);  // throws on invalid JSON or UTF-8
  std::string s = parsed.get<std::string>();
  EXPECT_EQ(s.substr(0, 128), all.substr(0, 128));
}

TEST(JsonTextTest, FormatsRfc3339WithNanoseconds) {
  timespec t{1764293892, 123};  // 2025-11-28T01:38:12Z
  EXPECT_EQ(rfc3339_nano(t), "2025-11-28T01:38:12.000000123Z");
}

TEST(JsonTextTest, FindsStringFieldsAndUnescapesThem) {
  std::string_view j = R"({"level":"error","msg":"create: \"x\"\nfailed \u0041","n":1})";
  EXPECT_EQ(find_json_string(j, "msg"), "create: \"x\"\nfailed A");
  EXPECT_EQ(find_json_string(j, "level"), "error");
  EXPECT_FALSE(find_json_string(j, "n"));
  EXPECT_FALSE(find_json_string(j, "missing"));
  EXPECT_FALSE(find_json_string(R"({"msg":"unterminated)", "msg"));
}

}  // namespace
}  // namespace vireo::monitor
