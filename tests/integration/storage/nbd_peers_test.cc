// vireo-nbd against real NBD clients: qemu-io and qemu-img over nbd+unix://, nbdinfo (incl.
// --map), nbdcopy with several connections, TCP, read-only exports, hostile clients.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "base/fd.h"
#include "base/file.h"
#include "peers.h"

namespace vireo::storage {
namespace {

using namespace testing;

class NbdPeersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_programs({"qemu-img", "qemu-io", "nbdinfo", "nbdcopy"}))
      GTEST_SKIP() << "qemu-utils / libnbd-bin not installed";
    dir_ = make_temp_dir("vireo-nbd-peers");
    sock_ = (dir_ / "nbd.sock").string();
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string uri(const std::string& export_name) const {
    return "nbd+unix:///" + export_name + "?socket=" + sock_;
  }
  void create_qcow2(const std::string& name, const std::string& size) {
    ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", path(name), size}).exit_code, 0);
  }

  fs::path dir_;
  std::string sock_;
};

TEST_F(NbdPeersTest, QemuIoOverNbdLeavesCleanImageWithSameData) {
  create_qcow2("served.qcow2", "32M");
  create_qcow2("direct.qcow2", "32M");
  std::vector<std::string> cmds = {"write -P 0xa1 0 1M", "write -P 0xb2 5000 70000",
                                   "write -z 4M 2M",     "write -P 0xc3 10M 3M",
                                   "discard 11M 1M",     "write -P 0xd4 31M 1M",
                                   "write -z -u 20M 1M", "flush"};
  std::vector<std::string> argv_nbd = {"qemu-io", "-f", "raw"};
  std::vector<std::string> argv_file = {"qemu-io", "-f", "qcow2"};
  for (const auto& c : cmds) {
    argv_nbd.insert(argv_nbd.end(), {"-c", c});
    argv_file.insert(argv_file.end(), {"-c", c});
  }
  argv_file.push_back(path("direct.qcow2"));
  argv_nbd.push_back(uri("d"));
  NbdProcess server({"--socket", sock_, "d=" + path("served.qcow2")});
  ASSERT_TRUE(server.ready());
  auto r = run(argv_nbd);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(run(argv_file).exit_code, 0);
  r = run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", uri("d"), path("direct.qcow2")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(server.stop(), 0);
  r = run({"qemu-img", "check", path("served.qcow2")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("No errors were found"), std::string::npos) << r.out;
}

TEST_F(NbdPeersTest, NbdinfoShowsExportAndAllocationMap) {
  create_qcow2("m.qcow2", "8M");
  ASSERT_EQ(run({"qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 1M", "-c", "write -z 4M 1M",
                 path("m.qcow2")})
                .exit_code,
            0);
  NbdProcess server({"--socket", sock_, "m=" + path("m.qcow2")});
  ASSERT_TRUE(server.ready());
  auto info = run({"nbdinfo", uri("m")});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("export-size: 8388608"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("base:allocation"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("can_multi_conn: true"), std::string::npos) << info.out;
  auto map = run({"nbdinfo", "--map", uri("m")});
  ASSERT_EQ(map.exit_code, 0) << map.err;
  // Hole, 1 MiB of data, then holes/zeroes up to the end.
  EXPECT_NE(map.out.find("0     1048576    3  hole,zero"), std::string::npos) << map.out;
  EXPECT_NE(map.out.find("1048576     1048576    0  data"), std::string::npos) << map.out;
  auto list = run({"nbdinfo", "--list", "nbd+unix://?socket=" + sock_});
  EXPECT_NE(list.out.find("export=\"m\""), std::string::npos) << list.out;
}

TEST_F(NbdPeersTest, NbdcopyWithSeveralConnectionsRoundTrips) {
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "raw", path("src.raw"), "16M"}).exit_code, 0);
  ASSERT_EQ(run({"qemu-io", "-f", "raw", "-c", "write -P 0x77 0 5M", "-c", "write -P 0x78 9M 7M",
                 path("src.raw")})
                .exit_code,
            0);
  create_qcow2("dst.qcow2", "16M");
  NbdProcess server({"--socket", sock_, "dst=" + path("dst.qcow2")});
  ASSERT_TRUE(server.ready());
  auto r = run({"nbdcopy", "--connections=4", "--requests=16", path("src.raw"), uri("dst")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run({"nbdcopy", "--connections=4", uri("dst"), path("back.raw")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      run({"qemu-img", "compare", "-f", "raw", "-F", "raw", path("src.raw"), path("back.raw")})
          .exit_code,
      0);
  // Two writers at once on disjoint ranges, each on its own connection.
  std::thread a([&] {
    EXPECT_EQ(run({"qemu-io", "-f", "raw", "-c", "write -P 1 0 4M", uri("dst")}).exit_code, 0);
  });
  std::thread b([&] {
    EXPECT_EQ(run({"qemu-io", "-f", "raw", "-c", "write -P 2 8M 4M", uri("dst")}).exit_code, 0);
  });
  a.join();
  b.join();
  r = run({"qemu-io", "-f", "raw", "-c", "read -P 1 0 4M", "-c", "read -P 2 8M 4M", uri("dst")});
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  EXPECT_EQ(server.stop(), 0);
  r = run({"qemu-img", "check", path("dst.qcow2")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(NbdPeersTest, TcpListenerAndReadOnlyExport) {
  create_qcow2("ro.qcow2", "4M");
  NbdProcess server({"--listen", "127.0.0.1:0", "--read-only", "r=" + path("ro.qcow2")});
  ASSERT_TRUE(server.ready());
  ASSERT_EQ(server.addresses().size(), 1u);
  std::string hostport = server.addresses()[0].substr(4);  // "tcp:"
  std::string tcp_uri = "nbd://" + hostport + "/r";
  auto info = run({"nbdinfo", tcp_uri});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("is_read_only: true"), std::string::npos) << info.out;
  auto w = run({"qemu-io", "-f", "raw", "-c", "write 0 4096", tcp_uri});
  EXPECT_TRUE(w.exit_code != 0 || w.out.find("failed") != std::string::npos ||
              w.err.find("read-only") != std::string::npos ||
              w.err.find("only") != std::string::npos)
      << w.out << w.err;
}

TEST_F(NbdPeersTest, HostileClientsDoNotStopTheServer) {
  create_qcow2("h.qcow2", "4M");
  NbdProcess server({"--socket", sock_, "h=" + path("h.qcow2")});
  ASSERT_TRUE(server.ready());
  for (int i = 0; i < 5; ++i) {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, sock_.c_str());
    ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string garbage(1000 * (i + 1), char('A' + i));
    (void)!::send(fd.get(), garbage.data(), garbage.size(), MSG_NOSIGNAL);
  }
  auto r =
      run({"qemu-io", "-f", "raw", "-c", "write -P 9 0 64k", "-c", "read -P 9 0 64k", uri("h")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  EXPECT_EQ(server.stop(), 0);
}

TEST_F(NbdPeersTest, BadImageIsAClearStartupError) {
  ASSERT_TRUE(write_file_atomic(dir_ / "bad.qcow2",
                                std::string("QFI\xfb\0\0\0\x07", 8) + std::string(100, '\0')));
  NbdProcess server({"--socket", sock_, "b=" + path("bad.qcow2")});
  EXPECT_FALSE(server.ready());
}

}  // namespace
}  // namespace vireo::storage
