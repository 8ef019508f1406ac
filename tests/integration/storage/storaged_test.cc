// vireo-storaged end to end: pools and volumes through the control socket (StoragedClient),
// data through real NBD clients (qemu-io, qemu-img, nbdinfo, nbdcopy) on nbd+unix://, qcow2
// volumes of dir pools checked by qemu-img check, restarts and kill -9 of the server, bad input.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>
#include <tuple>

#include <gtest/gtest.h>

#include "base/file.h"
#include "base/json.h"
#include "peers.h"
#include "storage/storaged_client.h"

namespace vireo::storage {
namespace {

using namespace testing;

class StoragedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_programs({"qemu-img", "qemu-io", "nbdinfo", "nbdcopy"}))
      GTEST_SKIP() << "qemu-utils / libnbd-bin not installed";
    dir_ = make_temp_dir("vireo-storaged");
    start();
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void start() {
    server_ = std::make_unique<NbdProcess>(
        std::vector<std::string>{"--state", path("state"), "--control", path("ctl.sock"),
                                 "--nbd-socket", path("nbd.sock")},
        "vireo-storaged");
    ASSERT_TRUE(server_->ready()) << "vireo-storaged did not start";
    auto c = StoragedClient::connect(path("ctl.sock"));
    ASSERT_TRUE(c) << c.error().message();
    client_.emplace(std::move(*c));
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string uri(const std::string& export_name) const {
    return "nbd+unix:///" + export_name + "?socket=" + path("nbd.sock");
  }
  Json call(const Json& r) {
    auto reply = client_->call(r);
    EXPECT_TRUE(reply) << r.dump() << ": " << reply.error().message();
    return reply ? *reply : Json();
  }
  std::string call_error(const Json& r) {
    auto reply = client_->call(r);
    EXPECT_FALSE(reply) << r.dump() << " unexpectedly succeeded";
    return reply ? "" : reply.error().message();
  }
  // qemu-io commands against an export; returns the exit code (and prints output on failure).
  enum class Access { kReadWrite, kReadOnly };
  int qemu_io(const std::string& export_name, const std::vector<std::string>& cmds,
              Access access = Access::kReadWrite) {
    std::vector<std::string> argv = {"qemu-io", "-f", "raw"};
    if (access == Access::kReadOnly) argv.push_back("-r");
    for (const auto& c : cmds) argv.insert(argv.end(), {"-c", c});
    argv.push_back(uri(export_name));
    ProcessResult r = run(argv);
    bool failed =
        r.exit_code != 0 || r.out.find("Pattern verification failed") != std::string::npos;
    if (failed) ADD_FAILURE() << export_name << ": " << r.out << r.err;
    return failed ? 1 : 0;
  }
  void make_thin_pool(const std::string& name = "tp", const std::string& size = "1G") {
    call({{"op", "pool.create"},
          {"name", name},
          {"type", "thin"},
          {"path", path(name + ".pool")},
          {"size", size}});
  }

  fs::path dir_;
  std::unique_ptr<NbdProcess> server_;
  std::optional<StoragedClient> client_;
};

TEST_F(StoragedTest, ThinVolumeServesQemuIoNbdinfoAndNbdcopy) {
  make_thin_pool();
  Json v = *client_->create_volume("tp", "disk", 64 << 20);
  EXPECT_EQ(v["uri"], uri("tp/disk"));
  EXPECT_EQ(v["allocated"], 0);
  ASSERT_EQ(qemu_io("tp/disk", {"write -P 0xa1 0 1M", "write -P 0xb2 10M 64k", "flush",
                                "read -P 0xa1 0 1M", "read -P 0 1M 9M", "read -P 0xb2 10M 64k"}),
            0);
  ProcessResult info = run({"nbdinfo", uri("tp/disk")});
  EXPECT_NE(info.out.find("export-size: 67108864"), std::string::npos) << info.out;
  ProcessResult map = run({"nbdinfo", "--map", uri("tp/disk")});
  EXPECT_NE(map.out.find("hole,zero"), std::string::npos) << map.out;
  EXPECT_EQ((*client_->show_volume("tp", "disk"))["allocated"], (1 << 20) + (64 << 10));
  // nbdcopy out with several connections, and qemu-img compare says it is the same data.
  ASSERT_EQ(run({"nbdcopy", "--connections=4", uri("tp/disk"), path("copy.raw")}).exit_code, 0);
  ProcessResult cmp =
      run({"qemu-img", "compare", "-f", "raw", "-F", "raw", uri("tp/disk"), path("copy.raw")});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.out << cmp.err;
  // Discard over NBD gives the space back.
  ASSERT_EQ(qemu_io("tp/disk", {"discard 0 1M", "read -P 0 0 1M"}), 0);
  EXPECT_EQ((*client_->show_volume("tp", "disk"))["allocated"], 64 << 10);
  EXPECT_TRUE((*client_->check_pool("tp"))["clean"].get<bool>());
}

// fio's nbd engine (the benchmark's client) writes with crc32c checksums and reads every block
// back, random 4 KiB at iodepth 16 and sequential 1 MiB, on a thin volume and a qcow2 volume.
TEST_F(StoragedTest, FioNbdEngineVerifiesThinAndQcow2Volumes) {
  if (!have_programs({"fio"})) GTEST_SKIP() << "fio not installed";
  make_thin_pool();
  call({{"op", "pool.create"}, {"name", "dp"}, {"type", "dir"}, {"path", path("dirpool")}});
  ASSERT_TRUE(client_->create_volume("tp", "f", 64 << 20));
  ASSERT_TRUE(client_->create_volume("dp", "q", 64 << 20, "qcow2"));
  for (const char* vol : {"tp/f", "dp/q"}) {
    for (auto [rw, bs, depth] : {std::tuple{"randwrite", "4k", "16"}, {"write", "1M", "4"}}) {
      ProcessResult r = run({"fio", "--name=verify", "--ioengine=nbd", "--uri=" + uri(vol),
                             std::string("--rw=") + rw, std::string("--bs=") + bs,
                             std::string("--iodepth=") + depth, "--size=32M", "--verify=crc32c",
                             "--do_verify=1", "--verify_fatal=1", "--output-format=json"});
      ASSERT_EQ(r.exit_code, 0) << vol << " " << rw << ": " << r.out << r.err;
      // fio prints "connected to NBD server" before its JSON.
      auto job = parse_json(r.out.substr(r.out.find('{')));
      ASSERT_TRUE(job) << r.out;
      const Json& j = (*job)["jobs"][0];
      EXPECT_EQ(j.value("error", -1), 0) << vol << " " << rw;
      EXPECT_EQ(j["write"].value("io_bytes", 0ull), 32ull << 20) << vol << " " << rw;
      EXPECT_EQ(j["read"].value("io_bytes", 0ull), 32ull << 20) << vol << " " << rw << " verify";
    }
  }
  EXPECT_TRUE((*client_->check_pool("tp"))["clean"].get<bool>());
  ProcessResult c = run({"qemu-img", "check", "-U", path("dirpool/q.qcow2")});
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
}

TEST_F(StoragedTest, ThinSnapshotAndCloneOverNbd) {
  make_thin_pool();
  ASSERT_TRUE(client_->create_volume("tp", "base", 32 << 20));
  ASSERT_EQ(qemu_io("tp/base", {"write -P 0x11 0 2M"}), 0);
  Json s = *client_->snapshot_volume("tp", "base", "snap1");
  EXPECT_TRUE(s["read_only"].get<bool>());
  EXPECT_EQ(s["origin"], "base");
  call({{"op", "vol.clone"}, {"pool", "tp"}, {"name", "snap1"}, {"clone", "work"}});
  ASSERT_EQ(qemu_io("tp/base", {"write -P 0x22 0 512k"}), 0);
  ASSERT_EQ(qemu_io("tp/work", {"write -P 0x33 1M 4k"}), 0);
  EXPECT_EQ(qemu_io("tp/snap1", {"read -P 0x11 0 2M"}, Access::kReadOnly), 0);
  EXPECT_EQ(qemu_io("tp/base", {"read -P 0x22 0 512k", "read -P 0x11 512k 1536k"}), 0);
  EXPECT_EQ(qemu_io("tp/work", {"read -P 0x11 0 1M", "read -P 0x33 1M 4k"}), 0);
  // A snapshot is read-only over NBD too.
  ProcessResult ro = run({"qemu-io", "-f", "raw", "-c", "write 0 4k", uri("tp/snap1")});
  EXPECT_NE(ro.exit_code, 0) << ro.out << ro.err;
  EXPECT_NE((ro.out + ro.err).find("Permission denied"), std::string::npos) << ro.out << ro.err;
  Json pool = call({{"op", "pool.show"}, {"name", "tp"}});
  EXPECT_EQ(pool["volumes"], 3);
  EXPECT_EQ(pool["used"], (2 << 20) + (64 << 10) + (512 << 10));  // shared extents count once
  EXPECT_TRUE((*client_->check_pool("tp"))["clean"].get<bool>());
}

TEST_F(StoragedTest, DirPoolQcow2VolumesPassQemuImgCheck) {
  call({{"op", "pool.create"}, {"name", "dp"}, {"type", "dir"}, {"path", path("dirpool")}});
  ASSERT_TRUE(client_->create_volume("dp", "q", 64 << 20, "qcow2"));
  ASSERT_TRUE(client_->create_volume("dp", "r", 16 << 20, "raw"));
  ASSERT_EQ(
      qemu_io("dp/q", {"write -P 0x44 0 3M", "write -P 0x55 40M 64k", "discard 1M 1M", "flush"}),
      0);
  ASSERT_EQ(qemu_io("dp/r", {"write -P 0x66 0 1M"}), 0);
  ASSERT_TRUE(client_->snapshot_volume("dp", "q", "qsnap"));
  call({{"op", "vol.clone"}, {"pool", "dp"}, {"name", "q"}, {"clone", "qclone"}});
  ASSERT_EQ(qemu_io("dp/q", {"write -P 0x77 0 64k"}), 0);
  EXPECT_EQ(qemu_io("dp/qsnap", {"read -P 0x44 0 64k", "read -P 0x55 40M 64k"}, Access::kReadOnly),
            0);
  EXPECT_EQ(qemu_io("dp/qclone", {"read -P 0x44 0 1M", "read -P 0 1M 1M"}), 0);
  for (const char* f : {"q.qcow2", "qsnap.qcow2", "qclone.qcow2"}) {
    ProcessResult c = run({"qemu-img", "check", "-U", path("dirpool/") + f});
    EXPECT_EQ(c.exit_code, 0) << f << ": " << c.out << c.err;
    EXPECT_NE(c.out.find("No errors were found"), std::string::npos) << c.out;
  }
  EXPECT_TRUE((*client_->check_pool("dp"))["clean"].get<bool>());
  Json list = call({{"op", "vol.ls"}, {"pool", "dp"}});
  EXPECT_EQ(list["volumes"].size(), 4u);
  call({{"op", "vol.resize"}, {"pool", "dp"}, {"name", "r"}, {"size", "32M"}});
  ProcessResult info = run({"nbdinfo", uri("dp/r")});
  EXPECT_NE(info.out.find("export-size: 33554432"), std::string::npos) << info.out;
  // A qcow2 volume grows while it is exported; qemu still finds it consistent. Shrinking is
  // refused.
  call({{"op", "vol.resize"}, {"pool", "dp"}, {"name", "q"}, {"size", "1G"}});
  info = run({"nbdinfo", uri("dp/q")});
  EXPECT_NE(info.out.find("export-size: 1073741824"), std::string::npos) << info.out;
  ASSERT_EQ(qemu_io("dp/q", {"write -P 0x78 1023M 1M", "read -P 0x77 0 64k"}), 0);
  ProcessResult c = run({"qemu-img", "check", "-U", path("dirpool/q.qcow2")});
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_NE(call_error({{"op", "vol.resize"}, {"pool", "dp"}, {"name", "q"}, {"size", "1M"}})
                .find("shrinking"),
            std::string::npos);
}

TEST_F(StoragedTest, ImportAndExportRoundTrip) {
  make_thin_pool();
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", path("src.qcow2"), "20M"}).exit_code,
            0);
  ASSERT_EQ(
      run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 3M", path("src.qcow2")}).exit_code, 0);
  Json v =
      call({{"op", "vol.import"}, {"pool", "tp"}, {"name", "imp"}, {"file", path("src.qcow2")}});
  EXPECT_EQ(v["size"], 20 << 20);
  EXPECT_EQ(v["allocated"], 3 << 20);
  call({{"op", "vol.export"},
        {"pool", "tp"},
        {"name", "imp"},
        {"file", path("out.qcow2")},
        {"format", "qcow2"}});
  ProcessResult cmp = run({"qemu-img", "compare", path("src.qcow2"), path("out.qcow2")});
  EXPECT_EQ(cmp.exit_code, 0) << cmp.out << cmp.err;
  EXPECT_EQ(run({"qemu-img", "check", path("out.qcow2")}).exit_code, 0);
  EXPECT_NE(
      call_error(
          {{"op", "vol.export"}, {"pool", "tp"}, {"name", "imp"}, {"file", path("out.qcow2")}})
          .find("exists"),
      std::string::npos);
  EXPECT_NE(call_error({{"op", "vol.import"}, {"pool", "tp"}, {"name", "x"}, {"file", "rel.img"}})
                .find("absolute"),
            std::string::npos);
}

TEST_F(StoragedTest, KeepsServingWhileControlClientsComeAndGo) {
  make_thin_pool();
  ASSERT_TRUE(client_->create_volume("tp", "v", 8 << 20));
  ASSERT_EQ(qemu_io("tp/v", {"write -P 0x12 0 1M"}), 0);
  // The controller goes away in the middle of a request, and a garbage one arrives.
  client_.reset();
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path("ctl.sock").c_str());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string half = "{\"op\": \"vol.ls\", \"po";
    ASSERT_GT(::send(fd, half.data(), half.size(), 0), 0);
    ::close(fd);
  }
  EXPECT_EQ(qemu_io("tp/v", {"read -P 0x12 0 1M"}), 0);
  auto c = StoragedClient::connect(path("ctl.sock"));
  ASSERT_TRUE(c);
  client_.emplace(std::move(*c));
  // A second server on the same state directory refuses to start.
  NbdProcess second(
      {"--state", path("state"), "--control", path("ctl2.sock"), "--nbd-socket", path("nbd2.sock")},
      "vireo-storaged");
  EXPECT_FALSE(second.ready());
  EXPECT_EQ(qemu_io("tp/v", {"read -P 0x12 0 1M"}), 0);
  EXPECT_NE(call_error({{"op", "nope"}}).find("unknown op"), std::string::npos);
  EXPECT_NE(call_error({{"op", 7}}).find("op"), std::string::npos);
  EXPECT_EQ(call({{"op", "vol.ls"}, {"pool", "tp"}})["volumes"].size(), 1u);
}

TEST_F(StoragedTest, RestartAndKillNineKeepPoolsAndFlushedData) {
  make_thin_pool();
  call({{"op", "pool.create"}, {"name", "dp"}, {"type", "dir"}, {"path", path("dirpool")}});
  ASSERT_TRUE(client_->create_volume("tp", "v", 16 << 20));
  ASSERT_TRUE(client_->create_volume("dp", "q", 16 << 20, "qcow2"));
  ASSERT_EQ(qemu_io("tp/v", {"write -P 0x21 0 2M", "flush"}), 0);
  ASSERT_EQ(qemu_io("dp/q", {"write -P 0x22 0 2M", "flush"}), 0);
  EXPECT_EQ(server_->stop(), 0);
  client_.reset();
  start();
  EXPECT_EQ(qemu_io("tp/v", {"read -P 0x21 0 2M"}), 0);
  EXPECT_EQ(qemu_io("dp/q", {"read -P 0x22 0 2M"}), 0);
  ASSERT_TRUE(client_->snapshot_volume("tp", "v", "s"));
  ASSERT_EQ(qemu_io("tp/v", {"write -P 0x31 1M 1M", "flush"}), 0);
  ::kill(server_->pid(), SIGKILL);
  server_.reset();
  client_.reset();
  start();
  EXPECT_TRUE((*client_->check_pool("tp"))["clean"].get<bool>());
  EXPECT_EQ(qemu_io("tp/v", {"read -P 0x21 0 1M", "read -P 0x31 1M 1M"}), 0);
  EXPECT_EQ(qemu_io("tp/s", {"read -P 0x21 0 2M"}, Access::kReadOnly), 0);
}

TEST_F(StoragedTest, BadInputIsAClearError) {
  make_thin_pool();
  auto err = [&](const Json& r, const std::string& want) {
    std::string e = call_error(r);
    EXPECT_NE(e.find(want), std::string::npos) << r.dump() << " -> " << e;
  };
  err({{"op", "pool.create"}, {"name", "x"}, {"type", "lvm"}, {"path", path("x")}}, "dir or thin");
  err({{"op", "pool.create"}, {"name", "x"}, {"type", "dir"}, {"path", "relative"}}, "absolute");
  err({{"op", "pool.create"}, {"name", "a/b"}, {"type", "dir"}, {"path", path("x")}}, "name");
  err({{"op", "pool.create"}, {"name", ".."}, {"type", "dir"}, {"path", path("x")}}, "name");
  err({{"op", "pool.create"}, {"name", "tp"}, {"type", "dir"}, {"path", path("y")}}, "exists");
  err({{"op", "pool.create"}, {"name", "t2"}, {"type", "thin"}, {"path", path("t2")}}, "size");
  err({{"op", "pool.create"},
       {"name", "t3"},
       {"type", "thin"},
       {"path", path("t3")},
       {"size", "1M"}},
      "too small");
  err({{"op", "vol.create"}, {"pool", "tp"}, {"name", "../etc"}, {"size", "1M"}}, "name");
  err({{"op", "vol.create"}, {"pool", "tp"}, {"name", "a/b"}, {"size", "1M"}}, "name");
  err({{"op", "vol.create"}, {"pool", "tp"}, {"name", "v"}, {"size", "lots"}}, "lots");
  err({{"op", "vol.create"}, {"pool", "tp"}, {"name", "v"}, {"size", 1000}}, "multiple");
  err({{"op", "vol.create"}, {"pool", "tp"}, {"name", "v"}, {"size", "1M"}, {"format", "qcow2"}},
      "raw");
  err({{"op", "vol.create"}, {"pool", "nope"}, {"name", "v"}, {"size", "1M"}}, "not found");
  err({{"op", "vol.show"}, {"pool", "tp"}, {"name", "nope"}}, "not found");
  ASSERT_TRUE(client_->create_volume("tp", "v", 1 << 20));
  err({{"op", "pool.rm"}, {"name", "tp"}}, "still holds");
  // A pool whose metadata is destroyed comes back unavailable with the reason, not a crash.
  EXPECT_EQ(server_->stop(), 0);
  client_.reset();
  {
    std::string junk(8192, 'x');
    Fd fd(::open(path("tp.pool").c_str(), O_WRONLY));
    ASSERT_EQ(::pwrite(fd.get(), junk.data(), junk.size(), 0), ssize_t(junk.size()));
  }
  start();
  Json pools = call({{"op", "pool.ls"}});
  ASSERT_EQ(pools["pools"].size(), 1u);
  EXPECT_EQ(pools["pools"][0]["status"], "unavailable");
  EXPECT_NE(pools["pools"][0]["error"].get<std::string>().find("not a Vireo thin pool"),
            std::string::npos);
  err({{"op", "vol.ls"}, {"pool", "tp"}}, "unavailable");
  // Removing an unavailable pool forgets it but keeps its storage.
  EXPECT_TRUE(call({{"op", "pool.rm"}, {"name", "tp"}})["storage_kept"].get<bool>());
  EXPECT_TRUE(fs::exists(path("tp.pool")));
  EXPECT_EQ(call({{"op", "pool.ls"}})["pools"].size(), 0u);
  // And a removed pool leaves nothing behind.
  call({{"op", "pool.create"}, {"name", "dp"}, {"type", "dir"}, {"path", path("dirpool")}});
  call({{"op", "pool.rm"}, {"name", "dp"}});
  EXPECT_FALSE(fs::exists(path("dirpool")));
  EXPECT_FALSE(fs::exists(path("state/pools/dp.json")));
}

// vol.restore: a thin volume and a dir-pool qcow2 volume get their snapshot's content back, and
// the export serves it to new NBD connections; a non-snapshot source is refused.
TEST_F(StoragedTest, RestoreRevertsVolumesToTheirSnapshots) {
  make_thin_pool();
  call({{"op", "pool.create"}, {"name", "dp"}, {"type", "dir"}, {"path", path("dirpool")}});
  ASSERT_TRUE(client_->create_volume("tp", "v", 8 << 20));
  ASSERT_TRUE(client_->create_volume("dp", "q", 8 << 20, "qcow2"));
  for (const char* vol : {"tp/v", "dp/q"}) {
    ASSERT_EQ(qemu_io(vol, {"write -P 0x11 0 1M"}), 0);
    const std::string pool = std::string(vol).substr(0, 2), name = std::string(vol).substr(3);
    ASSERT_TRUE(client_->snapshot_volume(pool, name, name + "-s"));
    ASSERT_EQ(qemu_io(vol, {"write -P 0x22 0 64k", "write -P 0x33 4M 64k"}), 0);
    Json r =
        call({{"op", "vol.restore"}, {"pool", pool}, {"name", name}, {"snapshot", name + "-s"}});
    EXPECT_EQ(r.value("name", ""), name) << r.dump();
    EXPECT_EQ(qemu_io(vol, {"read -P 0x11 0 1M", "read -P 0 4M 64k"}), 0);
    EXPECT_EQ(qemu_io(pool + "/" + name + "-s", {"read -P 0x11 0 1M"}, Access::kReadOnly), 0);
    EXPECT_TRUE((*client_->check_pool(pool))["clean"].get<bool>());
  }
  ProcessResult c = run({"qemu-img", "check", "-U", path("dirpool/q.qcow2")});
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_NE(call_error({{"op", "vol.restore"}, {"pool", "tp"}, {"name", "v-s"}, {"snapshot", "v"}})
                .find("not a snapshot"),
            std::string::npos);
  EXPECT_NE(call_error({{"op", "vol.restore"}, {"pool", "tp"}, {"name", "v"}, {"snapshot", "nope"}})
                .find("nope"),
            std::string::npos);
  EXPECT_NE(call_error({{"op", "vol.restore"}, {"pool", "tp"}, {"name", "v"}}).find("snapshot"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(path("dirpool/.q.restore")));
}

}  // namespace
}  // namespace vireo::storage
