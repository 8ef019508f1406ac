// vireod over TCP+TLS: every request needs a trusted client certificate or a bearer token.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "base/strings.h"
#include "client/client.h"
#include "daemon_process.h"
#include "tls_fixture.h"

namespace vireo::testing {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_cert(daemon_.dir(), "server");
    make_cert(daemon_.dir(), "client");
    make_cert(daemon_.dir(), "stranger");
    auto trust = run_process({bin_dir() + "/vireod", "--root", daemon_.root().string(), "trust",
                              "add", (daemon_.dir() / "client.crt").string(), "--name", "ci"});
    ASSERT_TRUE(trust && trust->ok()) << (trust ? trust->err : "");
    port_ = free_port();
    remote_ = "127.0.0.1:" + std::to_string(port_);
    ASSERT_TRUE(daemon_.start(
        {"--listen", remote_, "--tls-cert", path("server.crt"), "--tls-key", path("server.key")}));
  }
  std::string path(const std::string& f) { return (daemon_.dir() / f).string(); }
  client::ConnectOptions remote(std::string cert = {}, std::string token = {}) {
    client::ConnectOptions o{.remote = remote_, .token = token, .server_ca = path("server.crt")};
    if (!cert.empty()) {
      o.client_cert = path(cert + ".crt");
      o.client_key = path(cert + ".key");
    }
    return o;
  }
  Result<api::ServerInfo> info(const client::ConnectOptions& o) {
    auto c = TRY(client::Client::connect(o));
    return c->info();
  }

  DaemonProcess daemon_;
  uint16_t port_ = 0;
  std::string remote_;
};

TEST_F(TlsTest, TrustedClientCertificateIsAccepted) {
  auto i = info(remote("client"));
  ASSERT_TRUE(i) << i.error().message();
  EXPECT_EQ(i->auth, "trusted");
}

TEST_F(TlsTest, RequestWithoutCredentialsIsRejected) {
  auto i = info(remote());
  ASSERT_FALSE(i);
  EXPECT_EQ(i.error().code(), ErrorCode::kUnauthorized);
  EXPECT_NE(i.error().message().find("vireod token create"), std::string::npos)
      << i.error().message();
}

TEST_F(TlsTest, UntrustedCertificateIsRejected) {
  auto i = info(remote("stranger"));
  ASSERT_FALSE(i);
  EXPECT_EQ(i.error().code(), ErrorCode::kUnauthorized);
}

TEST_F(TlsTest, BearerTokenWorksAndWrongTokenDoesNot) {
  auto made = run_process({bin_dir() + "/vireod", "--root", daemon_.root().string(), "token",
                           "create", "--name", "ci"});
  ASSERT_TRUE(made && made->ok()) << (made ? made->err : "");
  std::string token(trim(made->out));
  EXPECT_TRUE(token.starts_with("vireo_"));
  EXPECT_TRUE(info(remote({}, token)));
  EXPECT_EQ(info(remote({}, token + "x")).error().code(), ErrorCode::kUnauthorized);

  auto cli = run_process({bin_dir() + "/vireo", "--remote", remote_, "--token", token,
                          "--tls-server-cert", path("server.crt"), "info", "-f", "json"});
  ASSERT_TRUE(cli);
  EXPECT_EQ(cli->exit_code, 0) << cli->err;

  // The event stream is guarded the same way.
  auto c = client::Client::connect(remote({}, token + "x"));
  ASSERT_TRUE(c);
  auto events = (*c)->watch_events({}, [](const api::Event&) { return false; });
  ASSERT_FALSE(events);
  EXPECT_EQ(events.error().code(), ErrorCode::kUnauthorized);
}

TEST_F(TlsTest, WrongServerCertificateFailsTheHandshake) {
  auto o = remote("client");
  o.server_ca = path("stranger.crt");
  auto c = client::Client::connect(o);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("TLS handshake"), std::string::npos) << c.error().message();
}

}  // namespace
}  // namespace vireo::testing
