#include "image/build/containerfile.h"

#include <gtest/gtest.h>

#include <map>

#include "image/build/builder.h"
#include "image/tar_builder.h"
#include "image/test_util.h"

namespace vireo::image::build {
namespace {

Lookup vars(std::map<std::string, std::string> m) {
  return [m = std::move(m)](std::string_view name) -> std::optional<std::string> {
    auto it = m.find(std::string(name));
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

const Lookup kNone = vars({});

Containerfile parse_ok(std::string_view text) {
  auto f = parse_containerfile(text);
  EXPECT_TRUE(f) << text << "\n→ " << (f ? "" : f.error().message());
  return f ? *f : Containerfile{};
}

std::string parse_error(std::string_view text) {
  auto f = parse_containerfile(text);
  EXPECT_FALSE(f) << text;
  return f ? "" : f.error().message();
}

TEST(ContainerfileTest, ParsesEveryInstructionCaseInsensitively) {
  auto f = parse_ok(
      "from busybox:1.36\n"
      "Run echo hi\n"
      "cmd [\"sh\"]\n"
      "entrypoint [\"/init\"]\n"
      "copy a /a\n"
      "add b.tar /opt/\n"
      "env A=1\n"
      "arg V=2\n"
      "workdir /app\n"
      "user 1000\n"
      "expose 80\n"
      "label k=v\n");
  ASSERT_EQ(f.instructions.size(), 12u);
  const Keyword want[] = {Keyword::kFrom,    Keyword::kRun,  Keyword::kCmd,    Keyword::kEntrypoint,
                          Keyword::kCopy,    Keyword::kAdd,  Keyword::kEnv,    Keyword::kArg,
                          Keyword::kWorkdir, Keyword::kUser, Keyword::kExpose, Keyword::kLabel};
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(f.instructions[i].keyword, want[i]) << i;
    EXPECT_EQ(f.instructions[i].line, static_cast<int>(i) + 1);
  }
  EXPECT_EQ(f.instructions[1].text, "RUN echo hi");
}

TEST(ContainerfileTest, JoinsContinuationsAndDropsCommentsAndDirectives) {
  auto f = parse_ok(
      "# syntax=docker/dockerfile:1\n"
      "# escape=\\\n"
      "\n"
      "FROM busybox\n"
      "  # an indented comment\n"
      "RUN echo one && \\\n"
      "    # a comment inside the continuation\n"
      "    echo two \\\n"
      "\n"
      "    && echo three\n"
      "CMD [\"sh\"]   \r\n");
  ASSERT_EQ(f.instructions.size(), 3u);
  EXPECT_EQ(f.instructions[1].line, 6);
  EXPECT_EQ(f.instructions[1].rest, "echo one &&     echo two     && echo three");
  EXPECT_TRUE(f.instructions[2].json);
  EXPECT_EQ(f.instructions[2].json_args, std::vector<std::string>{"sh"});
}

TEST(ContainerfileTest, ContinuationAtEndOfFileEndsTheInstruction) {
  auto f = parse_ok("FROM busybox\nRUN echo \\");
  ASSERT_EQ(f.instructions.size(), 2u);
  EXPECT_EQ(f.instructions[1].rest, "echo");
}

TEST(ContainerfileTest, ShellAndExecForms) {
  auto f = parse_ok(
      "FROM x\nRUN make all\nRUN [\"make\", \"all\"]\nRUN [ -f /x ] && echo y\n"
      "CMD echo $HOME\nENTRYPOINT [\"/bin/app\", \"--flag\"]\n");
  EXPECT_EQ(command_args(f.instructions[1]),
            (std::vector<std::string>{"/bin/sh", "-c", "make all"}));
  EXPECT_EQ(command_args(f.instructions[2]), (std::vector<std::string>{"make", "all"}));
  EXPECT_FALSE(f.instructions[3].json);  // a shell test, not JSON
  EXPECT_EQ(command_args(f.instructions[4]),
            (std::vector<std::string>{"/bin/sh", "-c", "echo $HOME"}));  // not substituted
  EXPECT_EQ(command_args(f.instructions[5]), (std::vector<std::string>{"/bin/app", "--flag"}));
}

TEST(ContainerfileTest, ArgBeforeFromIsAllowed) {
  auto f = parse_ok("ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-latest}\n");
  ASSERT_EQ(f.instructions.size(), 3u);
  auto from = from_args(f.instructions[2], vars({{"BASE", "alpine"}}));
  ASSERT_TRUE(from);
  EXPECT_EQ(from->image, "alpine:latest");
  auto decls = arg_decls(f.instructions[0], kNone);
  ASSERT_TRUE(decls);
  ASSERT_EQ(decls->size(), 1u);
  EXPECT_EQ((*decls)[0].name, "BASE");
  EXPECT_EQ((*decls)[0].default_value, "busybox");
  auto bare = arg_decls(f.instructions[1], kNone);
  ASSERT_TRUE(bare);
  EXPECT_FALSE((*bare)[0].default_value);
}

TEST(ContainerfileTest, FromAsNameAccepted) {
  auto f = parse_ok("FROM busybox AS build\n");
  EXPECT_EQ(from_args(f.instructions[0], kNone)->image, "busybox");
}

TEST(ContainerfileTest, Substitution) {
  auto v = vars({{"A", "one"}, {"EMPTY", ""}, {"SP", "a b"}});
  struct Case {
    std::string in, out;
  } cases[] = {
      {"$A", "one"},        {"${A}", "one"},          {"x${A}y", "xoney"},     {"$A-$B.", "one-."},
      {"${B:-def}", "def"}, {"${EMPTY:-def}", "def"}, {"${EMPTY-def}", ""},    {"${A:-def}", "one"},
      {"${A:+alt}", "alt"}, {"${B:+alt}", ""},        {"${B:-${A}x}", "onex"}, {"'$A'", "$A"},
      {"\"$A\"", "one"},    {"\\$A", "$A"},           {"\"\\$A\"", "$A"},      {"$", "$"},
      {"a$1", "a$1"},       {"\"a b\"", "a b"},
  };
  for (const auto& c : cases) {
    auto r = expand_word(c.in, v);
    ASSERT_TRUE(r) << c.in << ": " << r.error().message();
    EXPECT_EQ(*r, c.out) << c.in;
  }
  auto words = expand_words("a \"b c\" '$A' $SP", v);
  ASSERT_TRUE(words);
  EXPECT_EQ(*words, (std::vector<std::string>{"a", "b c", "$A", "a b"}));
}

TEST(ContainerfileTest, BadSubstitutionIsAnError) {
  for (const char* bad : {"${A", "${}", "${1x}", "${A:}", "\"open", "'open", "${A:?must be set}"}) {
    auto r = expand_word(bad, kNone);
    EXPECT_FALSE(r) << bad;
  }
  EXPECT_EQ(expand_word("${A:?must be set}", kNone).error().message(), "A: must be set");
  auto f = parse_ok("FROM ${X:?base image needed}\n");  // checked when the build runs
  auto from = from_args(f.instructions[0], kNone);
  ASSERT_FALSE(from);
  EXPECT_EQ(from.error().message(), "line 1: FROM: X: base image needed");
}

TEST(ContainerfileTest, EnvAndLabelPairs) {
  auto f = parse_ok(
      "FROM x\nENV A=1 B=\"two words\" C=$A\nENV D legacy value here\nLABEL \"a b\"=c d=e\n");
  auto env = key_values(f.instructions[1], vars({{"A", "9"}}));
  ASSERT_TRUE(env);
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(*env, (std::vector<P>{{"A", "1"}, {"B", "two words"}, {"C", "9"}}));
  auto legacy = key_values(f.instructions[2], kNone);
  ASSERT_TRUE(legacy);
  EXPECT_EQ(*legacy, (std::vector<P>{{"D", "legacy value here"}}));
  auto labels = key_values(f.instructions[3], kNone);
  ASSERT_TRUE(labels);
  EXPECT_EQ(*labels, (std::vector<P>{{"a b", "c"}, {"d", "e"}}));
}

TEST(ContainerfileTest, CopyArguments) {
  auto f = parse_ok(
      "FROM x\nCOPY --chown=app:staff --chmod=0640 a b /dst/\nCOPY [\"with space\", \"/d\"]\n"
      "ADD $SRC ${DST}\n");
  auto c = copy_args(f.instructions[1], kNone);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->sources, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c->dest, "/dst/");
  EXPECT_EQ(c->chown, "app:staff");
  EXPECT_EQ(c->chmod, 0640u);
  auto j = copy_args(f.instructions[2], kNone);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->sources, std::vector<std::string>{"with space"});
  auto v = copy_args(f.instructions[3], vars({{"SRC", "s.tar"}, {"DST", "/opt/"}}));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->sources, std::vector<std::string>{"s.tar"});
  EXPECT_EQ(v->dest, "/opt/");
}

TEST(ContainerfileTest, ExposeNormalizesPorts) {
  auto f = parse_ok("FROM x\nEXPOSE 80 53/UDP 8000-8010/tcp\n");
  auto p = ports(f.instructions[1], kNone);
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, (std::vector<std::string>{"80/tcp", "53/udp", "8000-8010/tcp"}));
}

TEST(ContainerfileTest, WorkdirAndUserAreOneWord) {
  auto f = parse_ok("FROM x\nWORKDIR /srv/$APP\nUSER ${U:-app}:staff\n");
  EXPECT_EQ(*single_word(f.instructions[1], vars({{"APP", "web"}})), "/srv/web");
  EXPECT_EQ(*single_word(f.instructions[2], kNone), "app:staff");
}

// Every malformed Containerfile: one line naming the line and what is wrong.
TEST(ContainerfileTest, BadInputIsOneLineNamingTheProblem) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"", "empty"},
      {"\n\n# only a comment\n", "empty"},
      {"RUN echo\n", "line 1: RUN before FROM"},
      {"ARG A\n", "no FROM instruction"},
      {"ARG A\nENV B=1\nFROM x\n", "line 2: ENV before FROM"},
      {"FROM x\nRUNN echo\n", "line 2: unknown instruction 'RUNN'"},
      {"FROM x\nVOLUME /data\n", "line 2: unsupported instruction 'VOLUME'"},
      {"FROM x\nFROM y\n", "line 2: a second FROM"},
      {"FROM\n", "line 1: FROM: missing arguments"},
      {"FROM x\nRUN\n", "line 2: RUN: missing arguments"},
      {"FROM x y\n", "line 1: FROM: expected FROM IMAGE [AS NAME]"},
      {"FROM --platform=linux/arm64 x\n", "flag --platform is not supported"},
      {"FROM x\nRUN [\"a\", \n", "line 2: RUN: malformed JSON form"},
      {"FROM x\nCMD [\"a\", 1]\n", "line 2: CMD: malformed JSON form: element 1 is not a string"},
      {"FROM x\nRUN []\n", "line 2: RUN: empty command"},
      {"FROM x\nENTRYPOINT [\"a\" \"b\"]\n", "malformed JSON form"},
      {"FROM x\nRUN --mount=type=cache,target=/x make\n", "flag --mount is not supported"},
      {"FROM x\nCOPY a\n", "line 2: COPY: expected SOURCE... DEST"},
      {"FROM x\nCOPY --from=build /a /b\n", "multi-stage builds are not supported"},
      {"FROM x\nCOPY --chown= a /b\n", "--chown needs a value"},
      {"FROM x\nCOPY --chown=a:b:c a /b\n", "expected USER[:GROUP]"},
      {"FROM x\nCOPY --chmod=u+x a /b\n", "--chmod 'u+x': expected an octal mode"},
      {"FROM x\nCOPY --bogus=1 a /b\n", "flag --bogus is not supported"},
      {"FROM x\nADD \"a /b\n", "unterminated double quote"},
      {"FROM x\nENV\n", "line 2: ENV: missing arguments"},
      {"FROM x\nENV A\n", "'A' needs a value"},
      {"FROM x\nENV A=1 B\n", "'B' is not KEY=VALUE"},
      {"FROM x\nENV =1\n", "empty name"},
      {"FROM x\nENV A=${B\n", "unterminated '${B'"},
      {"FROM x\nARG 1A\n", "invalid name '1A'"},
      {"FROM x\nLABEL a=\"b\n", "unterminated double quote"},
      {"FROM x\nEXPOSE 99999\n", "invalid port '99999'"},
      {"FROM x\nEXPOSE 80/icmp\n", "invalid port '80/icmp'"},
      {"FROM x\nEXPOSE http\n", "invalid port 'http'"},
      {"FROM x\nWORKDIR ${}\n", "bad substitution"},
      {"FROM x\nUSER 'a\n", "unterminated single quote"},
      {std::string("FROM x\nRUN a\0b\n", 15), "NUL byte"},
  };
  for (const auto& c : cases) {
    std::string msg = parse_error(c.text);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.text << "\n→ " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ContainerfileTest, OversizedFileRefused) {
  std::string big = "FROM x\n" + std::string(kMaxContainerfileSize, '#');
  EXPECT_NE(parse_error(big).find("larger than"), std::string::npos);
}

TEST(ContainerfileTest, IgnoreRules) {
  auto rules =
      IgnoreRules::parse("# comment\n*.log\n!keep.log\nbuild/\n/secret\ndocs/**/draft*\n./tmp\n");
  EXPECT_TRUE(rules.excluded("a.log"));
  EXPECT_FALSE(rules.excluded("keep.log"));
  EXPECT_FALSE(rules.excluded("sub/a.log"));  // per component, as Docker: no implicit **/
  EXPECT_TRUE(rules.excluded("build"));
  EXPECT_TRUE(rules.excluded("build/out/x.o"));
  EXPECT_TRUE(rules.excluded("secret"));
  EXPECT_TRUE(rules.excluded("docs/a/b/draft1.md"));
  EXPECT_TRUE(rules.excluded("docs/draft.md"));
  EXPECT_FALSE(rules.excluded("docs/final.md"));
  EXPECT_TRUE(rules.excluded("tmp/x"));
  EXPECT_FALSE(rules.excluded("src/main.c"));
  EXPECT_TRUE(IgnoreRules::parse("\n# x\n").empty());
}

// Builds of metadata instructions only need no root and no runtime: the config they lead to.
class MetadataBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ImageStore::create(tmp_.path() / "store", {.privileged = false});
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
    testing::write_test_file(tmp_.path() / "base.tar",
                             testing::TarBuilder().file("etc/os-release", "ID=test\n").build());
    ASSERT_TRUE(store_->import_rootfs_tar(tmp_.path() / "base.tar", "base:1"));
  }

  Result<BuildResult> build(const std::string& text, std::map<std::string, std::string> args = {}) {
    testing::write_test_file(tmp_.path() / "Containerfile", text);
    BuildOptions o{tmp_.path() / "Containerfile", tmp_.path(), "out:1", std::move(args), false, {}};
    BuildProgress progress;
    return image::build::build(*store_, o, progress);
  }

  testing::TempDir tmp_;
  std::unique_ptr<ImageStore> store_;
};

TEST_F(MetadataBuildTest, ConfigFollowsTheInstructions) {
  auto r = build(
      "ARG BASE=nope\nFROM ${BASE}:1\nARG V=1\nENV A=$V B=${A}x\nENV C=${A}y\n"
      "ENTRYPOINT [\"/e\"]\nLABEL l=$A\nEXPOSE 80 53/udp\nUSER 5:6\nWORKDIR rel\nWORKDIR ../sub/\n",
      {{"BASE", "base"}, {"V", "2"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->steps, 11);
  EXPECT_EQ(r->cached, 0);
  const ImageConfig& c = r->image.config;
  auto has = [&](const std::string& e) {
    return std::find(c.env.begin(), c.env.end(), e) != c.env.end();
  };
  EXPECT_TRUE(has("A=2"));
  EXPECT_TRUE(has("B=x")) << "one ENV sees the values from before it";
  EXPECT_TRUE(has("C=2y"));
  EXPECT_FALSE(has("V=2")) << "ARGs are not stored";
  EXPECT_EQ(c.entrypoint, std::vector<std::string>{"/e"});
  EXPECT_TRUE(c.cmd.empty()) << "ENTRYPOINT clears the base image's CMD";
  EXPECT_EQ(c.user, "5:6");
  EXPECT_EQ(c.working_dir, "/sub");
  EXPECT_EQ(c.raw["config"]["Labels"]["l"], "2");
  EXPECT_TRUE(c.raw["config"]["ExposedPorts"].contains("53/udp"));
  EXPECT_EQ(c.diff_ids.size(), 1u);  // the base layer only
  ASSERT_EQ(c.raw["history"].size(), 1u + 9u);
  EXPECT_EQ(c.raw["history"].back()["created_by"], "WORKDIR ../sub/");
  EXPECT_TRUE(c.raw["history"].back()["empty_layer"].get<bool>());
  EXPECT_EQ(r->image.tags, std::vector<std::string>{"out:1"});
}

TEST_F(MetadataBuildTest, CmdBeforeEntrypointStaysAndScratchHasNoLayers) {
  auto r = build("FROM scratch\nCMD [\"a\"]\nENTRYPOINT /bin/run\n");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->image.config.cmd, std::vector<std::string>{"a"});
  EXPECT_EQ(r->image.config.entrypoint, (std::vector<std::string>{"/bin/sh", "-c", "/bin/run"}));
  EXPECT_TRUE(r->image.manifest.layers.empty());
}

TEST_F(MetadataBuildTest, BadInputFailsBeforeAnyWorkWithOneLine) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"FROM nope:1\n", "line 1: FROM nope:1: image nope:1 not found"},
      {"FROM base:1\nWORKDIR ${W:?set W}\n", "line 2: WORKDIR: W: set W"},
      {"FROM base:1\nEXPOSE $P\n", "line 2: EXPOSE: invalid port ''"},
      {"FROM ${B}\n", "line 1: FROM: the image name is empty"},
      {"FROM base:1\nBOGUS\n", "line 2: unknown instruction 'BOGUS'"},
  };
  for (const auto& c : cases) {
    auto r = build(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message().find(c.expect), std::string::npos)
        << c.text << "\n→ " << r.error().message();
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
  }
  EXPECT_FALSE(store_->show("out:1"));
  BuildOptions relative{"Containerfile", tmp_.path(), "", {}, false, {}};
  BuildProgress progress;
  EXPECT_FALSE(image::build::build(*store_, relative, progress));
  BuildOptions missing{tmp_.path() / "nope", tmp_.path(), "", {}, false, {}};
  auto r = image::build::build(*store_, missing, progress);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Containerfile"), std::string::npos);
}

}  // namespace
}  // namespace vireo::image::build
