#include "storage/nbd/server.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/file.h"
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
  ~Client() { SSL_free(ssl_); }
  bool connected() const { return connected_; }
  void send(std::span<const uint8_t> b) {
    if (ssl_) {  // may fail when the server refused the TLS session: the next read tells
      (void)SSL_write(ssl_, b.data(), int(b.size()));
      return;
    }
    ASSERT_EQ(::send(fd_.get(), b.data(), b.size(), MSG_NOSIGNAL), ssize_t(b.size()));
  }
  // Returns false if the server closed the connection first.
  bool recv(void* dst, size_t n) {
    if (!ssl_) return n == 0 || ::recv(fd_.get(), dst, n, MSG_WAITALL) == ssize_t(n);
    for (auto* p = static_cast<uint8_t*>(dst); n > 0;) {
      int got = SSL_read(ssl_, p, int(n));
      if (got <= 0) return false;
      p += got;
      n -= size_t(got);
    }
    return true;
  }
  // True once the server closed the connection (whatever it sent before, e.g. a TLS alert).
  bool closed_by_server() {
    char sink[4096];
    while (true) {
      ssize_t n = ::recv(fd_.get(), sink, sizeof sink, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
      if (n < 0) return false;  // the 10 s receive timeout
    }
  }
  // The client side of a TLS handshake on the connection (after the server's STARTTLS ACK).
  bool start_tls(SSL_CTX* ctx) {
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_.get());
    bool ok = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return ok;
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
  bool go(const std::string& name, bool structured = false, SSL_CTX* tls = nullptr) {
    if (!handshake()) return false;
    if (tls) {
      option(kOptStartTls, {});
      if (replies() != kRepAck || !start_tls(tls)) return false;
    }
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
  SSL* ssl_ = nullptr;
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

// Test credentials made with OpenSSL in the test: a CA, certificates it signs, PEM files.
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

struct Credentials {
  KeyPtr key{nullptr, EVP_PKEY_free};
  CertPtr cert{nullptr, X509_free};
};

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for cn signed by issuer (self-signed without one), written to DIR/NAME-cert.pem
// and DIR/NAME-key.pem.
Credentials make_credentials(const fs::path& dir, const std::string& name, const char* cn,
                             const Credentials* issuer) {
  static long serial = 1;
  Credentials c;
  c.key.reset(EVP_EC_gen("P-256"));
  c.cert.reset(X509_new());
  X509* x = c.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, c.key.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* signer = issuer ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(signer));
  add_extension(x, signer, NID_basic_constraints, issuer ? "CA:FALSE" : "critical,CA:TRUE");
  if (!issuer) add_extension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  X509_sign(x, issuer ? issuer->key.get() : c.key.get(), EVP_sha256());
  FILE* f = std::fopen((dir / (name + "-cert.pem")).c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen((dir / (name + "-key.pem")).c_str(), "w");
  PEM_write_PrivateKey(f, c.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  return c;
}

// A server with one export on a plain socket and on a TLS socket that requires a client
// certificate signed by the test CA.
class NbdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // the test client's OpenSSL writes with write()
    dir_ = fs::temp_directory_path() / ("vireo-nbd-tls-" + random_hex(6));
    fs::create_directories(dir_);
    ca_ = make_credentials(dir_, "ca", "Vireo test CA", nullptr);
    make_credentials(dir_, "server", "localhost", &ca_);
    make_credentials(dir_, "client", "client", &ca_);
    other_ca_ = make_credentials(dir_, "other-ca", "Other CA", nullptr);
    make_credentials(dir_, "stranger", "stranger", &other_ca_);
    ASSERT_TRUE(RawFile::create(dir_ / "disk.raw", 8 << 20));
    auto dev = RawFile::open(dir_ / "disk.raw", OpenMode::kReadWrite);
    ASSERT_TRUE(dev);
    auto server = NbdServer::create({{"rw", std::move(*dev), false, ""}});
    ASSERT_TRUE(server);
    server_ = std::move(*server);
    ASSERT_TRUE(server_->listen_unix(dir_ / "plain.sock"));
    auto r = server_->listen_unix(dir_ / "tls.sock", tls_config());
    ASSERT_TRUE(r) << r.error().message();
    thread_ = std::thread([this] { ASSERT_TRUE(server_->run()); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    fs::remove_all(dir_);
  }
  TlsConfig tls_config() const {
    return {dir_ / "server-cert.pem", dir_ / "server-key.pem", dir_ / "ca-cert.pem"};
  }
  // A client context trusting the test CA, presenting NAME-cert.pem if a name is given.
  CtxPtr client_context(const std::string& name) {
    CtxPtr ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
    EXPECT_EQ(SSL_CTX_load_verify_locations(ctx.get(), (dir_ / "ca-cert.pem").c_str(), nullptr), 1);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (!name.empty()) {
      EXPECT_EQ(SSL_CTX_use_certificate_file(ctx.get(), (dir_ / (name + "-cert.pem")).c_str(),
                                             SSL_FILETYPE_PEM),
                1);
      EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx.get(), (dir_ / (name + "-key.pem")).c_str(),
                                            SSL_FILETYPE_PEM),
                1);
    }
    return ctx;
  }
  // Proves the TLS listener serves: a client with a good certificate writes and reads back.
  void expect_tls_serving(size_t length = 512) {
    CtxPtr ctx = client_context("client");
    Client c(dir_ / "tls.sock");
    ASSERT_TRUE(c.go("rw", false, ctx.get()));
    std::vector<uint8_t> data(length), back(length);
    for (size_t i = 0; i < length; ++i) data[i] = uint8_t(i * 7 + 1);
    c.request(kCmdWrite, 8192, uint32_t(length));
    c.send(data);
    EXPECT_EQ(c.simple_reply(), 0);
    c.request(kCmdRead, 8192, uint32_t(length));
    EXPECT_EQ(c.simple_reply(back), 0);
    EXPECT_EQ(back, data);
  }
  std::string listen_error(const TlsConfig& tls) {
    auto server = NbdServer::create({});
    EXPECT_TRUE(server);
    auto r = (*server)->listen_tcp("127.0.0.1", 0, tls);
    EXPECT_FALSE(r);
    return r ? "" : r.error().message();
  }

  fs::path dir_;
  Credentials ca_, other_ca_;
  std::unique_ptr<NbdServer> server_;
  std::thread thread_;
};

TEST_F(NbdTlsTest, OptionsBeforeStartTlsAreRefusedWithTlsRequired) {
  Client c(dir_ / "tls.sock");
  ASSERT_TRUE(c.handshake());
  std::vector<uint8_t> go(4 + 2 + 2);
  store_be32(go.data(), 2);
  std::memcpy(go.data() + 4, "rw", 2);
  c.option(kOptGo, go);
  EXPECT_EQ(c.replies(), kRepErrTlsReqd);
  c.option(kOptList, {});
  EXPECT_EQ(c.replies(), kRepErrTlsReqd);
  c.option(kOptStructuredReply, {});
  EXPECT_EQ(c.replies(), kRepErrTlsReqd);
  uint8_t junk[1] = {1};
  c.option(kOptStartTls, junk);  // STARTTLS carries no data
  EXPECT_EQ(c.replies(), kRepErrInvalid);
  // EXPORT_NAME cannot be refused: the connection ends.
  c.option(kOptExportName, std::span<const uint8_t>(go.data() + 4, 2));
  EXPECT_TRUE(c.closed_by_server());
  expect_tls_serving();
}

TEST_F(NbdTlsTest, StartTlsThenTransmissionOverTls) {
  CtxPtr ctx = client_context("client");
  Client c(dir_ / "tls.sock");
  ASSERT_TRUE(c.handshake());
  c.option(kOptStartTls, {});
  ASSERT_EQ(c.replies(), kRepAck);
  ASSERT_TRUE(c.start_tls(ctx.get()));
  c.option(kOptStartTls, {});  // TLS is already on
  EXPECT_EQ(c.replies(), kRepErrInvalid);
  c.option(kOptList, {});
  std::vector<std::vector<uint8_t>> bodies;
  EXPECT_EQ(c.replies(&bodies), kRepAck);
  EXPECT_EQ(bodies.size(), 2u);
  expect_tls_serving(512);
  expect_tls_serving(3 << 20);  // larger than a TLS record and than the inline read limit
}

TEST_F(NbdTlsTest, GarbageAfterStartTlsEndsOnlyThatConnection) {
  Client bad(dir_ / "tls.sock");
  ASSERT_TRUE(bad.handshake());
  bad.option(kOptStartTls, {});
  ASSERT_EQ(bad.replies(), kRepAck);
  std::string garbage = "GET / HTTP/1.0\r\n\r\n" + std::string(2000, 'x');
  bad.send({reinterpret_cast<const uint8_t*>(garbage.data()), garbage.size()});
  EXPECT_TRUE(bad.closed_by_server());
  // Clear text pipelined behind STARTTLS (before the server's ACK) is refused as well.
  Client eager(dir_ / "tls.sock");
  ASSERT_TRUE(eager.handshake());
  std::vector<uint8_t> two(32);
  for (int i = 0; i < 2; ++i) {
    store_be64(&two[16 * i], kOptMagic);
    store_be32(&two[16 * i + 8], i == 0 ? kOptStartTls : kOptList);
  }
  eager.send(two);
  EXPECT_EQ(eager.replies(), kRepAck);
  EXPECT_TRUE(eager.closed_by_server());
  expect_tls_serving();
  Client plain(dir_ / "plain.sock");
  EXPECT_TRUE(plain.go("rw"));
}

TEST_F(NbdTlsTest, ClientWithoutTrustedCertificateIsRefused) {
  for (std::string name : {"", "stranger"}) {
    CtxPtr ctx = client_context(name);
    Client c(dir_ / "tls.sock");
    // With TLS 1.3 the client may finish its side before the server checks its certificate;
    // either way it gets no further.
    EXPECT_FALSE(c.go("rw", false, ctx.get())) << name;
  }
  expect_tls_serving();
}

TEST_F(NbdTlsTest, PlainListenerStillRefusesStartTls) {
  Client c(dir_ / "plain.sock");
  ASSERT_TRUE(c.handshake());
  c.option(kOptStartTls, {});
  EXPECT_EQ(c.replies(), kRepErrUnsup);
}

TEST_F(NbdTlsTest, BadCredentialFilesFailListenWithTheFileNamed) {
  std::string missing = (dir_ / "nope.pem").string();
  std::string e = listen_error({missing, dir_ / "server-key.pem", {}});
  EXPECT_NE(e.find("TLS certificate " + missing + ": No such file"), std::string::npos) << e;
  e = listen_error({dir_ / "server-cert.pem", missing, {}});
  EXPECT_NE(e.find("TLS key " + missing), std::string::npos) << e;
  e = listen_error({dir_ / "server-cert.pem", dir_ / "client-key.pem", {}});
  EXPECT_NE(e.find("does not match certificate"), std::string::npos) << e;
  ASSERT_TRUE(write_file_atomic(dir_ / "junk.pem", "not a certificate\n"));
  e = listen_error({dir_ / "junk.pem", dir_ / "server-key.pem", {}});
  EXPECT_NE(e.find("TLS certificate " + (dir_ / "junk.pem").string()), std::string::npos) << e;
  e = listen_error({dir_ / "server-cert.pem", dir_ / "server-key.pem", dir_ / "junk.pem"});
  EXPECT_NE(e.find("TLS CA " + (dir_ / "junk.pem").string()), std::string::npos) << e;
  e = listen_error({dir_ / "server-cert.pem", {}, {}});
  EXPECT_NE(e.find("both a certificate and a key"), std::string::npos) << e;
  fs::permissions(dir_ / "server-key.pem", fs::perms::none);
  if (::geteuid() != 0) {  // root reads anything
    e = listen_error(tls_config());
    EXPECT_NE(e.find("Permission denied"), std::string::npos) << e;
  }
}

TEST_F(NbdTlsTest, BadPskFilesFailListenWithTheLineNamed) {
  std::string psk = (dir_ / "keys.psk").string();
  auto error_for = [&](const std::string& content) {
    EXPECT_TRUE(write_file_atomic(psk, content));
    return listen_error({.psk_file = psk});
  };
  std::string e = error_for("alice:00ff\nbob\n");
  EXPECT_NE(e.find("TLS PSK file " + psk + " line 2: not USERNAME:HEXKEY"), std::string::npos) << e;
  e = error_for("alice:0g\n");
  EXPECT_NE(e.find("line 1: the key is not hexadecimal"), std::string::npos) << e;
  EXPECT_EQ(e.find("0g"), std::string::npos) << "a key in a message: " << e;
  e = error_for("alice:abc\n");
  EXPECT_NE(e.find("line 1"), std::string::npos) << e;
  e = error_for("\n");
  EXPECT_NE(e.find("no keys"), std::string::npos) << e;
  e = listen_error({.psk_file = dir_ / "missing.psk"});
  EXPECT_NE(e.find("missing.psk"), std::string::npos) << e;
  ASSERT_TRUE(write_file_atomic(psk, "alice:00ff\r\n\nbob:" + std::string(64, 'A') + "\n"));
  auto server = NbdServer::create({});
  ASSERT_TRUE(server);
  auto ok = (*server)->listen_tcp("127.0.0.1", 0, {.psk_file = psk});
  EXPECT_TRUE(ok) << ok.error().message();
  // A CA without a certificate is still an error, PSK or not.
  e = listen_error({.ca_file = dir_ / "ca-cert.pem", .psk_file = psk});
  EXPECT_NE(e.find("both a certificate and a key"), std::string::npos) << e;
}

TEST(NbdListenAddressTest, ParsesHostAndPort) {
  auto a = parse_host_port("127.0.0.1:10809");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first, "127.0.0.1");
  EXPECT_EQ(a->second, 10809);
  a = parse_host_port("[::1]:0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first, "::1");
  EXPECT_FALSE(parse_host_port("localhost"));
  EXPECT_FALSE(parse_host_port("h:65536"));
  EXPECT_FALSE(parse_host_port("h:1x"));
  EXPECT_FALSE(parse_host_port("h:"));
}

}  // namespace
}  // namespace vireo::storage::nbd
