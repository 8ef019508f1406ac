#include <gtest/gtest.h>

#include <filesystem>

#include "base/base64.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/result.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/subprocess.h"

namespace vireo {
namespace {

Result<int> half(int v) {
  if (v % 2) return make_error(ErrorCode::kInvalidArgument, "{} is odd", v);
  return v / 2;
}

Result<int> quarter(int v) {
  int h = TRY_CTX(half(v), "halve {}", v);
  return TRY(half(h));
}

TEST(ResultTest, TryPropagatesErrorWithContext) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "3 is odd");
  auto r2 = quarter(5);
  EXPECT_EQ(r2.error().message(), "halve 5: 5 is odd");
}

TEST(ResultTest, ErrnoErrorsMapToCodes) {
  EXPECT_EQ(Error::from_errno(ENOENT, "open /x").code(), ErrorCode::kNotFound);
  EXPECT_EQ(Error::from_errno(ENOENT, "open /x").message(), "open /x: No such file or directory");
  EXPECT_EQ(Error::from_errno(EEXIST, "mkdir").code(), ErrorCode::kAlreadyExists);
}

TEST(StringsTest, ParseSizeAcceptsUnits) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(*parse_size("64KiB"), 64ull << 10);
  EXPECT_EQ(*parse_size("2 GB"), 2ull << 30);
}

TEST(StringsTest, ParseSizeRejectsGarbage) {
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("abc"));
  EXPECT_FALSE(parse_size("-1G"));
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("99999999999T"));
  EXPECT_EQ(parse_size("12Q").error().message(),
            "invalid size '12Q': unknown unit 'Q' (use K, M, G or T)");
}

TEST(StringsTest, NamesAreSafePathComponents) {
  EXPECT_TRUE(validate_name("web-1", "profile"));
  EXPECT_TRUE(validate_name("a.b_c", "profile"));
  EXPECT_FALSE(validate_name("", "profile"));
  EXPECT_FALSE(validate_name("..", "profile"));
  EXPECT_FALSE(validate_name("a/b", "profile"));
  EXPECT_FALSE(validate_name(std::string(64, 'a'), "profile"));
  EXPECT_EQ(validate_name("-x", "vm").error().message(),
            "invalid vm name '-x': must start with a letter or digit");
}

TEST(StringsTest, FormatBytes) {
  EXPECT_EQ(percent_encode("a b/c~_.-Z9"), "a%20b%2Fc~_.-Z9");
  EXPECT_EQ(percent_encode("{\"é\"}"), "%7B%22%C3%A9%22%7D");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(3ull << 30), "3.0 GiB");
}

TEST(JsonTest, SyntaxErrorNamesPosition) {
  auto r = parse_json(R"({"a": 1,})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(r.error().message().starts_with("invalid JSON at byte 9: ")) << r.error().message();
}

TEST(JsonTest, NumbersOutOfRangeAreAnErrorNotACrash) {
  auto r = parse_json("[1e999]");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(r.error().message().starts_with("invalid JSON")) << r.error().message();
}

TEST(JsonTest, MergePatchFollowsRfc7386) {
  Json target = Json::parse(R"({"a": "b", "c": {"d": "e", "f": "g"}})");
  merge_patch(target, Json::parse(R"({"a": "z", "c": {"f": null}})"));
  EXPECT_EQ(target, Json::parse(R"({"a": "z", "c": {"d": "e"}})"));
}

TEST(FileTest, AtomicWriteReplacesContent) {
  auto dir = std::filesystem::temp_directory_path() / ("vireo-base-" + random_hex(4));
  ASSERT_TRUE(make_dirs(dir / "x" / "y", 0700));
  auto path = dir / "x" / "y" / "f";
  ASSERT_TRUE(write_file_atomic(path, "one"));
  ASSERT_TRUE(write_file_atomic(path, "two"));
  EXPECT_EQ(*read_file(path), "two");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir / "x" / "y"), {}), 1);
  EXPECT_EQ(read_file(dir / "missing").error().code(), ErrorCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(SubprocessTest, CollectsOutputAndExitCode) {
  auto r =
      run_process({"sh", "-c", "read x; echo out:$x; echo err >&2; exit 3"}, {.input = "hi\n"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out:hi\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(SubprocessTest, TimesOut) {
  auto r = run_process({"sleep", "10"}, {.timeout = std::chrono::milliseconds(100)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kTimeout);
}

TEST(SubprocessTest, MissingProgramIsAnError) {
  EXPECT_FALSE(run_process({"/nonexistent/program"}));
}

TEST(RollbackTest, UndoesInReverseUnlessCommitted) {
  std::string log;
  {
    Rollback rb;
    rb.add([&] { log += "a"; });
    rb.add([&] { log += "b"; });
  }
  EXPECT_EQ(log, "ba");
  {
    Rollback rb;
    rb.add([&] { log += "c"; });
    rb.commit();
  }
  EXPECT_EQ(log, "ba");
}

TEST(IdsTest, UuidShape) {
  auto u = random_uuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(random_hex(8), random_hex(8));
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace vireo

namespace vireo {
namespace {

TEST(Base64, RoundTripsAndRefusesGarbage) {
  EXPECT_EQ(base64_encode("alice:secret"), "YWxpY2U6c2VjcmV0");
  EXPECT_EQ(base64_decode("YWxpY2U6c2VjcmV0").value_or("?"), "alice:secret");
  EXPECT_EQ(base64_decode("YQ==").value_or("?"), "a");
  EXPECT_EQ(base64url_encode(std::string("\xfb\xff", 2)), "-_8");
  EXPECT_EQ(base64url_decode("-_8").value_or("?"), std::string("\xfb\xff", 2));
  EXPECT_EQ(base64url_decode("e30").value_or("?"), "{}");
  for (const char* bad : {"", "abc", "a*bc", "YQ=\x01"}) EXPECT_FALSE(base64_decode(bad)) << bad;
  EXPECT_FALSE(base64url_decode("a+b"));
  EXPECT_FALSE(base64url_decode("ab=="));
  EXPECT_FALSE(base64_decode(std::string(8, 'A'), 4));
}

}  // namespace
}  // namespace vireo
