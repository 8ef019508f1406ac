// What the process inside sees: namespaces, limits, masked and read-only paths, and the same
// view under runc for the same bundle.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "runtime_fixture.h"

namespace vireo::container::testing {
namespace {

namespace fs = std::filesystem;

bool unified_host() {
  return fs::exists("/sys/fs/cgroup/cgroup.controllers");
}

TEST_F(RuntimeTest, HostnameAndPidNamespaceAreTheContainers) {
  Output o = run(config({"/bin/sh", "-c", "hostname; echo $$"}));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "vireo-test\n1\n");
}

TEST_F(RuntimeTest, MemoryAndPidsLimitsAreInEffect) {
  std::string mem_file =
      unified_host() ? "/sys/fs/cgroup/memory.max" : "/sys/fs/cgroup/memory/memory.limit_in_bytes";
  std::string pids_file =
      unified_host() ? "/sys/fs/cgroup/pids.max" : "/sys/fs/cgroup/pids/pids.max";
  Json c = config({"/bin/sh", "-c", "cat " + mem_file + " " + pids_file});
  c["linux"]["resources"]["memory"] = {{"limit", 33554432}, {"swap", 33554432}};
  c["linux"]["resources"]["pids"] = {{"limit", 8}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "33554432\n8\n");

  // Enforced, not only written: forking past the pids limit fails...
  c["process"]["args"] = {"/bin/sh", "-c",
                          "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 0.3 & done; wait"};
  o = run(c);
  EXPECT_NE(o.err.find("can't fork"), std::string::npos) << o.err;
  // ... and a 64 MiB buffer under a 32 MiB limit is OOM-killed (SIGKILL, 128+9).
  c["process"]["args"] = {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"};
  o = run(c);
  EXPECT_EQ(o.exit_code, 137) << o.err;
}

TEST_F(RuntimeTest, MaskedPathsAreEmpty) {
  Json c = config({"/bin/sh", "-c", "wc -c < /proc/timer_list; ls /etc | wc -l"});
  c["linux"]["maskedPaths"].push_back("/etc");
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "0\n0\n");
}

TEST_F(RuntimeTest, ReadonlyRootAndReadonlyPathsRefuseWrites) {
  Output o = run(config({"/bin/sh", "-c",
                         "touch /newfile 2>/dev/null && echo root-writable; "
                         "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable; "
                         "touch /tmp/ok && echo tmp-writable"}));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "tmp-writable\n");
}

TEST_F(RuntimeTest, DevicesAndDevLinksExist) {
  Output o = run(config({"/bin/sh", "-c",
                         "for d in null zero full random urandom tty; do test -c /dev/$d || "
                         "echo missing $d; done; readlink /dev/fd; readlink /dev/ptmx; "
                         "echo x > /dev/null && head -c 4 /dev/zero | wc -c"}));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "/proc/self/fd\npts/ptmx\n4\n");
}

// A non-root process keeps capabilities across exec only through the ambient set.
TEST_F(RuntimeTest, UserGroupsUmaskAndCapabilities) {
  Json c = config({"/bin/sh", "-c",
                   "id; umask; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"});
  c["process"]["user"] = {{"uid", 1000}, {"gid", 1000}, {"additionalGids", {2000}}, {"umask", 077}};
  c["process"]["capabilities"] = {{"bounding", {"CAP_KILL", "CAP_CHOWN"}},
                                  {"effective", {"CAP_KILL"}},
                                  {"permitted", {"CAP_KILL"}},
                                  {"inheritable", {"CAP_KILL"}},
                                  {"ambient", {"CAP_KILL"}}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out,
            "uid=1000 gid=1000 groups=2000\n0077\nCapEff:\t0000000000000020\n"
            "CapBnd:\t0000000000000021\nNoNewPrivs:\t1\nSeccomp:\t2\n");
}

TEST_F(RuntimeTest, SeccompRulesAreEnforced) {
  Json c = config({"/bin/sh", "-c", "mkdir /tmp/x 2>&1; echo $?"});
  c["linux"]["seccomp"] = {
      {"defaultAction", "SCMP_ACT_ALLOW"},
      {"syscalls",
       {{{"names", {"mkdir", "mkdirat"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 38}}}}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "mkdir: can't create directory '/tmp/x': Function not implemented\n1\n");
}

TEST_F(RuntimeTest, UserNamespaceMapsRootToAnUnprivilegedHostId) {
  Json c = config({"/bin/sh", "-c", "id; cat /proc/self/uid_map; stat -c %u /bin/busybox"});
  c["linux"]["namespaces"].push_back({{"type", "user"}});
  c["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
  c["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
  Output o = run(c);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  // Host root's files show up as the overflow uid: container root is not host root.
  EXPECT_EQ(o.out, "uid=0(root) gid=0(root)\n         0     100000      65536\n65534\n");
}

TEST_F(RuntimeTest, NoPivotUsesMoveAndChroot) {
  std::string id = new_id();
  Output o = runtime(
      {"run", "--no-pivot", "--bundle",
       bundle(config({"/bin/sh", "-c", "hostname; ls /proc/1/root/bin | wc -l"}), id).string(),
       id});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(o.out.starts_with("vireo-test\n")) << o.out;
}

// Receives one fd sent with SCM_RIGHTS on an accepted connection of listener.
int receive_fd(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 10000) != 1) return -1;
  int conn = ::accept(listener, nullptr, nullptr);
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  int fd = -1;
  if (::recvmsg(conn, &msg, 0) > 0 && CMSG_FIRSTHDR(&msg))
    std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
  ::close(conn);
  return fd;
}

TEST_F(RuntimeTest, TerminalMasterIsSentToTheConsoleSocket) {
  std::string sock_path = (root_ / "console.sock").string();
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, sock_path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  Json c = config({"/bin/sh", "-c", "test -t 0 && test -t 1 && echo tty-ok"});
  c["process"]["terminal"] = true;
  std::string id = new_id();
  ASSERT_EQ(
      runtime({"create", "--console-socket", sock_path, "--bundle", bundle(c, id).string(), id})
          .exit_code,
      0);
  int master = receive_fd(listener);
  ::close(listener);
  ASSERT_GE(master, 0);
  ASSERT_EQ(runtime({"start", id}).exit_code, 0);
  std::string out;
  char buf[256];
  pollfd p{master, POLLIN, 0};
  while (out.find("tty-ok") == std::string::npos && ::poll(&p, 1, 10000) == 1) {
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  EXPECT_NE(out.find("tty-ok"), std::string::npos) << out;
}

// The same bundle under runc and vireo-runtime: the process must see the same things.
TEST_F(RuntimeTest, SameBundleSameResultsAsRunc) {
  const char* probe =
      "id; hostname; echo pid=$$; pwd; umask; ulimit -n; "
      "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; "
      "wc -c < /proc/kcore; ls /dev | sort | tr '\\n' ' '; echo; "
      "touch / 2>/dev/null || echo ro; ls /proc/self/fd | wc -l; exit 3";
  Json c = config({"/bin/sh", "-c", probe});
  std::string vid = new_id(), rid = new_id();
  Output mine = runtime({"run", "--bundle", bundle(c, vid).string(), vid});
  Output theirs = runc({"run", "--bundle", bundle(c, rid).string(), rid});
  EXPECT_EQ(theirs.exit_code, 3) << theirs.err;
  EXPECT_EQ(mine.exit_code, theirs.exit_code) << mine.err;
  EXPECT_EQ(mine.out, theirs.out);
}

}  // namespace
}  // namespace vireo::container::testing
