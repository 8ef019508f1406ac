// The image store's registry client (vireo image pull/push, src/image/remote) against real
// registries: vireo-registry (plain, TLS + basic auth) fed and read by skopeo, and Debian's
// docker-registry (distribution 2.8). Faults: a connection cut in the middle of a blob (resumed
// with a Range request), a corrupted transfer and a corrupted partial file (refused by digest,
// nothing stored), unknown tags, nothing listening, an index without the wanted platform.
#include <crypt.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/file.h"
#include "base/json.h"
#include "faulty_proxy.h"
#include "image/image_store.h"
#include "image/remote/transfer.h"
#include "registry/test_client.h"
#include "registry_process.h"
#include "token_server.h"

namespace vireo::registry::testing {
namespace {

namespace remote = image::remote;

bool port_open(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Debian's docker-registry (distribution 2.8, filesystem storage) as a child process on a free
// loopback port; extra_yaml is appended to its configuration (an auth section).
class DockerRegistry {
 public:
  DockerRegistry(const fs::path& dir, const std::string& extra_yaml = "") : port_(unused_port()) {
    fs::create_directories(dir / "data");
    std::string config =
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        "    rootdirectory: " +
        (dir / "data").string() +
        "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n" +
        extra_yaml;
    if (!write_file_atomic(dir / "config.yml", config)) return;
    std::string log = (dir / "log").string();
    std::string conf = (dir / "config.yml").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execlp("docker-registry", "docker-registry", "serve", conf.c_str(), nullptr);
      ::_exit(127);
    }
    // The registry announces nothing on its own: wait (bounded) until it accepts connections.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!(ready_ = port_open(port_)) && std::chrono::steady_clock::now() < deadline &&
           ::waitpid(pid_, nullptr, WNOHANG) == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ~DockerRegistry() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  bool ready() const { return ready_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

class ImageRemoteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_programs({"skopeo", "umoci"})) return;
    work_ = new fs::path(make_temp_dir("vireo-image-remote"));
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
    root_ = make_temp_dir("vireo-image-remote-case");
    auto s = image::ImageStore::create(root_ / "store");
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }

  void skopeo_push(const std::string& host, const std::string& repo_tag,
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"copy", "--dest-tls-verify=false"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("oci:" + layout_.string() + ":t");
    args.push_back("docker://" + host + "/" + repo_tag);
    auto r = skopeo(args);
    ASSERT_TRUE(r.ok()) << r.err;
  }
  // The unpacked layers of an image hold a file.
  bool image_has_file(const image::ImageInfo& info, const std::string& path) {
    for (const auto& d : info.config.diff_ids)
      if (fs::exists(store_->layers().path_of(d) / path)) return true;
    return false;
  }
  size_t partial_files() {
    size_t n = 0;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(root_ / "store" / "tmp" / "pull", ec))
      n += e.is_regular_file();
    return n;
  }

  static inline fs::path* work_ = nullptr;
  static inline fs::path layout_;
  static inline std::string setup_error_;
  fs::path root_;
  std::unique_ptr<image::ImageStore> store_;
};

TEST_F(ImageRemoteTest, PullsWhatSkopeoPushedAndUnpacksIt) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "test/img:t");
  std::vector<remote::TransferProgress> reports;
  remote::PullOptions o;
  o.progress = [&](const remote::TransferProgress& p) { reports.push_back(p); };
  auto info = remote::pull(*store_, reg.host() + "/test/img:t", o);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->manifest_digest.str(), layout_digest(layout_));
  EXPECT_EQ(info->tags, std::vector<std::string>{reg.host() + "/test/img:t"});
  EXPECT_TRUE(image_has_file(*info, "hello.txt"));
  EXPECT_TRUE(image_has_file(*info, "bin/busybox"));
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().stage, "committing");
  EXPECT_EQ(reports.back().bytes_done, reports.back().bytes_total);
  EXPECT_EQ(partial_files(), 0u);
  // Again: everything is there, nothing moves.
  auto again = remote::pull(*store_, reg.host() + "/test/img:t", {});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->manifest_digest, info->manifest_digest);
}

// Docker v2 schema 2 manifests (skopeo --format v2s2) and zstd-compressed layers pull too.
TEST_F(ImageRemoteTest, PullsDockerSchema2AndZstdLayers) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "docker/img:t", {"--format", "v2s2"});
  auto docker = remote::pull(*store_, reg.host() + "/docker/img:t", {});
  ASSERT_TRUE(docker) << docker.error().message();
  EXPECT_EQ(docker->manifest.media_type, "application/vnd.docker.distribution.manifest.v2+json");
  EXPECT_TRUE(image_has_file(*docker, "hello.txt"));
  // Recompressed into a layout first: pushing straight would reuse the gzip blobs.
  fs::path zstd_layout = root_ / "zstd";
  auto recompress =
      skopeo({"copy", "--dest-compress", "--dest-compress-format", "zstd",
              "oci:" + layout_.string() + ":t", "oci:" + zstd_layout.string() + ":t"});
  ASSERT_TRUE(recompress.ok()) << recompress.err;
  auto push = skopeo({"copy", "--dest-tls-verify=false", "oci:" + zstd_layout.string() + ":t",
                      "docker://" + reg.host() + "/zstd/img:t"});
  ASSERT_TRUE(push.ok()) << push.err;
  auto zstd = remote::pull(*store_, reg.host() + "/zstd/img:t", {});
  ASSERT_TRUE(zstd) << zstd.error().message();
  ASSERT_FALSE(zstd->manifest.layers.empty());
  EXPECT_EQ(zstd->manifest.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_TRUE(image_has_file(*zstd, "bin/busybox"));
}

TEST_F(ImageRemoteTest, PushedImageIsReadBySkopeo) {
  auto imported = store_->import_oci_layout(layout_, "local/img:t");
  ASSERT_TRUE(imported) << imported.error().message();
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  std::string dest = reg.host() + "/pushed/img:v1";
  auto pushed = remote::push(*store_, "local/img:t", dest, {});
  ASSERT_TRUE(pushed) << pushed.error().message();
  EXPECT_EQ(pushed->blobs_sent, 3);  // two layers and the config
  EXPECT_EQ(pushed->blobs_present, 0);
  auto inspect = skopeo({"inspect", "--tls-verify=false", "docker://" + dest});
  ASSERT_TRUE(inspect.ok()) << inspect.err;
  EXPECT_EQ((*parse_json(inspect.out))["Digest"], imported->manifest_digest.str());
  fs::path back = root_ / "back";
  auto copy =
      skopeo({"copy", "--src-tls-verify=false", "docker://" + dest, "oci:" + back.string() + ":t"});
  ASSERT_TRUE(copy.ok()) << copy.err;
  EXPECT_EQ(layout_digest(back), imported->manifest_digest.str());
  auto again = remote::push(*store_, "local/img:t", dest, {});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->blobs_sent, 0);
  EXPECT_EQ(again->blobs_present, 3);
  auto digest_dest =
      remote::push(*store_, "local/img:t", dest + "@sha256:" + std::string(64, 'a'), {});
  ASSERT_FALSE(digest_dest);
  EXPECT_EQ(digest_dest.error().code(), ErrorCode::kInvalidArgument);
  auto unknown = remote::push(*store_, "local/none:t", dest, {});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kNotFound);
}

TEST_F(ImageRemoteTest, TlsWithBasicAuthentication) {
  if (!have_programs({"openssl"})) GTEST_SKIP() << "openssl missing";
  fs::path cert = root_ / "cert.pem", key = root_ / "key.pem", htpasswd = root_ / "htpasswd";
  auto gen = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                  "-keyout", key.string(), "-out", cert.string()});
  ASSERT_TRUE(gen.ok()) << gen.err;
  crypt_data data{};
  char salt[64];
  ASSERT_NE(crypt_gensalt_rn("$2b$", 5, nullptr, 0, salt, sizeof salt), nullptr);
  ASSERT_TRUE(write_file_atomic(
      htpasswd, std::string("alice:") + crypt_rn("secret", salt, &data, sizeof data) + "\n"));
  RegistryProcess reg(root_ / "reg", {"--tls-cert", cert.string(), "--tls-key", key.string(),
                                      "--htpasswd", htpasswd.string()});
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "secure/img:t", {"--dest-creds", "alice:secret"});
  std::string ref = reg.host() + "/secure/img:t";

  auto anonymous = remote::pull(*store_, ref, {});
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().code(), ErrorCode::kUnauthorized);
  EXPECT_NE(anonymous.error().message().find("--creds"), std::string::npos)
      << anonymous.error().message();
  remote::PullOptions wrong;
  wrong.session.credentials = remote::Credentials{"alice", "wrong"};
  auto refused = remote::pull(*store_, ref, wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnauthorized);
  EXPECT_NE(refused.error().message().find("refused"), std::string::npos)
      << refused.error().message();

  // Verified TLS: the test's CA is trusted explicitly (127.0.0.1 is otherwise "insecure").
  remote::PullOptions good;
  good.session.credentials = remote::Credentials{"alice", "secret"};
  good.session.tls.ca_file = cert.string();
  auto info = remote::pull(*store_, ref, good);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->manifest_digest.str(), layout_digest(layout_));
  auto pushed = remote::push(*store_, ref, reg.host() + "/secure/copy:t", good);
  ASSERT_TRUE(pushed) << pushed.error().message();
  EXPECT_GE(pushed->blobs_present + pushed->blobs_sent, 3);
}

TEST_F(ImageRemoteTest, ResumesABlobAfterTheConnectionDrops) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "test/img:t");
  FaultyProxy proxy(reg.port(), FaultyProxy::Fault::kCut, 300 << 10);
  ASSERT_NE(proxy.port(), 0);
  std::string ref = "127.0.0.1:" + std::to_string(proxy.port()) + "/test/img:t";
  remote::PullOptions o;
  o.parallel = 1;
  auto info = remote::pull(*store_, ref, o);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_GE(proxy.faults(), 1);
  EXPECT_EQ(info->manifest_digest.str(), layout_digest(layout_));
  EXPECT_TRUE(image_has_file(*info, "bin/busybox"));
}

TEST_F(ImageRemoteTest, CorruptTransfersAreRefusedAndNothingIsStored) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "test/img:t");
  {
    FaultyProxy proxy(reg.port(), FaultyProxy::Fault::kCorrupt, 300 << 10);
    remote::PullOptions o;
    o.parallel = 1;
    auto bad =
        remote::pull(*store_, "127.0.0.1:" + std::to_string(proxy.port()) + "/test/img:t", o);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("does not match its digest"), std::string::npos)
        << bad.error().message();
    EXPECT_EQ(proxy.faults(), 1);
  }
  auto listed = store_->list();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  EXPECT_EQ(partial_files(), 0u);

  // A partial file from an earlier pull whose bytes were corrupted on disk: the resumed
  // download is checked as a whole, so it is refused too, and the next pull starts afresh.
  auto idx = parse_json(*read_file(layout_ / "index.json"));
  auto mdig = Digest::parse((*idx)["manifests"][0]["digest"].get<std::string>());
  auto manifest = image::parse_manifest(*read_file(layout_ / "blobs" / "sha256" / mdig->hex));
  ASSERT_TRUE(manifest);
  const auto& big = manifest->layers[0].size > manifest->layers[1].size ? manifest->layers[0]
                                                                        : manifest->layers[1];
  std::string content = *read_file(layout_ / "blobs" / "sha256" / big.digest.hex);
  std::string prefix = content.substr(0, content.size() / 2);
  prefix[100] = static_cast<char>(prefix[100] ^ 1);
  fs::create_directories(root_ / "store" / "tmp" / "pull");
  ASSERT_TRUE(
      write_file_atomic(root_ / "store" / "tmp" / "pull" / ("sha256-" + big.digest.hex), prefix));
  auto resumed_bad = remote::pull(*store_, reg.host() + "/test/img:t", {});
  ASSERT_FALSE(resumed_bad);
  EXPECT_NE(resumed_bad.error().message().find("does not match its digest"), std::string::npos);
  EXPECT_FALSE(store_->blobs().has(big.digest));
  // A correct partial file is resumed from where it stopped.
  ASSERT_TRUE(write_file_atomic(root_ / "store" / "tmp" / "pull" / ("sha256-" + big.digest.hex),
                                content.substr(0, content.size() / 2)));
  auto ok = remote::pull(*store_, reg.host() + "/test/img:t", {});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(store_->blobs().has(big.digest));
}

TEST_F(ImageRemoteTest, PicksTheLinuxAmd64ManifestOfAnIndex) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  skopeo_push(reg.host(), "multi/img:t");
  std::string manifest_digest = layout_digest(layout_);
  auto mdig = Digest::parse(manifest_digest);
  std::string manifest = *read_file(layout_ / "blobs" / "sha256" / mdig->hex);
  auto index_with = [&](std::vector<std::pair<std::string, std::string>> platforms) {
    Json m = Json::array();
    for (auto& [os, arch] : platforms)
      m.push_back({{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", manifest_digest},
                   {"size", manifest.size()},
                   {"platform", {{"os", os}, {"architecture", arch}}}});
    return Json{{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests", m}}
        .dump();
  };
  auto put = [&](const std::string& tag, const std::string& body) {
    return TestClient(reg.port())
        .request("PUT", "/v2/multi/img/manifests/" + tag, body,
                 {{"Content-Type", "application/vnd.oci.image.index.v1+json"}});
  };
  ASSERT_EQ(put("idx", index_with({{"linux", "arm64"}, {"linux", "amd64"}})).status, 201);
  ASSERT_EQ(put("armonly", index_with({{"linux", "arm64"}})).status, 201);
  auto info = remote::pull(*store_, reg.host() + "/multi/img:idx", {});
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->manifest_digest.str(), manifest_digest);
  auto none = remote::pull(*store_, reg.host() + "/multi/img:armonly", {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(none.error().message().find("arm64"), std::string::npos) << none.error().message();
}

TEST_F(ImageRemoteTest, ClearErrorsForMissingImagesAndServers) {
  RegistryProcess reg(root_ / "reg");
  ASSERT_TRUE(reg.ready());
  auto no_repo = remote::pull(*store_, reg.host() + "/no/such:t", {});
  ASSERT_FALSE(no_repo);
  EXPECT_EQ(no_repo.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(no_repo.error().message().find("NAME_UNKNOWN"), std::string::npos)
      << no_repo.error().message();
  skopeo_push(reg.host(), "test/img:t");
  auto no_tag = remote::pull(*store_, reg.host() + "/test/img:other", {});
  ASSERT_FALSE(no_tag);
  EXPECT_EQ(no_tag.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(no_tag.error().message().find("MANIFEST_UNKNOWN"), std::string::npos)
      << no_tag.error().message();
  // A port nobody listens on.
  uint16_t closed = unused_port();
  ASSERT_NE(closed, 0);
  auto down = remote::pull(*store_, "127.0.0.1:" + std::to_string(closed) + "/x:t", {});
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code(), ErrorCode::kUnavailable);
  EXPECT_FALSE(remote::pull(*store_, "127.0.0.1:5000/Bad:t", {}));
  auto listed = store_->list();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
}

TEST_F(ImageRemoteTest, PushesToAndPullsFromDockerRegistry) {
  if (!have_programs({"docker-registry"}))
    GTEST_SKIP() << "docker-registry missing (scripts/setup)";
  DockerRegistry reg(root_ / "docker-registry");
  ASSERT_TRUE(reg.ready());
  auto imported = store_->import_oci_layout(layout_, "local/img:t");
  ASSERT_TRUE(imported) << imported.error().message();
  std::string dest = reg.host() + "/dr/img:v1";
  auto pushed = remote::push(*store_, "local/img:t", dest, {});
  ASSERT_TRUE(pushed) << pushed.error().message();
  EXPECT_EQ(pushed->blobs_sent, 3);
  auto inspect = skopeo({"inspect", "--tls-verify=false", "docker://" + dest});
  ASSERT_TRUE(inspect.ok()) << inspect.err;
  EXPECT_EQ((*parse_json(inspect.out))["Digest"], imported->manifest_digest.str());
  auto other = image::ImageStore::create(root_ / "store2");
  ASSERT_TRUE(other);
  auto pulled = remote::pull(**other, dest, {});
  ASSERT_TRUE(pulled) << pulled.error().message();
  EXPECT_EQ(pulled->manifest_digest, imported->manifest_digest);
  for (const auto& d : pulled->config.diff_ids) EXPECT_TRUE((*other)->layers().has(d)) << d.str();
}

// Bearer tokens: docker-registry with token authentication sends a WWW-Authenticate challenge
// naming the token server; the client fetches a token for its scope with the credentials.
TEST_F(ImageRemoteTest, BearerTokenFlowWithDockerRegistry) {
  if (!have_programs({"docker-registry", "openssl"}))
    GTEST_SKIP() << "docker-registry/openssl missing (scripts/setup)";
  fs::path cert = root_ / "token.crt", key = root_ / "token.key";
  auto gen = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=vireo-test-token", "-keyout", key.string(), "-out", cert.string()});
  ASSERT_TRUE(gen.ok()) << gen.err;
  TokenServer tokens(key, cert, "vireo-test-issuer", "vireo-test", "alice", "secret");
  ASSERT_NE(tokens.port(), 0);
  DockerRegistry reg(
      root_ / "docker-registry",
      "auth:\n  token:\n    realm: http://127.0.0.1:" + std::to_string(tokens.port()) +
          "/token\n    service: vireo-test\n    issuer: vireo-test-issuer\n"
          "    rootcertbundle: " +
          cert.string() + "\n");
  ASSERT_TRUE(reg.ready());
  auto imported = store_->import_oci_layout(layout_, "local/img:t");
  ASSERT_TRUE(imported) << imported.error().message();
  std::string dest = reg.host() + "/private/img:v1";

  auto anonymous = remote::push(*store_, "local/img:t", dest, {});
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().code(), ErrorCode::kUnauthorized);
  EXPECT_NE(anonymous.error().message().find("--creds"), std::string::npos)
      << anonymous.error().message();

  remote::TransferOptions o;
  o.session.credentials = remote::Credentials{"alice", "secret"};
  auto pushed = remote::push(*store_, "local/img:t", dest, o);
  ASSERT_TRUE(pushed) << pushed.error().message();
  EXPECT_GE(tokens.tokens_issued(), 1);
  auto other = image::ImageStore::create(root_ / "store2");
  ASSERT_TRUE(other);
  remote::PullOptions p;
  p.session.credentials = o.session.credentials;
  auto pulled = remote::pull(**other, dest, p);
  ASSERT_TRUE(pulled) << pulled.error().message();
  EXPECT_EQ(pulled->manifest_digest, imported->manifest_digest);
}

// vireo-registry's own token authentication (--token-*): the client's bearer flow and skopeo's
// against it; tokens signed by a key outside the bundle, and tokens that grant only pull, are
// refused for what they do not cover.
TEST_F(ImageRemoteTest, VireoRegistryTokenAuthentication) {
  if (!have_programs({"openssl"})) GTEST_SKIP() << "openssl missing";
  auto keypair = [&](const std::string& name) {
    fs::path cert = root_ / (name + ".crt"), key = root_ / (name + ".key");
    auto gen = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + name, "-keyout", key.string(), "-out", cert.string()});
    EXPECT_TRUE(gen.ok()) << gen.err;
    return std::pair{key, cert};
  };
  auto [key, cert] = keypair("issuer");
  auto [rogue_key, rogue_cert] = keypair("rogue");
  TokenServer tokens(key, cert, "vireo-issuer", "vireo-registry", "alice", "secret");
  TokenServer rogue(rogue_key, rogue_cert, "vireo-issuer", "vireo-registry", "alice", "secret");
  TokenServer readonly(key, cert, "vireo-issuer", "vireo-registry", "alice", "secret");
  readonly.grant_only("pull");
  auto start = [&](uint16_t token_port, const std::string& dir) {
    return std::make_unique<RegistryProcess>(
        root_ / dir,
        std::vector<std::string>{"--token-realm",
                                 "http://127.0.0.1:" + std::to_string(token_port) + "/token",
                                 "--token-service", "vireo-registry", "--token-issuer",
                                 "vireo-issuer", "--token-cert-bundle", cert.string()});
  };
  auto reg = start(tokens.port(), "reg");
  ASSERT_TRUE(reg->ready());
  auto imported = store_->import_oci_layout(layout_, "local/img:t");
  ASSERT_TRUE(imported) << imported.error().message();
  std::string dest = reg->host() + "/team/img:v1";

  auto anonymous = remote::push(*store_, "local/img:t", dest, {});
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().code(), ErrorCode::kUnauthorized) << anonymous.error().message();
  remote::TransferOptions alice;
  alice.session.credentials = remote::Credentials{"alice", "secret"};
  auto pushed = remote::push(*store_, "local/img:t", dest, alice);
  ASSERT_TRUE(pushed) << pushed.error().message();
  EXPECT_GE(tokens.tokens_issued(), 1);
  auto inspect =
      skopeo({"inspect", "--tls-verify=false", "--creds", "alice:secret", "docker://" + dest});
  ASSERT_TRUE(inspect.ok()) << inspect.err;
  EXPECT_EQ((*parse_json(inspect.out))["Digest"], imported->manifest_digest.str());
  skopeo_push(reg->host(), "team/skopeo:t", {"--dest-creds", "alice:secret"});

  // The same registry data behind a realm whose tokens the bundle does not vouch for.
  reg.reset();
  auto untrusted = start(rogue.port(), "reg");
  ASSERT_TRUE(untrusted->ready());
  remote::PullOptions p;
  p.session.credentials = alice.session.credentials;
  auto refused = remote::pull(*store_, untrusted->host() + "/team/img:v1", p);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnauthorized) << refused.error().message();
  untrusted.reset();

  // A read-only account: pulls, but cannot push.
  auto ro = start(readonly.port(), "reg");
  ASSERT_TRUE(ro->ready());
  auto pulled = remote::pull(*store_, ro->host() + "/team/img:v1", p);
  ASSERT_TRUE(pulled) << pulled.error().message();
  EXPECT_EQ(pulled->manifest_digest, imported->manifest_digest);
  auto denied = remote::push(*store_, "local/img:t", ro->host() + "/team/other:v1", alice);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code(), ErrorCode::kUnauthorized) << denied.error().message();
}

}  // namespace
}  // namespace vireo::registry::testing
