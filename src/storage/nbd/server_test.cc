#include "storage/nbd/server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "base/ids.h"
#include "storage/io.h"
#include "storage/nbd/protocol.h"
#include "storage/raw_file.h"

namespace vireo::storage::nbd {
namespace {

namespace fs = std::filesystem;

// A minimal blocking NBD client speaking raw bytes, so tests can also send garbage.
class Client {
 public:
  explicit Client(const fs::path& socket) {
    fd_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, socket.c_str());
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{10, 0};  // a broken server fails the test instead of hanging it
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  bool connected() const { return connected_; }
  void send(std::span<const uint8_t> b) {
    ASSERT_EQ(::send(fd_.get(), b.data(), b.size(), MSG_NOSIGNAL), ssize_t(b.size()));
  }
  // Returns false if the server closed the connection first.
  bool recv(void* dst, size_t n) {
    return n == 0 || ::recv(fd_.get(), dst, n, MSG_WAITALL) == ssize_t(n);
  }
  void option(uint32_t opt, std::span<const uint8_t> data) {
    std::vector<uint8_t> b(16);
    store_be64(&b[0], kOptMagic);
    store_be32(&b[8], opt);
    store_be32(&b[12], uint32_t(data.size()));
    b.insert(b.end(), data.begin(), data.end());
    send(b);
  }
  // Reads option replies until ACK or an error; returns the last reply type.
  uint32_t replies(std::vector<std::vector<uint8_t>>* bodies = nullptr) {
    while (true) {
      uint8_t h[20];
      if (!recv(h, 20)) return 0;
      uint32_t type = load_be32(h + 12);
      std::vector<uint8_t> body(load_be32(h + 16));
      if (!recv(body.data(), body.size())) return 0;
      if (bodies) bodies->push_back(body);
      if (type != kRepServer && type != kRepInfo && type != kRepMetaContext) return type;
    }
  }
  bool handshake() {
    uint8_t hello[18];
    if (!recv(hello, 18) || load_be64(hello) != kInitMagic) return false;
    uint8_t flags[4];
    store_be32(flags, kFlagFixedNewstyle | kFlagNoZeroes);
    send(flags);
    return true;
  }
  bool go(const std::string& name, bool structured = false) {
    if (!handshake()) return false;
    if (structured) {
      option(kOptStructuredReply, {});
      if (replies() != kRepAck) return false;
    }
    std::vector<uint8_t> d(4 + name.size() + 2);
    store_be32(d.data(), uint32_t(name.size()));
    std::memcpy(d.data() + 4, name.data(), name.size());
    option(kOptGo, d);
    return replies() == kRepAck;
  }
  void request(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0,
               uint32_t magic = kRequestMagic) {
    uint8_t r[28];
    store_be32(r, magic);
    store_be16(r + 4, flags);
    store_be16(r + 6, type);
    store_be64(r + 8, 42);
    store_be64(r + 16, offset);
    store_be32(r + 24, length);
    send(r);
  }
  // Reads a simple reply; returns its error or -1 if the connection closed.
  int64_t simple_reply(std::span<uint8_t> data = {}) {
    uint8_t h[16];
    if (!recv(h, 16) || load_be32(h) != kSimpleReplyMagic) return -1;
    uint32_t err = load_be32(h + 4);
    if (err == 0 && !data.empty() && !recv(data.data(), data.size())) return -1;
    return err;
  }

 private:
  Fd fd_;
  bool connected_ = false;
};

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-nbd-" + random_hex(6));
    fs::create_directories(dir_);
    ASSERT_TRUE(RawFile::create(dir_ / "disk.raw", 1 << 20));
    std::vector<ExportConfig> exports;
    for (bool ro : {false, true}) {
      auto dev = RawFile::open(dir_ / "disk.raw", ro ? OpenMode::kReadOnly : OpenMode::kReadWrite);
      ASSERT_TRUE(dev);
      exports.push_back({ro ? "ro" : "rw", std::move(*dev), ro, ""});
    }
    auto server = NbdServer::create(std::move(exports));
    ASSERT_TRUE(server);
    server_ = std::move(*server);
    ASSERT_TRUE(server_->listen_unix(dir_ / "s.sock"));
    thread_ = std::thread([this] { ASSERT_TRUE(server_->run()); });
  }
  void TearDown() override {
    server_->stop();
    thread_.join();
    server_.reset();
    fs::remove_all(dir_);
  }
  // Proves the server still serves: a fresh client writes and reads back.
  void expect_serving() {
    Client c(dir_ / "s.sock");
    ASSERT_TRUE(c.go("rw"));
    std::vector<uint8_t> data(512, 0x5a), back(512);
    c.request(kCmdWrite, 4096, 512);
    c.send(data);
    EXPECT_EQ(c.simple_reply(), 0);
    c.request(kCmdRead, 4096, 512);
    EXPECT_EQ(c.simple_reply(back), 0);
    EXPECT_EQ(back, data);
  }

  fs::path dir_;
  std::unique_ptr<NbdServer> server_;
  std::thread thread_;
};

TEST_F(NbdServerTest, WriteThenReadRoundTrips) {
  expect_serving();
}

TEST_F(NbdServerTest, ListsExports) {
  Client c(dir_ / "s.sock");
  ASSERT_TRUE(c.handshake());
  c.option(kOptList, {});
  std::vector<std::vector<uint8_t>> bodies;
  EXPECT_EQ(c.replies(&bodies), kRepAck);
  EXPECT_EQ(bodies.size(), 3u);  // two exports and the ACK
}

TEST_F(NbdServerTest, UnknownExportAndBadOptionsAreRefused) {
  Client c(dir_ / "s.sock");
  ASSERT_TRUE(c.handshake());
  std::vector<uint8_t> d(4 + 4 + 2);
  store_be32(d.data(), 4);
  std::memcpy(d.data() + 4, "nope", 4);
  c.option(kOptGo, d);
  EXPECT_EQ(c.replies(), kRepErrUnknown);
  uint8_t garbage[3] = {1, 2, 3};
  c.option(kOptGo, garbage);
  EXPECT_EQ(c.replies(), kRepErrInvalid);
  c.option(kOptSetMetaContext, garbage);
  EXPECT_EQ(c.replies(), kRepErrInvalid);
  c.option(999, {});
  EXPECT_EQ(c.replies(), kRepErrUnsup);
  expect_serving();
}

TEST_F(NbdServerTest, OutOfRangeAndReadOnlyRequestsFail) {
  Client c(dir_ / "s.sock");
  ASSERT_TRUE(c.go("ro"));
  c.request(kCmdRead, (1 << 20) - 10, 100);
  EXPECT_EQ(c.simple_reply(), kEinval);
  c.request(kCmdRead, UINT64_MAX - 5, 100);
  EXPECT_EQ(c.simple_reply(), kEinval);
  std::vector<uint8_t> data(100);
  c.request(kCmdWrite, 0, 100);
  c.send(data);
  EXPECT_EQ(c.simple_reply(), kEperm);
  c.request(kCmdTrim, 0, 100);
  EXPECT_EQ(c.simple_reply(), kEperm);
  c.request(77, 0, 0);
  EXPECT_EQ(c.simple_reply(), kEinval);
  c.request(kCmdBlockStatus, 0, 100);  // base:allocation was not negotiated
  EXPECT_EQ(c.simple_reply(), kEinval);
}

TEST_F(NbdServerTest, GarbageEndsOnlyThatConnection) {
  Client bad(dir_ / "s.sock");
  ASSERT_TRUE(bad.go("rw"));
  bad.request(kCmdRead, 0, 512, 0, 0xdeadbeef);
  EXPECT_EQ(bad.simple_reply(), -1);
  expect_serving();
}

TEST_F(NbdServerTest, OversizedWriteEndsConnection) {
  Client c(dir_ / "s.sock");
  ASSERT_TRUE(c.go("rw"));
  c.request(kCmdWrite, 0, 0xffffffff);
  EXPECT_EQ(c.simple_reply(), -1);
  expect_serving();
}

TEST_F(NbdServerTest, ClientDroppingMidRequestDoesNotDisturbOthers) {
  {
    Client c(dir_ / "s.sock");
    ASSERT_TRUE(c.go("rw"));
    c.request(kCmdWrite, 0, 4096);
    std::vector<uint8_t> part(100, 1);
    c.send(part);
  }
  {
    Client c(dir_ / "s.sock");
    ASSERT_TRUE(c.handshake());
    uint8_t half[6] = {0x49, 0x48, 0x41, 0x56, 0, 0};
    c.send(half);
  }
  expect_serving();
}

TEST_F(NbdServerTest, StructuredReadAndBlockStatus) {
  Client c(dir_ / "s.sock");
  ASSERT_TRUE(c.handshake());
  c.option(kOptStructuredReply, {});
  ASSERT_EQ(c.replies(), kRepAck);
  std::vector<uint8_t> d(4 + 2 + 4 + 4 + 15);
  store_be32(d.data(), 2);
  std::memcpy(d.data() + 4, "rw", 2);
  store_be32(d.data() + 6, 1);
  store_be32(d.data() + 10, 15);
  std::memcpy(d.data() + 14, "base:allocation", 15);
  c.option(kOptSetMetaContext, d);
  std::vector<std::vector<uint8_t>> bodies;
  ASSERT_EQ(c.replies(&bodies), kRepAck);
  ASSERT_EQ(bodies.size(), 2u);
  std::vector<uint8_t> go(4 + 2 + 2);
  store_be32(go.data(), 2);
  std::memcpy(go.data() + 4, "rw", 2);
  c.option(kOptGo, go);
  ASSERT_EQ(c.replies(), kRepAck);
  c.request(kCmdBlockStatus, 0, 1 << 20);
  uint8_t h[20];
  ASSERT_TRUE(c.recv(h, 20));
  EXPECT_EQ(load_be32(h), kStructuredReplyMagic);
  EXPECT_EQ(load_be16(h + 6), kReplyBlockStatus);
  std::vector<uint8_t> body(load_be32(h + 16));
  ASSERT_TRUE(c.recv(body.data(), body.size()));
  EXPECT_EQ(load_be32(body.data()), kBaseAllocationId);
  c.request(kCmdRead, 0, 4096);
  ASSERT_TRUE(c.recv(h, 20));
  EXPECT_EQ(load_be16(h + 6), kReplyOffsetData);
  EXPECT_EQ(load_be32(h + 16), 8u + 4096);
}

TEST(NbdProtocolTest, ParsersRejectMalformedOptions) {
  uint8_t bad_len[] = {0xff, 0xff, 0xff, 0xff, 0, 0};
  EXPECT_FALSE(parse_go(bad_len));
  uint8_t count_mismatch[] = {0, 0, 0, 0, 0, 2, 0, 1};
  EXPECT_FALSE(parse_go(count_mismatch));
  uint8_t ok[] = {0, 0, 0, 1, 'a', 0, 1, 0, 3};
  auto g = parse_go(ok);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->name, "a");
  uint8_t many_queries[] = {0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff};
  EXPECT_FALSE(parse_meta_context(many_queries));
}

TEST(NbdProtocolTest, ValidateRequestChecksFlagsAndRange) {
  Session s{.export_size = 4096};
  EXPECT_EQ(validate_request({.type = kCmdRead, .offset = 0, .length = 4096}, s), 0u);
  EXPECT_EQ(validate_request({.type = kCmdRead, .offset = 1, .length = 4096}, s), kEinval);
  EXPECT_EQ(validate_request({.flags = 0x100, .type = kCmdRead}, s), kEinval);
  EXPECT_EQ(validate_request({.flags = kCmdFlagFastZero, .type = kCmdWrite}, s), kEinval);
  EXPECT_EQ(validate_request({.type = kCmdWrite, .offset = 4000, .length = 200}, s), kEnospc);
}

}  // namespace
}  // namespace vireo::storage::nbd
