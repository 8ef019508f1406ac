#include "daemon/vm_cloudinit.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "base/subprocess.h"

namespace vireo::daemon {
namespace {

namespace fs = std::filesystem;

// A real ed25519 public key (ssh-keygen -t ed25519), and an RSA-typed text whose blob says
// ed25519.
constexpr const char* kKey =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOn0sQ/fwqNzJ3aSHV2ZHuvoJFEjqmWV4tRcIOrhV/96 "
    "tester@vireo";
constexpr const char* kMismatchedKey =
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOn0sQ/fwqNzJ3aSHV2ZHuvoJFEjqmWV4tRcIOrhV/96";

TEST(CloudInitTest, AcceptsAndKeepsGivenFields) {
  auto ok = validate_cloud_init(
      Json{{"hostname", "web-1"}, {"ssh_authorized_keys", {kKey}}, {"user_data", "#!/bin/sh\n"}});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ((*ok)["hostname"], "web-1");
  EXPECT_EQ((*ok)["ssh_authorized_keys"][0], kKey);
  auto empty = validate_cloud_init(Json::object());
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, Json::object());
}

TEST(CloudInitTest, RefusesBadInputWithOneLine) {
  auto message = [](const Json& j) {
    auto r = validate_cloud_init(j);
    return r ? std::string("accepted") : r.error().message();
  };
  for (const char* bad : {"-web", "web_1", "a.b", "", "x y", "web\n"})
    EXPECT_NE(message(Json{{"hostname", bad}}), "accepted") << bad;
  EXPECT_NE(message(Json{{"hostname", std::string(64, 'a')}}), "accepted");
  EXPECT_EQ(message(Json{{"hostname", std::string(63, 'a')}}), "accepted");
  EXPECT_EQ(message(Json{{"ssh_authorized_keys", {"not a key"}}}),
            "cloud_init.ssh_authorized_keys[0] is not an OpenSSH public key (TYPE BASE64 "
            "[COMMENT], as in id_ed25519.pub)");
  EXPECT_NE(message(Json{{"ssh_authorized_keys", {kMismatchedKey}}}), "accepted");
  EXPECT_NE(message(Json{{"ssh_authorized_keys", {std::string(kKey) + "\nssh-rsa x"}}}),
            "accepted");
  EXPECT_NE(message(Json{{"ssh_authorized_keys", {"ssh-ed25519 !!!!"}}}), "accepted");
  EXPECT_NE(message(Json{{"ssh_authorized_keys", kKey}}), "accepted");
  EXPECT_EQ(message(Json{{"user_data", std::string(65537, 'x')}}),
            "cloud_init.user_data is 65537 bytes, more than the 64 KiB allowed");
  EXPECT_EQ(message(Json{{"user_data", std::string(65536, 'x')}}), "accepted");
  EXPECT_EQ(message(Json{{"users", "x"}}),
            "cloud_init: unknown field 'users' (it has hostname, ssh_authorized_keys, user_data)");
  EXPECT_NE(message(Json("x")), "accepted");
}

TEST(CloudInitTest, QuotesYamlScalarsSafely) {
  EXPECT_EQ(yaml_quote("web"), "\"web\"");
  EXPECT_EQ(yaml_quote("a \"b\" \\ c"), "\"a \\\"b\\\" \\\\ c\"");
  EXPECT_EQ(yaml_quote("x: y # z\nw"), "\"x: y # z\\x0aw\"");
  EXPECT_EQ(yaml_quote("\t\x7f"), "\"\\x09\\x7f\"");
  EXPECT_EQ(yaml_quote("a\u2028b\u2029c\u0085d"), "\"a\\Lb\\Pc\\Nd\"");
  EXPECT_EQ(yaml_quote("héllo"), "\"héllo\"");
}

TEST(CloudInitTest, GeneratesCloudConfigWithoutUserData) {
  auto seed =
      cloud_init_seed(Json{{"hostname", "web-1"}, {"ssh_authorized_keys", {kKey}}}, "1234-uuid");
  EXPECT_EQ(seed.meta_data, fmt::format("instance-id: \"1234-uuid\"\nlocal-hostname: "
                                        "\"web-1\"\npublic-keys:\n  - \"{}\"\n",
                                        kKey));
  EXPECT_EQ(seed.user_data, fmt::format("#cloud-config\nhostname: \"web-1\"\n"
                                        "ssh_authorized_keys:\n  - \"{}\"\n",
                                        kKey));
  auto bare = cloud_init_seed(Json::object(), "u");
  EXPECT_EQ(bare.meta_data, "instance-id: \"u\"\n");
  EXPECT_EQ(bare.user_data, "#cloud-config\n");
}

TEST(CloudInitTest, UserDataWinsAndKeysStayInMetaData) {
  const std::string user_data = "#!/bin/sh\necho \"hi\" > /tmp/x\n";
  auto seed = cloud_init_seed(
      Json{{"hostname", "h"}, {"ssh_authorized_keys", {kKey}}, {"user_data", user_data}}, "u");
  EXPECT_EQ(seed.user_data, user_data);
  EXPECT_NE(seed.meta_data.find("local-hostname: \"h\""), std::string::npos);
  EXPECT_NE(seed.meta_data.find(kKey), std::string::npos);
}

TEST(CloudInitTest, WritesReadOnlyFatImageLabelledCidata) {
  if (find_program("mcopy").empty()) GTEST_SKIP() << "mtools not installed";
  char tmpl[] = "/tmp/vireo-cloudinit-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path dir = fs::path(tmpl) / "vm";
  auto seed = cloud_init_seed(Json{{"hostname", "web-1"}}, "uuid-1");
  auto disk = write_cloud_init_seed(seed, dir);
  ASSERT_TRUE(disk) << disk.error().message();
  EXPECT_EQ(disk->path, (dir / "cloud-init.img").string());
  EXPECT_EQ(disk->access, compute::Access::kReadOnly);
  EXPECT_EQ(disk->format, compute::DiskFormat::kRaw);
  RunOptions env;
  env.extra_env = {"MTOOLS_SKIP_CHECK=1"};
  auto meta = run_process({"mtype", "-i", disk->path, "::meta-data"}, env);
  ASSERT_TRUE(meta && meta->ok());
  EXPECT_EQ(meta->out, seed.meta_data);
  auto user = run_process({"mtype", "-i", disk->path, "::user-data"}, env);
  ASSERT_TRUE(user && user->ok());
  EXPECT_EQ(user->out, seed.user_data);
  auto label = run_process({"blkid", "-o", "value", "-s", "LABEL", disk->path});
  ASSERT_TRUE(label && label->ok());
  EXPECT_EQ(label->out, "CIDATA\n");
  // A second start rewrites it in place.
  ASSERT_TRUE(write_cloud_init_seed(cloud_init_seed(Json::object(), "uuid-2"), dir));
  auto again = run_process({"mtype", "-i", disk->path, "::meta-data"}, env);
  ASSERT_TRUE(again && again->ok());
  EXPECT_EQ(again->out, "instance-id: \"uuid-2\"\n");
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace vireo::daemon
