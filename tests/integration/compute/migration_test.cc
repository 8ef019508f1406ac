// Live migration between two QEMUs on this host (TCG), with the compute library: the guest boots
// on the source, moves over a unix socket to a destination started with `-incoming defer` and the
// same devices (the disk is shared: both open the same file), and its shell answers on the
// destination's console; the downtime QEMU measured is reported. A migration that cannot finish
// in time is cancelled, one to nowhere fails: in both cases the guest keeps running on the source.
#include "compute/migration.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "base/ids.h"
#include "base/subprocess.h"
#include "compute/console_log.h"
#include "compute/qemu_command.h"
#include "compute/tls_identity.h"
#include "compute/vm_process.h"

namespace vireo::compute {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path guest_dir() {
  const char* src = std::getenv("VIREO_SOURCE_DIR");
  fs::path root = src ? src : VIREO_SOURCE_DIR_FALLBACK;
  return root / ".cache" / "guest";
}

// A QEMU waiting for an incoming migration, run by the test itself.
struct Destination {
  pid_t pid = -1;
  std::unique_ptr<QmpClient> qmp;
  std::unique_ptr<ConsoleLog> console;
  ~Destination() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(guest_dir() / "vmlinuz")) {
      auto r = run_process({(guest_dir() / ".." / ".." / "scripts" / "guest-image").string()},
                           {.timeout = 300s});
      ASSERT_TRUE(r && r->ok()) << "scripts/guest-image failed";
    }
    root_ = fs::temp_directory_path() / ("vireo-mig-" + random_hex(4));
    fs::create_directories(root_ / "dst");
    spec_ = VmSpec{
        .name = "mig",
        .uuid = random_uuid(),
        .vcpus = 1,
        .memory_mib = 256,
        .kernel = (guest_dir() / "vmlinuz").string(),
        .initrd = (guest_dir() / "initramfs.cpio.gz").string(),
        .cmdline = "console=ttyS0 quiet",
        .disks = {{.path = (guest_dir() / "rootfs.ext4").string(), .access = Access::kReadOnly}}};
  }
  void TearDown() override {
    if (auto vm = VmProcess::attach(root_ / "src")) (void)(*vm)->stop(StopMode::kForce, 1s);
    fs::remove_all(root_);
  }

  std::unique_ptr<VmProcess> start_source() {
    auto vm = VmProcess::start(spec_, root_ / "src");
    EXPECT_TRUE(vm) << vm.error().message();
    if (!vm) return nullptr;
    auto ready = (*vm)->console()->wait_for("VIREO-GUEST-READY", 120s);
    EXPECT_TRUE(ready) << (*vm)->console()->recent();
    return ready ? std::move(*vm) : nullptr;
  }

  // The same devices, waiting for the migration stream (started without -S: it runs the guest
  // as soon as the state is in).
  std::unique_ptr<Destination> start_destination() { return start_destination(spec_); }
  std::unique_ptr<Destination> start_destination(const VmSpec& spec) {
    auto d = std::make_unique<Destination>();
    QemuPaths paths{.qmp_socket = (root_ / "dst" / "qmp.sock").string(),
                    .console_socket = (root_ / "dst" / "console.sock").string(),
                    .pidfile = (root_ / "dst" / "qemu.pid").string()};
    auto argv = build_qemu_command(spec, paths);
    EXPECT_TRUE(argv) << argv.error().message();
    if (!argv) return nullptr;
    argv->insert(argv->end(), {"-incoming", "defer"});
    Fd log(::open((root_ / "dst" / "qemu.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    auto pid = spawn_detached(*argv, log.get());
    EXPECT_TRUE(pid) << pid.error().message();
    if (!pid) return nullptr;
    d->pid = *pid;
    // QEMU's sockets exist once it listens; nothing else says so.
    for (int i = 0; i < 500 && !d->qmp; ++i) {
      if (auto q = QmpClient::connect(paths.qmp_socket)) {
        d->qmp = std::move(*q);
      } else {
        std::this_thread::sleep_for(20ms);
      }
    }
    EXPECT_TRUE(d->qmp) << "destination QMP did not answer";
    auto console = ConsoleLog::open(paths.console_socket, root_ / "dst" / "console.log");
    EXPECT_TRUE(console) << console.error().message();
    if (!d->qmp || !console) return nullptr;
    d->console = std::move(*console);
    return d;
  }

  std::string status(QmpClient& qmp) {
    auto s = qmp.execute("query-status");
    return s ? s->value("status", "?") : "error: " + s.error().message();
  }

  // The guest runs on the destination (QEMU says so within 30 s) and its shell answers there.
  void expect_guest_runs_on(Destination& dest) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (status(*dest.qmp) != "running" && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    ASSERT_EQ(status(*dest.qmp), "running");
    ASSERT_TRUE(dest.console->write("echo moved-$((40+2))\n"));
    EXPECT_TRUE(dest.console->wait_for("moved-42", 30s)) << dest.console->recent();
  }

  std::string uri() const { return "unix:" + (root_ / "migration.sock").string(); }

  fs::path root_;
  VmSpec spec_;
};

TEST_F(MigrationTest, GuestMovesToTheDestinationAndKeepsRunning) {
  auto source = start_source();
  ASSERT_TRUE(source);
  auto dest = start_destination();
  ASSERT_TRUE(dest);
  ASSERT_TRUE(start_incoming(*dest->qmp, uri()));
  auto stats = migrate(source->qmp(), uri());
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->status, "completed");
  EXPECT_GT(stats->ram_transferred, 0u);
  std::printf(
      "migration: total %llu ms, downtime %llu ms, setup %llu ms, %llu MiB sent, "
      "%llu passes\n",
      (unsigned long long)stats->total_ms, (unsigned long long)stats->downtime_ms,
      (unsigned long long)stats->setup_ms, (unsigned long long)(stats->ram_transferred >> 20),
      (unsigned long long)stats->dirty_sync_count);
  EXPECT_LT(stats->downtime_ms, 2000u) << "TCG on a shared 2-CPU host; the bench records it";
  EXPECT_EQ(status(source->qmp()), "postmigrate");
  expect_guest_runs_on(*dest);
}

// Writes PEM files into a new directory and makes QEMU's TLS credentials object "tls0" from them.
Result<void> add_creds(QmpClient& qmp, const fs::path& dir,
                       const std::vector<std::pair<std::string, std::string>>& files, bool server) {
  fs::create_directories(dir);
  for (const auto& [name, pem] : files) std::ofstream(dir / name) << pem;
  return add_tls_creds(qmp, "tls0", dir.string(), server);
}

// Connects to 127.0.0.1:port with TLS presenting identity; true when the peer ends the session
// with an error (an alert) within 10 s rather than taking it.
bool tls_client_is_refused(uint16_t port, const TlsIdentity& identity) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(identity.cert_pem.data(), int(identity.cert_pem.size())), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(identity.key_pem.data(), int(identity.key_pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), X509_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!cert || !key || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1)
    return false;
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);  // this test is about the server
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(0x7f000001)}};
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd.get());
  // With TLS 1.3 the server judges the client's certificate after the client's side of the
  // handshake is done: its verdict arrives as an alert on the first read.
  char byte;
  int rc = SSL_connect(ssl.get());
  if (rc == 1) rc = SSL_read(ssl.get(), &byte, 1);
  return rc <= 0 && SSL_get_error(ssl.get(), rc) == SSL_ERROR_SSL;
}

// Over TCP the destination presents its certificate and takes the stream only from the source
// certificate it was given (both QEMUs verify the peer): a client with another certificate is
// refused during the handshake; the source with the pinned one migrates the guest.
TEST_F(MigrationTest, TlsDestinationTakesTheStreamFromItsSourceOnly) {
  auto destination_id = make_tls_identity("localhost");
  auto source_id = make_tls_identity("vireo-migration-mig");
  auto stranger_id = make_tls_identity("vireo-migration-mig");
  ASSERT_TRUE(destination_id && source_id && stranger_id);
  const std::vector<std::pair<std::string, std::string>> server_files = {
      {"server-cert.pem", destination_id->cert_pem},
      {"server-key.pem", destination_id->key_pem},
      {"ca-cert.pem", source_id->cert_pem}};
  auto port_of = [](const std::string& uri) {
    return uint16_t(std::stoi(uri.substr(uri.rfind(':') + 1)));
  };
  // A destination listening on a TCP port with those credentials; its "tcp:" URI.
  auto listen_tls = [&](Destination& dest, const fs::path& dir) -> Result<std::string> {
    TRY(add_creds(*dest.qmp, dir, server_files, true));
    TRY(start_incoming(*dest.qmp, "tcp:127.0.0.1:0", {"tls0", ""}));
    return incoming_uri(*dest.qmp);
  };
  {
    auto dest = start_destination();
    ASSERT_TRUE(dest);
    auto uri = listen_tls(*dest, root_ / "tls-refuse");
    ASSERT_TRUE(uri) << uri.error().message();
    EXPECT_TRUE(tls_client_is_refused(port_of(*uri), *stranger_id));
  }
  auto source = start_source();
  ASSERT_TRUE(source);
  auto dest = start_destination();
  ASSERT_TRUE(dest);
  auto uri = listen_tls(*dest, root_ / "tls-dest");
  ASSERT_TRUE(uri) << uri.error().message();
  auto creds = add_creds(source->qmp(), root_ / "tls-src",
                         {{"ca-cert.pem", destination_id->cert_pem},
                          {"client-cert.pem", source_id->cert_pem},
                          {"client-key.pem", source_id->key_pem}},
                         false);
  ASSERT_TRUE(creds) << creds.error().message();
  auto stats = migrate(source->qmp(), *uri, {.tls = {"tls0", "localhost"}});
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->status, "completed");
  expect_guest_runs_on(*dest);
}

TEST_F(MigrationTest, FailedOrCancelledMigrationLeavesTheGuestOnTheSource) {
  auto source = start_source();
  ASSERT_TRUE(source);
  // Nobody listens: QEMU fails the migration.
  auto nowhere = migrate(source->qmp(), "unix:" + (root_ / "nobody.sock").string());
  ASSERT_FALSE(nowhere);
  EXPECT_NE(nowhere.error().message().find("runs on the source"), std::string::npos)
      << nowhere.error().message();
  EXPECT_EQ(status(source->qmp()), "running");
  // Too slow to finish in time (1 MiB/s for 256 MiB): cancelled at the timeout.
  auto dest = start_destination();
  ASSERT_TRUE(dest);
  ASSERT_TRUE(start_incoming(*dest->qmp, uri()));
  auto slow = migrate(source->qmp(), uri(), {.max_bandwidth = 1 << 20, .timeout = 2s});
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code(), ErrorCode::kTimeout) << slow.error().message();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (status(source->qmp()) != "running" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(status(source->qmp()), "running");
  ASSERT_TRUE(source->console()->write("echo still-$((40+2))\n"));
  EXPECT_TRUE(source->console()->wait_for("still-42", 30s)) << source->console()->recent();
}

// No shared storage: the destination starts with an empty disk, the source mirrors its disk into
// it while the guest runs and writes, and the copy is completed with the guest stopped, before
// the destination takes over. Both disks then hold the same bytes.
TEST_F(MigrationTest, DisksAreCopiedWhileTheGuestRuns) {
  const fs::path src = root_ / "src.img", dst = root_ / "dst.img";
  fs::copy_file(guest_dir() / "rootfs.ext4", src);
  { std::ofstream(dst.string()); }
  fs::resize_file(dst, fs::file_size(src));
  spec_.disks = {{.path = src.string()}};
  auto source = start_source();
  ASSERT_TRUE(source);
  VmSpec dest_spec = spec_;
  dest_spec.disks = {{.path = dst.string()}};
  auto dest = start_destination(dest_spec);
  ASSERT_TRUE(dest);
  const std::string nbd = (root_ / "nbd.sock").string();
  ASSERT_TRUE(serve_disks(*dest->qmp, nbd, {"disk0"}));
  ASSERT_TRUE(start_incoming(*dest->qmp, uri()));
  auto mirrored = mirror_disks(source->qmp(), nbd, {"disk0"}, 120s);
  ASSERT_TRUE(mirrored) << mirrored.error().message();
  // A write after the bulk copy: it must reach the destination too.
  ASSERT_TRUE(source->console()->write(
      "echo written-during-copy > /mnt/vda/marker && sync && echo marker-$((40+2))\n"));
  ASSERT_TRUE(source->console()->wait_for("marker-42", 30s)) << source->console()->recent();
  MigrationOptions options;
  options.before_switchover = [&]() -> Result<void> {
    TRY(finish_mirrors(source->qmp(), {"disk0"}));
    return stop_serving_disks(*dest->qmp, {"disk0"});
  };
  auto stats = migrate(source->qmp(), uri(), options);
  ASSERT_TRUE(stats) << stats.error().message();
  std::printf("migration with disk copy: total %llu ms, downtime %llu ms\n",
              (unsigned long long)stats->total_ms, (unsigned long long)stats->downtime_ms);
  auto same = run_process(
      {"qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", src.string(), dst.string()},
      {.timeout = 60s});
  ASSERT_TRUE(same);
  EXPECT_EQ(same->exit_code, 0) << same->out << same->err;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (status(*dest->qmp) != "running" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(dest->console->write("cat /mnt/vda/marker\n"));
  EXPECT_TRUE(dest->console->wait_for("written-during-copy\r\n", 30s)) << dest->console->recent();
}

TEST(MigrationStatsTest, QueryMigrateIsRead) {
  auto s = parse_query_migrate(Json::parse(R"({"status": "completed", "total-time": 812,
      "downtime": 35, "setup-time": 4, "ram": {"transferred": 123456, "total": 268435456,
      "dirty-sync-count": 3}})"));
  EXPECT_EQ(s.status, "completed");
  EXPECT_EQ(s.total_ms, 812u);
  EXPECT_EQ(s.downtime_ms, 35u);
  EXPECT_EQ(s.ram_transferred, 123456u);
  EXPECT_EQ(s.dirty_sync_count, 3u);
  auto f = parse_query_migrate(Json::parse(R"({"status": "failed", "error-desc": "boom"})"));
  EXPECT_EQ(f.error, "boom");
  EXPECT_EQ(parse_query_migrate(Json("junk")).status, "");
}

TEST(MigrationStatsTest, TcpUrisBracketIpv6Hosts) {
  EXPECT_EQ(tcp_uri("127.0.0.1", "0"), "tcp:127.0.0.1:0");
  EXPECT_EQ(tcp_uri("::1", "4444"), "tcp:[::1]:4444");
  EXPECT_EQ(tcp_uri("[::1]", "4444"), "tcp:[::1]:4444");
  EXPECT_EQ(tcp_uri("host.example", "80"), "tcp:host.example:80");
}

}  // namespace
}  // namespace vireo::compute
