// vireo-registry against real clients: skopeo pushes an OCI layout built by umoci and pulls it
// back (same manifest digest), inspects it and lists its tags, copies between repositories
// (cross-repository mount), and does all that over TLS with basic authentication.
#include <crypt.h>
#include <gtest/gtest.h>

#include "base/file.h"
#include "base/json.h"
#include "registry/test_client.h"
#include "registry_process.h"

namespace vireo::registry::testing {
namespace {

class RegistryPeersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_programs({"skopeo", "umoci"})) return;
    work_ = new fs::path(make_temp_dir("vireo-registry-peers"));
    layout_ = *work_ / "layout";
    setup_error_ = make_umoci_layout(layout_, *work_);
  }
  static void TearDownTestSuite() {
    if (work_) fs::remove_all(*work_);
    delete work_;
    work_ = nullptr;
  }
  void SetUp() override {
    if (!have_programs({"skopeo", "umoci"})) GTEST_SKIP() << "skopeo/umoci missing (scripts/setup)";
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    root_ = make_temp_dir("vireo-registry-root");
  }
  void TearDown() override { fs::remove_all(root_); }

  size_t blobs_on_disk() {
    size_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(root_ / "blobs")) n += e.is_regular_file();
    return n;
  }

  static inline fs::path* work_ = nullptr;
  static inline fs::path layout_;
  static inline std::string setup_error_;
  fs::path root_;
};

TEST_F(RegistryPeersTest, SkopeoPushPullKeepsManifestDigest) {
  RegistryProcess reg(root_);
  ASSERT_TRUE(reg.ready());
  std::string ref = "docker://" + reg.host() + "/test/img:t";
  auto push = skopeo({"copy", "--dest-tls-verify=false", "oci:" + layout_.string() + ":t", ref});
  ASSERT_TRUE(push.ok()) << push.err;
  fs::path back = root_.parent_path() / (root_.filename().string() + "-pulled");
  auto pull = skopeo({"copy", "--src-tls-verify=false", ref, "oci:" + back.string() + ":t"});
  std::string pulled = layout_digest(back);
  fs::remove_all(back);
  ASSERT_TRUE(pull.ok()) << pull.err;
  EXPECT_EQ(pulled, layout_digest(layout_));
  EXPECT_EQ(reg.stop(), 0);
}

TEST_F(RegistryPeersTest, SkopeoInspectAndListTags) {
  RegistryProcess reg(root_);
  ASSERT_TRUE(reg.ready());
  std::string repo = "docker://" + reg.host() + "/a/b/c";
  std::string src = "oci:" + layout_.string() + ":t";
  ASSERT_TRUE(skopeo({"copy", "--dest-tls-verify=false", src, repo + ":v1"}).ok());
  ASSERT_TRUE(skopeo({"copy", "--dest-tls-verify=false", src, repo + ":v2"}).ok());
  auto inspect = skopeo({"inspect", "--tls-verify=false", repo + ":v1"});
  ASSERT_TRUE(inspect.ok()) << inspect.err;
  auto j = *parse_json(inspect.out);
  EXPECT_EQ(j["Digest"], layout_digest(layout_));
  EXPECT_EQ(j["Layers"].size(), 2u);
  EXPECT_EQ(j["RepoTags"], Json::array({"v1", "v2"}));
  auto tags = skopeo({"list-tags", "--tls-verify=false", repo});
  ASSERT_TRUE(tags.ok()) << tags.err;
  EXPECT_EQ((*parse_json(tags.out))["Tags"], Json::array({"v1", "v2"}));
}

TEST_F(RegistryPeersTest, SkopeoCopyBetweenRepositoriesSharesBlobs) {
  RegistryProcess reg(root_);
  ASSERT_TRUE(reg.ready());
  std::string base = "docker://" + reg.host();
  ASSERT_TRUE(skopeo({"copy", "--dest-tls-verify=false", "oci:" + layout_.string() + ":t",
                      base + "/one/img:t"})
                  .ok());
  size_t blobs = blobs_on_disk();
  auto copy = skopeo({"copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                      base + "/one/img:t", base + "/two/img:t"});
  ASSERT_TRUE(copy.ok()) << copy.err;
  EXPECT_EQ(blobs_on_disk(), blobs);
  auto inspect = skopeo({"inspect", "--tls-verify=false", base + "/two/img:t"});
  EXPECT_EQ((*parse_json(inspect.out))["Digest"], layout_digest(layout_));
}

TEST_F(RegistryPeersTest, SkopeoOverTlsWithBasicAuth) {
  if (!have_programs({"openssl"})) GTEST_SKIP() << "openssl missing";
  fs::path cert = root_ / "cert.pem", key = root_ / "key.pem", htpasswd = root_ / "htpasswd";
  auto gen = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=127.0.0.1", "-keyout", key.string(), "-out", cert.string()});
  ASSERT_TRUE(gen.ok()) << gen.err;
  crypt_data data{};
  char salt[64];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 5, nullptr, 0, salt, sizeof salt), nullptr);
  ASSERT_TRUE(write_file_atomic(
      htpasswd, std::string("alice:") + crypt_rn("secret", salt, &data, sizeof data) + "\n"));
  RegistryProcess reg(root_ / "data", {"--tls-cert", cert.string(), "--tls-key", key.string(),
                                       "--htpasswd", htpasswd.string()});
  ASSERT_TRUE(reg.ready());
  std::string ref = "docker://" + reg.host() + "/secure/img:t";
  std::string src = "oci:" + layout_.string() + ":t";
  auto denied =
      skopeo({"copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", src, ref});
  EXPECT_FALSE(denied.ok());
  auto push = skopeo({"copy", "--dest-tls-verify=false", "--dest-creds", "alice:secret", src, ref});
  ASSERT_TRUE(push.ok()) << push.err;
  auto inspect = skopeo({"inspect", "--tls-verify=false", "--creds", "alice:secret", ref});
  ASSERT_TRUE(inspect.ok()) << inspect.err;
  EXPECT_EQ((*parse_json(inspect.out))["Digest"], layout_digest(layout_));
}

// podman (its own storage under the test's temp dir, vfs driver) pushes an image to the registry
// and pulls it back: the same image ID (config digest).
TEST_F(RegistryPeersTest, PodmanPushPull) {
  if (!have_programs({"podman"})) GTEST_SKIP() << "podman missing";
  RegistryProcess reg(root_ / "data");
  ASSERT_TRUE(reg.ready());
  std::vector<std::string> podman = {
      "podman", "--cgroup-manager=cgroupfs", "--storage-driver", "vfs",
      "--root", (root_ / "proot").string(),  "--runroot",        (root_ / "prun").string()};
  auto cmd = [&](std::vector<std::string> args) {
    args.insert(args.begin(), podman.begin(), podman.end());
    return run(args);
  };
  auto local = cmd({"pull", "-q", "oci:" + layout_.string() + ":t"});
  ASSERT_TRUE(local.ok()) << local.err;
  std::string id = local.out.substr(0, 64);
  std::string ref = reg.host() + "/pod/img:t";
  auto push = cmd({"push", "-q", "--tls-verify=false", id, "docker://" + ref});
  ASSERT_TRUE(push.ok()) << push.err;
  ASSERT_TRUE(cmd({"rmi", "-a", "-f"}).ok());
  auto pull = cmd({"pull", "-q", "--tls-verify=false", ref});
  ASSERT_TRUE(pull.ok()) << pull.err;
  EXPECT_EQ(pull.out.substr(0, 64), id);
  (void)cmd({"rmi", "-a", "-f"});
}

// Garbage, oversized headers and abandoned bodies: each gets an answer or a closed connection,
// and the server keeps serving.
TEST(RegistryHostileInputTest, ServerSurvivesBrokenRequests) {
  fs::path root = make_temp_dir("vireo-registry-hostile");
  {
    RegistryProcess reg(root);
    ASSERT_TRUE(reg.ready());
    TestClient client(reg.port());
    client.send_and_close("\x16\x03\x01 garbage\r\n\r\n");
    client.send_and_close("GET /v2/ HTTP/1.1\r\nHost: x\r\nX: " + std::string(200000, 'a'));
    client.send_and_close(
        "POST /v2/a/blobs/uploads/?digest=sha256:00 HTTP/1.1\r\n"
        "Content-Length: 99999999\r\n\r\nabc");
    client.send_and_close(
        "PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\n"
        "Transfer-Encoding: chunked\r\n\r\nzz\r\n");
    auto bad = client.request("GET", "/v2/a/b/../../etc/tags/list");
    EXPECT_EQ(bad.error_code(), "NAME_INVALID");
    auto big = client.request("GET", "/v2/" + std::string(70000, 'a') + "/tags/list");
    EXPECT_EQ(big.status, 431);
    EXPECT_EQ(client.request("GET", "/v2/").status, 200);
    EXPECT_TRUE(reg.alive());
    EXPECT_EQ(reg.stop(), 0);
  }
  EXPECT_TRUE(fs::is_empty(root / "uploads"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace vireo::registry::testing
