#include "cli/output.h"

#include <gtest/gtest.h>

#include "cli/progress.h"

namespace vireo::cli {
namespace {

TEST(OutputTest, YamlQuotesOnlyWhatYamlWouldMisread) {
  Json j = {
      {"name", "web"},   {"count", 3},       {"flag", "yes"},          {"empty", ""},
      {"colon", "a: b"}, {"list", {"x", 1}}, {"nested", {{"k", "v"}}}, {"none", Json::object()}};
  EXPECT_EQ(to_yaml(j),
            "colon: \"a: b\"\n"
            "count: 3\n"
            "empty: \"\"\n"
            "flag: \"yes\"\n"
            "list:\n"
            "- x\n"
            "- 1\n"
            "name: web\n"
            "nested:\n"
            "  k: v\n"
            "none: {}\n");
}

TEST(OutputTest, YamlListOfObjects) {
  Json j = Json::array({{{"a", 1}, {"b", 2}}, {{"a", 3}}});
  EXPECT_EQ(to_yaml(j), "- a: 1\n  b: 2\n- a: 3\n");
  EXPECT_EQ(to_yaml(Json::array()), "[]\n");
}

TEST(OutputTest, TableAlignsColumns) {
  EXPECT_EQ(render_table({{"NAME", "STATUS"}, {"a-long-name", "ok"}}),
            "NAME         STATUS\n"
            "a-long-name  ok\n");
}

TEST(OutputTest, FormatNames) {
  EXPECT_EQ(*parse_format("yaml"), Format::kYaml);
  EXPECT_FALSE(parse_format("xml"));
}

TEST(ProgressTest, RendersBar) {
  EXPECT_EQ(ProgressBar::render(50, "copying", 10), "[=====>    ]  50% copying");
  EXPECT_EQ(ProgressBar::render(100, "", 4), "[====] 100% ");
  EXPECT_EQ(ProgressBar::render(250, "x", 4), "[====] 100% x");
}

}  // namespace
}  // namespace vireo::cli
