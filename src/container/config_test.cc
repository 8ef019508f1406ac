#include "container/config.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace vireo::container {
namespace {

// A minimal valid config; tests patch one field at a time.
Json base_config() {
  return Json::parse(R"({
    "ociVersion": "1.2.0",
    "root": {"path": "rootfs", "readonly": true},
    "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]},
    "hostname": "box",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}],
              "resources": {"memory": {"limit": 67108864}, "pids": {"limit": 32}},
              "maskedPaths": ["/proc/kcore"],
              "seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                          "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}
  })");
}

// The error message of parsing j, or "" when it parses.
std::string error_of(const Json& j) {
  auto c = parse_config(j.dump(), "/bundle");
  return c ? std::string() : c.error().message();
}

TEST(ConfigTest, ParsesValidConfigIntoTypedFields) {
  std::vector<std::string> warnings;
  auto c = parse_config(base_config().dump(), "/bundle", &warnings);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->rootfs, "/bundle/rootfs");
  EXPECT_TRUE(c->root_readonly);
  ASSERT_TRUE(c->process);
  EXPECT_EQ(c->process->args, std::vector<std::string>{"/bin/true"});
  EXPECT_EQ(c->process->capabilities->bounding, std::vector<int>{5});
  EXPECT_EQ(c->process->rlimits.at(0).hard, 1024u);
  EXPECT_EQ(c->linux.namespaces.size(), 3u);
  EXPECT_EQ(*c->linux.resources->memory_limit, 67108864);
  EXPECT_EQ(*c->linux.resources->pids_limit, 32);
  EXPECT_EQ(c->linux.seccomp->syscalls.at(0).names.at(0), "read");
  EXPECT_TRUE(warnings.empty());
}

TEST(ConfigTest, UnknownFieldsAreWarnedNotRejected) {
  Json j = base_config();
  j["vendorExtension"] = 1;
  j["process"]["shinyNewThing"] = true;
  std::vector<std::string> warnings;
  ASSERT_TRUE(parse_config(j.dump(), "/bundle", &warnings));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[1], "config.json: process.shinyNewThing: unknown field ignored");
}

TEST(ConfigTest, MissingRequiredFieldsAreNamed) {
  Json j = base_config();
  j.erase("ociVersion");
  EXPECT_EQ(error_of(j), "config.json: ociVersion: required field missing");
  j = base_config();
  j["root"].erase("path");
  EXPECT_EQ(error_of(j), "config.json: root.path: required field missing");
  j = base_config();
  j["process"].erase("cwd");
  EXPECT_EQ(error_of(j), "config.json: process.cwd: required field missing");
  j = base_config();
  j["process"].erase("args");
  EXPECT_EQ(error_of(j), "config.json: process.args: required field missing");
}

TEST(ConfigTest, ProcessIsOptional) {
  Json j = base_config();
  j.erase("process");
  EXPECT_EQ(error_of(j), "");
}

TEST(ConfigTest, WrongTypesAreNamed) {
  Json j = base_config();
  j["process"]["user"]["uid"] = "root";
  EXPECT_EQ(error_of(j), "config.json: process.user.uid: expected an unsigned integer, got string");
  j = base_config();
  j["process"]["args"][0] = 7;
  EXPECT_EQ(error_of(j), "config.json: process.args[0]: expected a string, got integer");
  j = base_config();
  j["root"]["readonly"] = "yes";
  EXPECT_EQ(error_of(j), "config.json: root.readonly: expected a boolean, got string");
  j = base_config();
  j["linux"]["namespaces"] = Json::object();
  EXPECT_EQ(error_of(j), "config.json: linux.namespaces: expected an array, got object");
  j = base_config();
  j["process"]["user"]["uid"] = -1;
  EXPECT_EQ(error_of(j),
            "config.json: process.user.uid: expected an unsigned integer, got a negative one");
}

TEST(ConfigTest, DuplicateNamespaceTypeIsRejected) {
  Json j = base_config();
  j["linux"]["namespaces"].push_back({{"type", "pid"}});
  EXPECT_EQ(error_of(j), "config.json: linux.namespaces[3]: duplicate namespace type \"pid\"");
}

TEST(ConfigTest, UnknownNamespaceTypeIsRejected) {
  Json j = base_config();
  j["linux"]["namespaces"][1]["type"] = "pidd";
  EXPECT_EQ(error_of(j), "config.json: linux.namespaces[1].type: unknown namespace type \"pidd\"");
}

TEST(ConfigTest, RelativePathsWhereAbsoluteRequiredAreRejected) {
  Json j = base_config();
  j["process"]["cwd"] = "tmp";
  EXPECT_EQ(error_of(j), "config.json: process.cwd: \"tmp\" must be an absolute path");
  j = base_config();
  j["mounts"][0]["destination"] = "proc";
  EXPECT_EQ(error_of(j), "config.json: mounts[0].destination: \"proc\" must be an absolute path");
  j = base_config();
  j["linux"]["namespaces"][0]["path"] = "proc/1/ns/pid";
  EXPECT_EQ(error_of(j),
            "config.json: linux.namespaces[0].path: \"proc/1/ns/pid\" must be an absolute path");
  j = base_config();
  j["linux"]["maskedPaths"][0] = "proc/kcore";
  EXPECT_EQ(error_of(j),
            "config.json: linux.maskedPaths[0]: \"proc/kcore\" must be an absolute path");
}

TEST(ConfigTest, InvalidJsonNamesTheFile) {
  auto c = parse_config("{\"ociVersion\": ", "/bundle");
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().message().starts_with("config.json: invalid JSON at byte"))
      << c.error().message();
}

TEST(ConfigTest, UnknownNamesInEnumsAreRejected) {
  Json j = base_config();
  j["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS";
  EXPECT_EQ(error_of(j), "config.json: process.rlimits[0].type: unknown rlimit \"RLIMIT_BOGUS\"");
  j = base_config();
  j["linux"]["seccomp"]["defaultAction"] = "SCMP_ACT_MAYBE";
  EXPECT_EQ(error_of(j),
            "config.json: linux.seccomp.defaultAction: unknown seccomp action \"SCMP_ACT_MAYBE\"");
  j = base_config();
  j["process"]["capabilities"]["effective"][0] = "KILL";
  EXPECT_EQ(error_of(j),
            "config.json: process.capabilities.effective[0]: \"KILL\" is not a capability name "
            "(CAP_...)");
}

TEST(ConfigTest, NewerCapabilitiesAreIgnoredWithWarning) {
  Json j = base_config();
  j["process"]["capabilities"]["bounding"].push_back("CAP_FROM_THE_FUTURE");
  std::vector<std::string> warnings;
  auto c = parse_config(j.dump(), "/bundle", &warnings);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->process->capabilities->bounding.size(), 1u);
  EXPECT_EQ(warnings.size(), 1u);
}

TEST(ConfigTest, CrossSectionRulesAreEnforced) {
  Json j = base_config();
  j["linux"]["uidMappings"] = Json::parse(R"([{"containerID": 0, "hostID": 1000, "size": 1}])");
  EXPECT_EQ(error_of(j),
            "config.json: linux.uidMappings: requires a user namespace in linux.namespaces");
  j = base_config();
  j["linux"]["namespaces"].erase(2);
  EXPECT_EQ(error_of(j), "config.json: hostname: setting a hostname requires a new uts namespace");
  j = base_config();
  j["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY";
  EXPECT_EQ(error_of(j),
            "config.json: linux.seccomp.listenerPath: SCMP_ACT_NOTIFY needs a "
            "listenerPath");
  j = base_config();
  j["linux"]["timeOffsets"] = {{"boottime", {{"secs", 5}}}};
  EXPECT_EQ(error_of(j),
            "config.json: linux.timeOffsets: requires a new time namespace in linux.namespaces");
  j["linux"]["namespaces"].push_back({{"type", "time"}});
  j["linux"]["timeOffsets"] = {{"realtime", {{"secs", 5}}}};
  EXPECT_EQ(error_of(j),
            "config.json: linux.timeOffsets.realtime: only the monotonic and boottime clocks can "
            "be offset");
  j["linux"]["timeOffsets"] = {{"boottime", {{"secs", 5}, {"nanosecs", 2000000000}}}};
  EXPECT_EQ(error_of(j),
            "config.json: linux.timeOffsets.boottime.nanosecs: must be below 1000000000");
}

TEST(ConfigTest, UnsupportedVersionIsRejected) {
  Json j = base_config();
  j["ociVersion"] = "2.0.0";
  EXPECT_EQ(error_of(j), "config.json: ociVersion: unsupported version \"2.0.0\" (need 1.x)");
}

TEST(ConfigTest, LoadConfigRejectsMissingRootfs) {
  auto dir =
      std::filesystem::temp_directory_path() / ("vireo-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    FILE* f = fopen((dir / "config.json").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::string text = base_config().dump();
    fwrite(text.data(), 1, text.size(), f);
    fclose(f);
  }
  auto c = load_config(dir);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message(), fmt::format("config.json: root.path: rootfs directory {}/rootfs "
                                             "does not exist",
                                             dir.string()));
  std::filesystem::create_directory(dir / "rootfs");
  EXPECT_TRUE(load_config(dir));
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, MissingConfigFileIsReported) {
  auto c = load_config("/nonexistent-bundle-dir");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("/nonexistent-bundle-dir/config.json"), std::string::npos)
      << c.error().message();
}

}  // namespace
}  // namespace vireo::container
