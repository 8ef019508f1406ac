// NBD over TLS against real peers: vireo-nbd and vireo-storaged with X.509 credentials made by
// the openssl tool (a CA, a server certificate for localhost and 127.0.0.1, client
// certificates), served to nbdinfo and nbdcopy (libnbd, GnuTLS) over nbds:// and to qemu-io and
// qemu-img (tls-creds-x509). Plain clients, clients without a certificate and clients with a
// certificate from another CA are refused.
#include <gtest/gtest.h>

#include "base/file.h"
#include "peers.h"
#include "storage/storaged_client.h"

namespace vireo::storage {
namespace {

using namespace testing;

// Runs the openssl tool; fails the test with its output if it fails.
void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
}

// DIR/NAME-cert.pem and DIR/NAME-key.pem: a CA when issuer is empty, else a certificate signed
// by DIR/ISSUER-*.pem with the given extensions (the checks qemu makes on certificates want
// key usages and basic constraints).
void make_cert(const fs::path& dir, const std::string& name, const std::string& cn,
               const std::string& issuer, const std::string& extensions) {
  std::string key = (dir / (name + "-key.pem")).string();
  std::string cert = (dir / (name + "-cert.pem")).string();
  if (issuer.empty()) {
    openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
             "2", "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
             "keyUsage=critical,keyCertSign,cRLSign"});
    return;
  }
  std::string csr = (dir / (name + ".csr")).string(), ext = (dir / (name + ".ext")).string();
  ASSERT_TRUE(write_file_atomic(ext, extensions));
  openssl(
      {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn});
  static int serial = 100;
  openssl({"x509", "-req", "-in", csr, "-CA", (dir / (issuer + "-cert.pem")).string(), "-CAkey",
           (dir / (issuer + "-key.pem")).string(), "-set_serial", std::to_string(++serial), "-days",
           "2", "-out", cert, "-extfile", ext});
}

// A client certificate directory the way libnbd and qemu look for files in it.
void make_client_dir(const fs::path& dir, const std::string& client, const fs::path& pki) {
  fs::create_directories(dir);
  fs::copy_file(pki / "ca-cert.pem", dir / "ca-cert.pem");
  if (client.empty()) return;
  fs::copy_file(pki / (client + "-cert.pem"), dir / "client-cert.pem");
  fs::copy_file(pki / (client + "-key.pem"), dir / "client-key.pem");
}

class NbdTlsTest : public ::testing::Test {
 protected:
  // The credentials are made once (RSA key generation is the slow part).
  static void SetUpTestSuite() {
    if (!have_programs({"openssl", "qemu-img", "qemu-io", "nbdinfo", "nbdcopy"})) return;
    pki_ = make_temp_dir("vireo-nbd-tls-pki");
    const std::string leaf =
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n";
    make_cert(pki_, "ca", "Vireo test CA", "", "");
    make_cert(pki_, "server", "localhost", "ca",
              leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n");
    make_cert(pki_, "client", "vireo test client", "ca", leaf + "extendedKeyUsage=clientAuth\n");
    make_cert(pki_, "other-ca", "Another CA", "", "");
    make_cert(pki_, "stranger", "stranger", "other-ca", leaf + "extendedKeyUsage=clientAuth\n");
    make_client_dir(pki_ / "client", "client", pki_);
    make_client_dir(pki_ / "nocert", "", pki_);
    make_client_dir(pki_ / "stranger", "stranger", pki_);
  }
  static void TearDownTestSuite() {
    if (!pki_.empty()) fs::remove_all(pki_);
    pki_.clear();
  }
  void SetUp() override {
    if (pki_.empty()) GTEST_SKIP() << "openssl / qemu-utils / libnbd-bin not installed";
    ASSERT_TRUE(fs::exists(pki_ / "stranger" / "client-key.pem")) << "credentials not made";
    dir_ = make_temp_dir("vireo-nbd-tls");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string pki(const std::string& name) { return (pki_ / name).string(); }
  // vireo-nbd's TLS options; with the CA, clients need a certificate.
  static std::vector<std::string> tls_args(bool mutual) {
    std::vector<std::string> a = {"--tls-cert", pki("server-cert.pem"), "--tls-key",
                                  pki("server-key.pem")};
    if (mutual) a.insert(a.end(), {"--tls-ca", pki("ca-cert.pem")});
    return a;
  }
  // nbds://HOST:PORT/NAME for libnbd, with the client credentials of DIR (under the PKI).
  static std::string nbds(const std::string& hostport, const std::string& name,
                          const std::string& client = "client") {
    return "nbds://" + hostport + "/" + name + "?tls-certificates=" + pki(client);
  }
  // qemu's arguments for export name on 127.0.0.1:port over TLS.
  static std::vector<std::string> qemu_tls(const std::string& port, const std::string& name) {
    return {"--object", "tls-creds-x509,id=tls0,dir=" + pki("client") + ",endpoint=client",
            "--image-opts",
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" + port +
                ",export=" + name + ",tls-creds=tls0"};
  }
  std::unique_ptr<NbdProcess> start_nbd(const std::string& spec, bool mutual,
                                        std::string* hostport) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0"};
    for (const auto& a : tls_args(mutual)) args.push_back(a);
    args.push_back(spec);
    auto server = std::make_unique<NbdProcess>(args);
    if (server->ready() && server->addresses().size() == 1)
      *hostport = server->addresses()[0].substr(4);  // "tcp:"
    return server;
  }

  static fs::path pki_;
  fs::path dir_;
};

fs::path NbdTlsTest::pki_;

TEST_F(NbdTlsTest, NbdinfoAndNbdcopyOverMutualTls) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("src.raw"), "16M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "raw", "-c", "write -P 0x71 0 5M", "-c", "write -P 0x72 9M 7M",
                 path("src.raw")})
                .exit_code,
            0);
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", path("dst.qcow2"), "16M"}).exit_code,
            0);
  std::string hp;
  auto server = start_nbd("dst=" + path("dst.qcow2"), true, &hp);
  ASSERT_FALSE(hp.empty()) << "vireo-nbd did not start";
  auto info = run({"nbdinfo", nbds(hp, "dst")});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("with TLS"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("export-size: 16777216"), std::string::npos) << info.out;
  auto r = run({"nbdcopy", "--connections=4", "--requests=16", path("src.raw"), nbds(hp, "dst")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"nbdcopy", "--connections=2", nbds(hp, "dst"), path("back.raw")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"qemu-img", "compare", "-f", "raw", "-F", "raw", path("src.raw"), path("back.raw")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(server->stop(), 0);
  r = run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", path("src.raw"), path("dst.qcow2")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(NbdTlsTest, QemuWritesAndReadsOverTls) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", path("q.qcow2"), "32M"}).exit_code, 0);
  std::string hp;
  auto server = start_nbd("q=" + path("q.qcow2"), true, &hp);
  ASSERT_FALSE(hp.empty()) << "vireo-nbd did not start";
  std::string port = hp.substr(hp.rfind(':') + 1);
  std::vector<std::string> argv = {"qemu-io"};
  for (const auto& a : qemu_tls(port, "q")) argv.push_back(a);
  argv.insert(argv.end(), {"-c", "write -P 0x5a 0 3M", "-c", "write -P 0xa5 20M 1M", "-c",
                           "write -z 1M 64k", "-c", "flush"});
  auto r = run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  argv.resize(5);  // a second connection reads the pattern back
  argv.insert(argv.end(),
              {"-c", "read -P 0x5a 0 1M", "-c", "read -P 0 1M 64k", "-c", "read -P 0xa5 20M 1M"});
  r = run(argv);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  std::vector<std::string> info = {"qemu-img", "info"};
  for (const auto& a : qemu_tls(port, "q")) info.push_back(a);
  r = run(info);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("virtual size: 32 MiB"), std::string::npos) << r.out;
  EXPECT_EQ(server->stop(), 0);
  r = run({"qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 2M 1M", "-c", "read -P 0xa5 20M 1M",
           path("q.qcow2")});
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  r = run({"qemu-img", "check", path("q.qcow2")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(NbdTlsTest, PlainAndUntrustedClientsAreRefused) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("d.raw"), "4M"}).exit_code, 0);
  std::string hp;
  auto server = start_nbd("d=" + path("d.raw"), true, &hp);
  ASSERT_FALSE(hp.empty()) << "vireo-nbd did not start";
  auto plain = run({"nbdinfo", "nbd://" + hp + "/d"});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  // qemu shows the server's reason.
  plain = run({"qemu-img", "info", "nbd://" + hp + "/d"});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  EXPECT_NE(plain.err.find("TLS is required"), std::string::npos) << plain.err;
  auto nocert = run({"nbdinfo", nbds(hp, "d", "nocert")});
  EXPECT_NE(nocert.exit_code, 0) << nocert.out;
  auto stranger = run({"nbdinfo", nbds(hp, "d", "stranger")});
  EXPECT_NE(stranger.exit_code, 0) << stranger.out;
  EXPECT_EQ(stranger.out.find("export-size"), std::string::npos) << stranger.out;
  // The server keeps serving trusted clients.
  auto good = run({"nbdinfo", nbds(hp, "d")});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_TRUE(server->alive());
}

TEST_F(NbdTlsTest, WithoutCaClientsNeedNoCertificate) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("d.raw"), "4M"}).exit_code, 0);
  std::string hp;
  auto server = start_nbd("d=" + path("d.raw"), false, &hp);
  ASSERT_FALSE(hp.empty()) << "vireo-nbd did not start";
  auto r = run({"nbdinfo", nbds(hp, "d", "nocert")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("export-size: 4194304"), std::string::npos) << r.out;
}

TEST_F(NbdTlsTest, PskClientsWithNbdinfoAndQemu) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("p.raw"), "8M"}).exit_code, 0);
  fs::create_directories(dir_ / "psk");
  fs::create_directories(dir_ / "wrong");
  std::string key(64, '0'), wrong(64, '0');
  for (size_t i = 0; i < key.size(); ++i) {
    key[i] = "0123456789abcdef"[(i * 7 + 3) % 16];
    wrong[i] = "0123456789abcdef"[(i * 5 + 1) % 16];
  }
  ASSERT_TRUE(write_file_atomic(dir_ / "psk" / "keys.psk", "alice:" + key + "\n", 0600));
  ASSERT_TRUE(write_file_atomic(dir_ / "wrong" / "keys.psk", "alice:" + wrong + "\n", 0600));
  NbdProcess server(
      {"--listen", "127.0.0.1:0", "--tls-psk", path("psk/keys.psk"), "p=" + path("p.raw")});
  ASSERT_TRUE(server.ready());
  std::string hp = server.addresses()[0].substr(4);
  std::string port = hp.substr(hp.rfind(':') + 1);
  auto uri = [&](const std::string& user, const std::string& file) {
    return "nbds://" + user + "@" + hp + "/p?tls-psk-file=" + path(file);
  };
  auto info = run({"nbdinfo", uri("alice", "psk/keys.psk")});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("with TLS"), std::string::npos) << info.out;
  EXPECT_NE(run({"nbdinfo", uri("alice", "wrong/keys.psk")}).exit_code, 0);
  EXPECT_NE(run({"nbdinfo", "nbd://" + hp + "/p"}).exit_code, 0);
  std::vector<std::string> qemu = {
      "qemu-io",
      "--object",
      "tls-creds-psk,id=tls0,dir=" + path("psk") + ",endpoint=client,username=alice",
      "--image-opts",
      "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" + port +
          ",export=p,tls-creds=tls0",
      "-c",
      "write -P 0x6b 1M 2M",
      "-c",
      "read -P 0x6b 1M 2M"};
  auto r = run(qemu);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  qemu[2] = "tls-creds-psk,id=tls0,dir=" + path("wrong") + ",endpoint=client,username=alice";
  r = run(qemu);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_EQ(server.stop(), 0);
  r = run({"qemu-io", "-f", "raw", "-c", "read -P 0x6b 1M 2M", path("p.raw")});
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
}

TEST_F(NbdTlsTest, BadCredentialsAreAClearStartupError) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("d.raw"), "4M"}).exit_code, 0);
  NbdProcess missing({"--listen", "127.0.0.1:0", "--tls-cert", path("nope.pem"), "--tls-key",
                      pki("server-key.pem"), "d=" + path("d.raw")});
  EXPECT_FALSE(missing.ready());
  NbdProcess mismatch({"--listen", "127.0.0.1:0", "--tls-cert", pki("server-cert.pem"), "--tls-key",
                       pki("client-key.pem"), "d=" + path("d.raw")});
  EXPECT_FALSE(mismatch.ready());
}

TEST_F(NbdTlsTest, StoragedServesPoolVolumesOverTcpWithTls) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("src.raw"), "8M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "raw", "-c", "write -P 0x3c 1M 2M", path("src.raw")}).exit_code,
            0);
  for (bool tls : {true, false}) {
    SCOPED_TRACE(tls ? "TLS" : "plain TCP");
    std::string state = tls ? "state-tls" : "state-plain";
    std::vector<std::string> args = {
        "--state",      path(state),          "--control",    path(state + ".ctl"),
        "--nbd-socket", path(state + ".nbd"), "--nbd-listen", "127.0.0.1:0"};
    if (tls)
      for (const auto& a : tls_args(true)) args.push_back(a);
    NbdProcess server(args, "vireo-storaged");
    ASSERT_TRUE(server.ready()) << "vireo-storaged did not start";
    std::string hp;
    for (const auto& a : server.addresses())
      if (a.starts_with("tcp:")) hp = a.substr(4);
    ASSERT_FALSE(hp.empty()) << server.ready_line();
    auto client = StoragedClient::connect(path(state + ".ctl"));
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_TRUE(client->create_pool("tp", "thin", path(state + ".pool"), 256 << 20));
    ASSERT_TRUE(client->create_volume("tp", "v", 8 << 20));
    auto vol = client->show_volume("tp", "v");
    ASSERT_TRUE(vol) << vol.error().message();
    std::string uri = vol->value("tcp_uri", "");
    EXPECT_EQ(uri, std::string(tls ? "nbds://" : "nbd://") + hp + "/tp/v");
    if (tls) uri += "?tls-certificates=" + pki("client");
    auto w = run({"nbdcopy", path("src.raw"), uri});
    ASSERT_EQ(w.exit_code, 0) << w.err;
    auto info = run({"nbdinfo", uri});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_NE(info.out.find("export-size: 8388608"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find(tls ? "with TLS" : "without TLS"), std::string::npos) << info.out;
    auto back = run({"nbdcopy", uri, path(state + ".back")});
    ASSERT_EQ(back.exit_code, 0) << back.err;
    auto cmp = run(
        {"qemu-img", "compare", "-f", "raw", "-F", "raw", path("src.raw"), path(state + ".back")});
    EXPECT_EQ(cmp.exit_code, 0) << cmp.out << cmp.err;
    if (tls) {  // the TLS listener refuses plain clients; the Unix socket stays plain
      auto plain = run({"nbdinfo", "nbd://" + hp + "/tp/v"});
      EXPECT_NE(plain.exit_code, 0);
      auto unix_info = run({"nbdinfo", vol->value("uri", "")});
      EXPECT_EQ(unix_info.exit_code, 0) << unix_info.err;
    }
    EXPECT_EQ(server.stop(), 0);
  }
}

}  // namespace
}  // namespace vireo::storage
