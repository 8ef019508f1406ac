#include "registry/body_decoder.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

namespace vireo::registry {
namespace {

// A Stream over one end of a socket pair; the other end got `wire` and was closed.
struct Wire {
  explicit Wire(const std::string& wire) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    EXPECT_EQ(::write(sv[1], wire.data(), wire.size()), ssize_t(wire.size()));
    ::close(sv[1]);
    stream = std::make_unique<Stream>(Fd(sv[0]), nullptr, std::chrono::seconds(5));
  }
  std::unique_ptr<Stream> stream;
};

// Reads the whole body in small pieces; the error code when it fails.
std::string read_body(BodyDecoder& d, size_t piece = 3) {
  std::string out;
  std::vector<char> buf(piece);
  for (;;) {
    auto n = d.read(buf.data(), buf.size());
    if (!n) return "error:" + std::string(code_name(n.error().code()));
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

TEST(BodyDecoderTest, ContentLengthStartsWithBytesReadAhead) {
  Wire w("lo world, and the next request");
  BodyDecoder d(*w.stream, "hel", uint64_t(11), false);
  EXPECT_EQ(read_body(d, 4), "hello world");
  EXPECT_TRUE(d.done());
}

TEST(BodyDecoderTest, ChunkedWithExtensionsTrailersAndPipelinedRequest) {
  Wire w("abc\r\n2\r\nde\r\n0\r\nX-Trailer: y\r\n\r\nGET /next HTTP/1.1\r\n");
  BodyDecoder d(*w.stream, "3;ext=1\r\n", std::nullopt, true);
  EXPECT_EQ(read_body(d, 64), "abcde");
  EXPECT_TRUE(d.done());
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(d.take_leftover(), "GET /next HTTP/1.1\r\n");
}

TEST(BodyDecoderTest, ChunkedAcrossSmallReads) {
  Wire w("A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n");
  BodyDecoder d(*w.stream, "", std::nullopt, true);
  EXPECT_EQ(read_body(d, 1), "0123456789x");
}

TEST(BodyDecoderTest, MalformedOrTruncatedChunksFail) {
  for (const std::string& wire :
       std::vector<std::string>{"zz\r\nabc", "3\r\nabcX\r\n", "5\r\nab", std::string(5000, '1')}) {
    Wire w(wire);
    BodyDecoder d(*w.stream, "", std::nullopt, true);
    EXPECT_EQ(read_body(d), "error:BLOB_UPLOAD_INVALID") << wire;
    EXPECT_TRUE(d.failed());
  }
  Wire w("short");
  BodyDecoder d(*w.stream, "", uint64_t(100), false);
  EXPECT_EQ(read_body(d), "error:BLOB_UPLOAD_INVALID");
}

}  // namespace
}  // namespace vireo::registry
