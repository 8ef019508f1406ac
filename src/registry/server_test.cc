// The registry API over real sockets: an in-process Server on 127.0.0.1 port 0 with a temp root,
// driven by a raw HTTP client (test_client.h).
#include <gtest/gtest.h>

#include <thread>

#include "base/ids.h"
#include "registry/server.h"
#include "registry/test_client.h"

namespace vireo::registry {
namespace {

using testing::HttpReply;
using testing::TestClient;

std::string sha(const std::string& s) {
  return digest_of(s).str();
}

class RegistryServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("vireo-registry-test-" + random_hex(6));
    store_ = std::move(*Store::create(root_));
    registry_ = std::make_unique<Registry>(*store_);
    server_ = std::move(*Server::create(*registry_, options()));
    thread_ = std::thread([this] { server_->run(); });
    client_ = std::make_unique<TestClient>(server_->port());
  }
  void TearDown() override {
    server_->stop();
    thread_.join();
    server_.reset();
    registry_.reset();
    store_.reset();  // after the committer thread is done
    fs::remove_all(root_);
  }
  virtual ServerOptions options() { return {}; }

  HttpReply req(const std::string& m, const std::string& t, const std::string& body = {},
                const std::map<std::string, std::string>& h = {}) {
    return client_->request(m, t, body, h);
  }
  // Pushes a blob monolithically (POST then PUT ?digest=) and returns its digest.
  std::string push_blob(const std::string& repo, const std::string& content) {
    auto post = req("POST", "/v2/" + repo + "/blobs/uploads/");
    EXPECT_EQ(post.status, 202);
    std::string d = sha(content);
    auto put = req("PUT", post.header("location") + "?digest=" + d, content);
    EXPECT_EQ(put.status, 201) << put.body;
    return d;
  }
  // An OCI image manifest with a config and the given layers (each pushed to repo).
  std::string make_manifest(const std::string& repo, const std::vector<std::string>& layers,
                            const std::string& extra = {}) {
    std::string config = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    std::string cd = push_blob(repo, config);
    std::string m =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)";
    m += R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" + cd +
         R"(","size":)" + std::to_string(config.size()) + R"(},"layers":[)";
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string ld = push_blob(repo, layers[i]);
      m += std::string(i ? "," : "") +
           R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":")" + ld +
           R"(","size":)" + std::to_string(layers[i].size()) + "}";
    }
    return m + "]" + extra + "}";
  }
  HttpReply put_manifest(const std::string& repo, const std::string& ref, const std::string& m,
                         const std::string& type = std::string(kOciManifest)) {
    return req("PUT", "/v2/" + repo + "/manifests/" + ref, m, {{"Content-Type", type}});
  }
  size_t blobs_on_disk() {
    size_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(root_ / "blobs")) n += e.is_regular_file();
    return n;
  }

  fs::path root_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::unique_ptr<TestClient> client_;
};

TEST_F(RegistryServerTest, BaseEndpointAnswersWithApiVersion) {
  auto r = req("GET", "/v2/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("docker-distribution-api-version"), "registry/2.0");
}

TEST_F(RegistryServerTest, MonolithicPushThenPullBlob) {
  std::string d = push_blob("a/b/c", "hello blob");
  auto get = req("GET", "/v2/a/b/c/blobs/" + d);
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, "hello blob");
  EXPECT_EQ(get.header("docker-content-digest"), d);
  auto head = req("HEAD", "/v2/a/b/c/blobs/" + d);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), "10");
  EXPECT_EQ(req("GET", "/v2/other/blobs/" + d).error_code(), "BLOB_UNKNOWN");
  auto range = req("GET", "/v2/a/b/c/blobs/" + d, {}, {{"Range", "bytes=6-"}});
  EXPECT_EQ(range.status, 206);
  EXPECT_EQ(range.body, "blob");
}

TEST_F(RegistryServerTest, SingleRequestPostStoresBlob) {
  std::string d = sha("one shot");
  auto r = req("POST", "/v2/repo/blobs/uploads/?digest=" + d, "one shot");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.header("location"), "/v2/repo/blobs/" + d);
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + d).body, "one shot");
}

TEST_F(RegistryServerTest, ChunkedUploadWithContentRange) {
  auto post = req("POST", "/v2/repo/blobs/uploads/");
  std::string loc = post.header("location");
  auto p1 = req("PATCH", loc, "abc", {{"Content-Range", "0-2"}});
  EXPECT_EQ(p1.status, 202);
  EXPECT_EQ(p1.header("range"), "0-2");
  auto bad = req("PATCH", loc, "xyz", {{"Content-Range", "5-7"}});
  EXPECT_EQ(bad.status, 416);
  EXPECT_EQ(bad.header("range"), "0-2");
  auto p2 = req("PATCH", loc, "def", {{"Content-Range", "3-5"}});
  EXPECT_EQ(p2.status, 202);
  auto status = req("GET", loc);
  EXPECT_EQ(status.status, 204);
  EXPECT_EQ(status.header("range"), "0-5");
  auto put = req("PUT", loc + "?digest=" + sha("abcdefgh"), "gh", {{"Content-Range", "6-7"}});
  EXPECT_EQ(put.status, 201) << put.body;
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + sha("abcdefgh")).body, "abcdefgh");
}

TEST_F(RegistryServerTest, StreamedPatchWithoutContentRange) {
  auto post = req("POST", "/v2/repo/blobs/uploads/");
  std::string loc = post.header("location");
  EXPECT_EQ(req("PATCH", loc, "stream-").status, 202);
  auto p = req("PATCH", loc, "2\r\ned\r\n0\r\n\r\n", {{"Transfer-Encoding", "chunked"}});
  EXPECT_EQ(p.status, 202);
  EXPECT_EQ(p.header("range"), "0-8");
  EXPECT_EQ(req("PUT", loc + "?digest=" + sha("stream-ed")).status, 201);
}

TEST_F(RegistryServerTest, CancelledUploadIsGone) {
  std::string loc = req("POST", "/v2/repo/blobs/uploads/").header("location");
  EXPECT_EQ(req("PATCH", loc, "data").status, 202);
  EXPECT_EQ(req("DELETE", loc).status, 204);
  EXPECT_EQ(req("GET", loc).error_code(), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(req("PATCH", loc, "x").status, 404);
  EXPECT_EQ(registry_->uploads().count(), 0u);
  EXPECT_TRUE(fs::is_empty(root_ / "uploads"));
}

TEST_F(RegistryServerTest, UploadOfAnotherRepositoryIsUnknown) {
  std::string loc = req("POST", "/v2/one/blobs/uploads/").header("location");
  std::string id = loc.substr(loc.rfind('/') + 1);
  EXPECT_EQ(req("GET", "/v2/two/blobs/uploads/" + id).error_code(), "BLOB_UPLOAD_UNKNOWN");
}

TEST_F(RegistryServerTest, DigestMismatchStoresNothing) {
  std::string loc = req("POST", "/v2/repo/blobs/uploads/").header("location");
  auto put = req("PUT", loc + "?digest=" + sha("other"), "content");
  EXPECT_EQ(put.status, 400);
  EXPECT_EQ(put.error_code(), "DIGEST_INVALID");
  EXPECT_EQ(blobs_on_disk(), 0u);
  EXPECT_EQ(req("HEAD", "/v2/repo/blobs/" + sha("content")).status, 404);
  auto post = req("POST", "/v2/repo/blobs/uploads/?digest=" + sha("other"), "content");
  EXPECT_EQ(post.error_code(), "DIGEST_INVALID");
  EXPECT_EQ(req("POST", "/v2/repo/blobs/uploads/?digest=sha256:zz", "x").error_code(),
            "DIGEST_INVALID");
  EXPECT_EQ(blobs_on_disk(), 0u);
  EXPECT_TRUE(fs::is_empty(root_ / "uploads"));
}

TEST_F(RegistryServerTest, Sha512Digests) {
  std::string d = digest_of("wide", Algorithm::kSha512).str();
  auto r = req("POST", "/v2/repo/blobs/uploads/?digest=" + d, "wide");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + d).body, "wide");  // served while pending too
  store_->flush();
  EXPECT_TRUE(fs::exists(root_ / "blobs" / "sha512" / d.substr(7)));
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + d).body, "wide");
}

TEST_F(RegistryServerTest, ManifestPushAndPullByTagAndDigest) {
  std::string m = make_manifest("lib/app", {"layer one", "layer two"});
  auto put = put_manifest("lib/app", "v1", m);
  ASSERT_EQ(put.status, 201) << put.body;
  std::string d = sha(m);
  EXPECT_EQ(put.header("docker-content-digest"), d);
  EXPECT_EQ(put.header("location"), "/v2/lib/app/manifests/" + d);
  for (const std::string ref : {"v1", d.c_str()}) {
    auto get = req("GET", "/v2/lib/app/manifests/" + ref);
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.body, m);
    EXPECT_EQ(get.header("content-type"), kOciManifest);
    EXPECT_EQ(get.header("docker-content-digest"), d);
    auto head = req("HEAD", "/v2/lib/app/manifests/" + ref);
    EXPECT_EQ(head.header("content-length"), std::to_string(m.size()));
  }
  EXPECT_EQ(put_manifest("lib/app", d, m).status, 201);
  EXPECT_EQ(put_manifest("lib/app", sha("x"), m).error_code(), "DIGEST_INVALID");
  EXPECT_EQ(req("GET", "/v2/lib/app/manifests/v2").error_code(), "MANIFEST_UNKNOWN");
  EXPECT_EQ(req("GET", "/v2/nope/manifests/v1").status, 404);
}

TEST_F(RegistryServerTest, ManifestReferencingMissingBlobIsRejected) {
  std::string m = make_manifest("repo", {"layer"});
  std::string missing = sha("not pushed");
  std::string bad = m;
  bad.replace(bad.find(sha("layer")), missing.size(), missing);
  auto r = put_manifest("repo", "t", bad);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
  EXPECT_EQ(req("GET", "/v2/repo/manifests/t").status, 404);
  std::string index = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)"
                      R"("manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                      R"("digest":")" +
                      sha(m) + R"(","size":)" + std::to_string(m.size()) + "}]}";
  EXPECT_EQ(put_manifest("repo", "i", index, std::string(kOciIndex)).error_code(),
            "MANIFEST_BLOB_UNKNOWN");
  EXPECT_EQ(put_manifest("repo", "t", m).status, 201);
  EXPECT_EQ(put_manifest("repo", "i", index, std::string(kOciIndex)).status, 201);
}

TEST_F(RegistryServerTest, MalformedManifestsAreInvalid) {
  for (
      const std::string body :
      {"{", "[]", R"({"schemaVersion":1})", R"({"schemaVersion":2,"layers":[]})",
       R"({"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:1","size":1},"layers":[]})",
       R"({"schemaVersion":2,"config":{"mediaType":"x","digest":"md5:aa","size":-1},"layers":[]})"}) {
    auto r = put_manifest("repo", "t", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(r.error_code(), "MANIFEST_INVALID") << body;
  }
  EXPECT_EQ(put_manifest("repo", "t", "{}", "text/plain").error_code(), "MANIFEST_INVALID");
}

TEST_F(RegistryServerTest, ManifestOver4MiBIs413) {
  std::string big(kMaxManifestSize + 1, ' ');
  auto r = put_manifest("repo", "t", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.error_code(), "SIZE_INVALID");
}

TEST_F(RegistryServerTest, InvalidNamesAndTags) {
  for (const std::string& t : std::vector<std::string>{
           "/v2/a/../b/tags/list", "/v2/../x/blobs/uploads/", "/v2/UPPER/tags/list",
           "/v2/a//b/tags/list", "/v2/a%2f..%2fb/tags/list", "/v2/-a/manifests/t",
           "/v2/" + std::string(256, 'a') + "/tags/list"}) {
    auto r = req(t.find("uploads") != std::string::npos ? "POST" : "GET", t);
    EXPECT_EQ(r.status, 400) << t;
    EXPECT_EQ(r.error_code(), "NAME_INVALID") << t;
  }
  EXPECT_EQ(req("GET", "/v2/a/manifests/-bad").error_code(), "TAG_INVALID");
  EXPECT_EQ(put_manifest("a", std::string(129, 't'), "{}").error_code(), "TAG_INVALID");
  EXPECT_EQ(req("GET", "/v2/a/blobs/sha256:abc").error_code(), "DIGEST_INVALID");
  EXPECT_EQ(req("GET", "/v3/").status, 404);
  EXPECT_EQ(req("POST", "/v2/a/tags/list").status, 405);
}

TEST_F(RegistryServerTest, TagsListPagination) {
  std::string m = make_manifest("repo", {"l"});
  for (const char* t : {"d", "a", "c", "b", "e"}) ASSERT_EQ(put_manifest("repo", t, m).status, 201);
  auto all = req("GET", "/v2/repo/tags/list");
  EXPECT_EQ(all.body, R"({"name":"repo","tags":["a","b","c","d","e"]})");
  EXPECT_EQ(all.header("link"), "");
  auto p1 = req("GET", "/v2/repo/tags/list?n=2");
  EXPECT_EQ(p1.body, R"({"name":"repo","tags":["a","b"]})");
  EXPECT_EQ(p1.header("link"), R"(</v2/repo/tags/list?n=2&last=b>; rel="next")");
  auto p2 = req("GET", "/v2/repo/tags/list?n=2&last=b");
  EXPECT_EQ(p2.body, R"({"name":"repo","tags":["c","d"]})");
  auto p3 = req("GET", "/v2/repo/tags/list?n=2&last=d");
  EXPECT_EQ(p3.body, R"({"name":"repo","tags":["e"]})");
  EXPECT_EQ(p3.header("link"), "");
  EXPECT_EQ(req("GET", "/v2/repo/tags/list?n=0").body, R"({"name":"repo","tags":[]})");
  EXPECT_EQ(req("GET", "/v2/repo/tags/list?n=x").error_code(), "PAGINATION_NUMBER_INVALID");
  EXPECT_EQ(req("GET", "/v2/none/tags/list").error_code(), "NAME_UNKNOWN");
  EXPECT_EQ(req("GET", "/v2/_catalog").body, R"({"repositories":["repo"]})");
}

TEST_F(RegistryServerTest, DeleteManifestTagAndBlob) {
  std::string m = make_manifest("repo", {"l"});
  ASSERT_EQ(put_manifest("repo", "t1", m).status, 201);
  ASSERT_EQ(put_manifest("repo", "t2", m).status, 201);
  EXPECT_EQ(req("DELETE", "/v2/repo/manifests/t1").status, 202);
  EXPECT_EQ(req("GET", "/v2/repo/manifests/t1").status, 404);
  EXPECT_EQ(req("GET", "/v2/repo/manifests/t2").status, 200);
  EXPECT_EQ(req("DELETE", "/v2/repo/manifests/" + sha(m)).status, 202);
  EXPECT_EQ(req("GET", "/v2/repo/manifests/t2").status, 404);
  EXPECT_EQ(req("DELETE", "/v2/repo/manifests/" + sha(m)).error_code(), "MANIFEST_UNKNOWN");
  EXPECT_EQ(req("DELETE", "/v2/repo/blobs/" + sha("l")).status, 202);
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + sha("l")).error_code(), "BLOB_UNKNOWN");
  EXPECT_EQ(req("DELETE", "/v2/repo/blobs/" + sha("l")).error_code(), "BLOB_UNKNOWN");
}

TEST_F(RegistryServerTest, CrossRepositoryMount) {
  std::string d = push_blob("src/repo", "shared layer");
  auto m = req("POST", "/v2/dst/blobs/uploads/?mount=" + d + "&from=src%2Frepo");
  EXPECT_EQ(m.status, 201);
  EXPECT_EQ(m.header("location"), "/v2/dst/blobs/" + d);
  EXPECT_EQ(req("GET", "/v2/dst/blobs/" + d).body, "shared layer");
  auto anon = req("POST", "/v2/anon/blobs/uploads/?mount=" + d);
  EXPECT_EQ(anon.status, 201);
  auto missing = req("POST", "/v2/dst2/blobs/uploads/?mount=" + sha("no") + "&from=src/repo");
  EXPECT_EQ(missing.status, 202);  // falls back to an upload session
  auto wrong_from = req("POST", "/v2/dst3/blobs/uploads/?mount=" + d + "&from=nothere");
  EXPECT_EQ(wrong_from.status, 202);
  store_->flush();
  EXPECT_EQ(blobs_on_disk(), 1u);
  EXPECT_EQ(req("GET", "/v2/dst/blobs/" + d).body, "shared layer");
}

TEST_F(RegistryServerTest, ReferrersListsManifestsWithSubject) {
  std::string m = make_manifest("repo", {"l"});
  ASSERT_EQ(put_manifest("repo", "t", m).status, 201);
  std::string subject = R"(,"artifactType":"application/x-sig","subject":{"mediaType":)"
                        R"("application/vnd.oci.image.manifest.v1+json","digest":")" +
                        sha(m) + R"(","size":)" + std::to_string(m.size()) + "}";
  std::string sig = make_manifest("repo", {"sig"}, subject);
  auto put = put_manifest("repo", sha(sig), sig);
  ASSERT_EQ(put.status, 201) << put.body;
  EXPECT_EQ(put.header("oci-subject"), sha(m));
  auto r = req("GET", "/v2/repo/referrers/" + sha(m));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), kOciIndex);
  auto j = *parse_json(r.body);
  ASSERT_EQ(j["manifests"].size(), 1u);
  EXPECT_EQ(j["manifests"][0]["digest"], sha(sig));
  EXPECT_EQ(j["manifests"][0]["artifactType"], "application/x-sig");
  auto filtered = req("GET", "/v2/repo/referrers/" + sha(m) + "?artifactType=application/other");
  EXPECT_EQ(filtered.header("oci-filters-applied"), "artifactType");
  EXPECT_EQ((*parse_json(filtered.body))["manifests"].size(), 0u);
}

TEST_F(RegistryServerTest, TruncatedUploadCommitsNothing) {
  std::string loc = req("POST", "/v2/repo/blobs/uploads/").header("location");
  EXPECT_EQ(req("PATCH", loc, "0123").status, 202);
  client_->send_and_close("PATCH " + loc +
                          " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
                          std::string(5000, 'x'));
  // The server notices the early end of the body and rolls the chunk back.
  HttpReply status;
  for (int i = 0; i < 200; ++i) {
    status = req("GET", loc);
    if (status.header("range") == "0-3") break;
  }
  EXPECT_EQ(status.header("range"), "0-3");
  client_->send_and_close("PUT " + loc + "?digest=" + sha("0123") +
                          " HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n45");
  EXPECT_EQ(req("PATCH", loc, "45").header("range"), "0-5");
  EXPECT_EQ(blobs_on_disk(), 0u);
}

TEST_F(RegistryServerTest, GarbageCollectionKeepsLinkedBlobs) {
  std::string keep = push_blob("repo", "keep");
  std::string drop = push_blob("repo", "drop");
  std::string loc = req("POST", "/v2/repo/blobs/uploads/").header("location");
  EXPECT_EQ(req("PATCH", loc, "in flight").status, 202);
  EXPECT_EQ(req("DELETE", "/v2/repo/blobs/" + drop).status, 202);
  auto stats = store_->collect_garbage();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->blobs_removed, 1u);
  EXPECT_EQ(req("GET", "/v2/repo/blobs/" + keep).body, "keep");
  EXPECT_EQ(req("PUT", loc + "?digest=" + sha("in flight")).status, 201);
}

TEST_F(RegistryServerTest, UploadsAreLimitedAndExpire) {
  UploadManager uploads(*store_, 2);
  ASSERT_TRUE(uploads.start("repo"));
  ASSERT_TRUE(uploads.start("repo"));
  auto third = uploads.start("repo");
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code(), Code::kTooManyRequests);
  EXPECT_EQ(uploads.expire(std::chrono::seconds(3600)), 0u);
  EXPECT_EQ(uploads.expire(std::chrono::seconds(-1)), 2u);
  EXPECT_EQ(uploads.count(), 0u);
  EXPECT_TRUE(fs::is_empty(root_ / "uploads"));
}

TEST_F(RegistryServerTest, StateSurvivesRestart) {
  std::string m = make_manifest("repo", {"l"});
  ASSERT_EQ(put_manifest("repo", "t", m).status, 201);
  auto store2 = Store::create(root_);
  ASSERT_TRUE(store2);
  auto ref = (*store2)->resolve_manifest("repo", "t");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->digest.str(), sha(m));
  EXPECT_TRUE((*store2)->has_blob("repo", *parse_digest(sha("l"))));
}

}  // namespace
}  // namespace vireo::registry
