#include "image/blob_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <fstream>

#include "image/test_util.h"

namespace vireo::image {
namespace {

using testing::TempDir;

const char kHelloSha256[] =
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

TEST(DigestTest, ParsesValidDigests) {
  auto d = Digest::parse(kHelloSha256);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->str(), kHelloSha256);
  EXPECT_EQ(*d, digest_of("hello"));
  auto d512 = digest_of("hello", DigestAlgorithm::kSha512);
  EXPECT_EQ(d512.hex.size(), 128u);
  EXPECT_EQ(*Digest::parse(d512.str()), d512);
}

TEST(DigestTest, RejectsHostileAndMalformedDigests) {
  for (const char* bad :
       {"sha256:../../x", "sha256:", "sha256", "", "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",
        "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98/4"}) {
    auto d = Digest::parse(bad);
    EXPECT_FALSE(d) << bad;
    if (!d) {
      EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(BlobStoreTest, PutStoresUnderDigestAndDedupes) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  auto a = store->put("hello");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->digest.str(), kHelloSha256);
  EXPECT_EQ(a->size, 5u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "blobs/sha256" / a->digest.hex));
  auto b = store->put("hello", a->digest);
  ASSERT_TRUE(b);
  EXPECT_EQ(store->list()->size(), 1u);
  EXPECT_EQ(*store->read(a->digest), "hello");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() / "blobs/sha256"),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(BlobStoreTest, Sha512BlobsAreStoredAndVerified) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  auto d = digest_of("data", DigestAlgorithm::kSha512);
  auto r = store->put("data", d);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "blobs/sha512" / d.hex));
  EXPECT_TRUE(store->verify(d));
}

TEST(BlobStoreTest, MismatchLeavesNothing) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  auto r = store->put("not hello", *Digest::parse(kHelloSha256));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("digest mismatch"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() / "blobs/sha256"));
}

TEST(BlobStoreTest, CorruptBlobFailsVerifyAndReaderAtEof) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  auto info = *store->put("hello");
  auto path = store->path_of(info.digest);
  std::filesystem::permissions(path, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::ofstream(path) << "jello";
  auto v = store->verify(info.digest);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message().find("corrupt"), std::string::npos);
  auto reader = *store->open(info.digest);
  char buf[16];
  EXPECT_EQ(*reader.read(buf, sizeof buf), 5u);
  EXPECT_FALSE(reader.read(buf, sizeof buf));
  EXPECT_FALSE(store->read(info.digest));
}

TEST(BlobStoreTest, RemoveReportsSizeAndMissingIsNotFound) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  auto info = *store->put("hello");
  EXPECT_EQ(*store->remove(info.digest), 5u);
  EXPECT_EQ(*store->remove(info.digest), 0u);
  auto r = store->read(info.digest);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
}

TEST(BlobStoreTest, PutFileStreamsLargeContent) {
  TempDir dir;
  auto store = *BlobStore::create(dir.path());
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = char(i >> 12);
  std::ofstream(dir.path() / "big") << big;
  auto r = store->put_file(dir.path() / "big", digest_of(big));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->size, big.size());
  EXPECT_TRUE(store->verify(r->digest));
}

}  // namespace
}  // namespace vireo::image
