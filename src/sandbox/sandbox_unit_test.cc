#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "sandbox/app_paths.h"
#include "sandbox/app_store.h"
#include "sandbox/package.h"

namespace vireo::sandbox {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vireo-sbx-unit-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::setenv("VIREO_APPS_DIR", (dir_ + "/apps").c_str(), 1);
    ::setenv("HOME", (dir_ + "/home").c_str(), 1);
    fs::create_directories(dir_ + "/home");
    app_ = *app_paths("unit");
    fs::create_directories(app_.store + "/etc");
    fs::create_directories(app_.home);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
  }
  std::string dir_;
  AppPaths app_;
};

TEST(AppPathsTest, NamesAreOneSafePathComponent) {
  EXPECT_TRUE(validate_app_name("firefox-esr_1.2"));
  for (const char* bad : {"", "..", ".hidden", "-x", "a/b", "../../etc", "a b", "x\n"})
    EXPECT_FALSE(validate_app_name(bad)) << bad;
}

TEST(AppPathsTest, UserPathsAreNormalizedAndNeverClimb) {
  EXPECT_EQ(*checked_absolute_path("/etc//x/./y", "p"), "/etc/x/y");
  EXPECT_FALSE(checked_absolute_path("etc/x", "p"));
  EXPECT_FALSE(checked_absolute_path("/etc/../root", "p"));
  EXPECT_FALSE(checked_absolute_path("/a:b", "p"));
  EXPECT_FALSE(checked_absolute_path("/a,upperdir=/x", "p"));
}

TEST_F(StoreTest, ListsAddedModifiedAndHomeChanges) {
  write(app_.store + "/etc/vireo-unit-new.conf", "x");
  write(app_.store + "/etc/hostname", "changed");
  write(app_.home + "/.apprc", "setting=1");
  auto changes = list_store(app_);
  ASSERT_TRUE(changes) << changes.error().message();
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].path, "/etc/hostname");
  EXPECT_EQ((*changes)[0].kind, ChangeKind::kModified);
  EXPECT_EQ((*changes)[1].path, "/etc/vireo-unit-new.conf");
  EXPECT_EQ((*changes)[1].kind, ChangeKind::kAdded);
  EXPECT_EQ((*changes)[2].path, "~/.apprc");
}

TEST_F(StoreTest, WhiteoutsAreListedAsDeletions) {
  if (::geteuid() != 0) GTEST_SKIP() << "making a whiteout device needs root";
  ASSERT_EQ(::mknod((app_.store + "/etc/hostname").c_str(), S_IFCHR | 0600, 0), 0);
  write(app_.store + "/etc/.wh.hosts", "");
  auto changes = list_store(app_);
  ASSERT_TRUE(changes);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ((*changes)[0].kind, ChangeKind::kDeleted);
  EXPECT_EQ((*changes)[1].path, "/etc/hosts");
  EXPECT_EQ((*changes)[1].kind, ChangeKind::kDeleted);
}

TEST_F(StoreTest, DiffShowsTheAppsVersionAgainstTheHost) {
  write(app_.store + "/etc/vireo-unit-new.conf", "hello\n");
  auto diff = diff_store(app_);
  ASSERT_TRUE(diff) << diff.error().message();
  EXPECT_NE(diff->find("+hello"), std::string::npos) << *diff;
  EXPECT_NE(diff->find("app:/etc/vireo-unit-new.conf"), std::string::npos);
}

TEST_F(StoreTest, ResetRemovesOnePathOrEverything) {
  write(app_.store + "/etc/a/b.conf", "x");
  write(app_.store + "/etc/c.conf", "x");
  ASSERT_TRUE(reset_store(app_, "/etc/a"));
  EXPECT_FALSE(fs::exists(app_.store + "/etc/a"));
  EXPECT_TRUE(fs::exists(app_.store + "/etc/c.conf"));
  EXPECT_EQ(reset_store(app_, "/etc/nothing").error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(reset_store(app_, ""));
  EXPECT_TRUE(list_store(app_)->empty());
}

TEST_F(StoreTest, ResetNeverFollowsSymlinksPlantedInTheStore) {
  // The app made store/etc/evil point at a host folder; resetting through it must not reach it.
  write(dir_ + "/victim/keep", "precious");
  fs::create_directory_symlink(dir_ + "/victim", app_.store + "/etc/evil");
  EXPECT_FALSE(reset_store(app_, "/etc/evil/keep"));
  EXPECT_FALSE(reset_store(app_, "/etc/../../victim/keep"));
  ASSERT_TRUE(reset_store(app_, "/etc/evil"));  // removes the link itself
  EXPECT_TRUE(fs::exists(dir_ + "/victim/keep"));
  EXPECT_FALSE(fs::is_symlink(app_.store + "/etc/evil"));
  auto diff = diff_store(app_);
  EXPECT_TRUE(diff);
}

Json good_manifest() {
  Json m = {{"vireo_app", 1},
            {"name", "hello"},
            {"command", {"/usr/lib/vireo-apps/hello/bin/hello"}},
            {"env", Json::array()},
            {"profile", "default"},
            {"net", "host"},
            {"files",
             {{{"path", "usr/lib/vireo-apps/hello/bin/hello"},
               {"sha256", std::string(64, 'a')},
               {"mode", 493}}}}};
  m["digest"] = manifest_digest(m);
  return m;
}

TEST(PackageTest, ManifestValidationRejectsHostileOrMalformedFields) {
  EXPECT_TRUE(validate_manifest(good_manifest()));
  auto broken = [](auto mutate) {
    Json m = good_manifest();
    mutate(m);
    return validate_manifest(m);
  };
  EXPECT_FALSE(broken([](Json& m) { m["files"][0]["path"] = "../../etc/passwd"; }));
  EXPECT_FALSE(broken([](Json& m) { m["files"][0]["path"] = "home/user/.bashrc"; }));
  EXPECT_FALSE(broken([](Json& m) { m["files"][0]["path"] = "usr/./x"; }));
  EXPECT_FALSE(broken([](Json& m) { m["name"] = "../x"; }));
  EXPECT_FALSE(broken([](Json& m) { m["command"] = Json::array(); }));
  EXPECT_FALSE(broken([](Json& m) { m["env"] = {"NOEQUALS"}; }));
  EXPECT_FALSE(broken([](Json& m) { m["profile"] = "god"; }));
  EXPECT_FALSE(broken([](Json& m) { m.erase("files"); }));
  // Fields of the wrong type are refused, never thrown (the fuzzer's "vireo_app": []).
  for (const Json& v : {Json::array(), Json::object(), Json("1"), Json(1.5), Json(2), Json()})
    EXPECT_FALSE(broken([&](Json& m) { m["vireo_app"] = v; })) << v.dump();
  EXPECT_FALSE(broken([](Json& m) { m.erase("vireo_app"); }));
  EXPECT_FALSE(validate_manifest(Json("string")));
}

TEST(PackageTest, DigestCoversEveryField) {
  Json m = good_manifest();
  std::string d = m["digest"];
  m["files"][0]["sha256"] = std::string(64, 'b');
  EXPECT_NE(manifest_digest(m), d);
  m = good_manifest();
  m["command"].push_back("--evil");
  EXPECT_NE(manifest_digest(m), d);
}

}  // namespace
}  // namespace vireo::sandbox
