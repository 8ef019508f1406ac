// vireo app run: write redirection into the app's store, the store commands, isolation, and
// escapes that must end in the store (or nowhere), never on the host.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox_fixture.h"

namespace vireo::sandbox::testing {
namespace {

class RedirectTest : public SandboxTest, public ::testing::WithParamInterface<As> {};

TEST_P(RedirectTest, WritesToSystemPathsLandInTheStoreAndPersistAcrossRuns) {
  As as = GetParam();
  std::string hosts_before = slurp("/etc/hosts");
  ASSERT_FALSE(fs::exists("/etc/vireo-sbx-redirect.conf"));
  auto first = sh("redir",
                  "echo v1 > /etc/vireo-sbx-redirect.conf && echo more >> /etc/hosts && "
                  "mkdir -p /usr/share/vireo-sbx && echo d > /usr/share/vireo-sbx/data && "
                  "rm /etc/hostname && echo written",
                  as);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "written\n");
  // The host is untouched.
  EXPECT_FALSE(fs::exists("/etc/vireo-sbx-redirect.conf"));
  EXPECT_FALSE(fs::exists("/usr/share/vireo-sbx"));
  EXPECT_TRUE(fs::exists("/etc/hostname"));
  EXPECT_EQ(slurp("/etc/hosts"), hosts_before);
  // The store has the writes, and the next run sees them merged over the host.
  EXPECT_EQ(slurp(store(as, "redir") / "etc/vireo-sbx-redirect.conf"), "v1\n");
  auto second =
      sh("redir",
         "cat /etc/vireo-sbx-redirect.conf /usr/share/vireo-sbx/data; tail -1 /etc/hosts; "
         "test -e /etc/hostname || echo hostname-deleted",
         as);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "v1\nd\nmore\nhostname-deleted\n");
  // Another app sees none of it.
  auto other = sh("other", "test -e /etc/vireo-sbx-redirect.conf && echo leaked || echo clean", as);
  EXPECT_EQ(other.out, "clean\n");
}

TEST_P(RedirectTest, StoreListsDiffsAndResetsTheAppsChanges) {
  As as = GetParam();
  auto run = sh("conf",
                "echo value=1 > /etc/vireo-sbx-conf.conf && echo rc > ~/.vireo-sbx-rc && "
                "echo doc > ~/Documents/vireo-sbx-doc.txt",
                as);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // Documents in the home are shared; dot-files are the app's settings and stay in its store.
  EXPECT_EQ(slurp(home(as) / "Documents/vireo-sbx-doc.txt"), "doc\n");
  EXPECT_FALSE(fs::exists(home(as) / ".vireo-sbx-rc"));

  auto ls = vireo({"app", "store", "ls", "conf", "--format", "json"}, as);
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find("\"/etc/vireo-sbx-conf.conf\""), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("\"~/.vireo-sbx-rc\""), std::string::npos) << ls.out;
  auto diff = vireo({"app", "store", "diff", "conf"}, as);
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  EXPECT_NE(diff.out.find("+value=1"), std::string::npos) << diff.out;

  ASSERT_EQ(vireo({"app", "store", "reset", "conf", "/etc/vireo-sbx-conf.conf"}, as).exit_code, 0);
  EXPECT_EQ(
      sh("conf", "cat /etc/vireo-sbx-conf.conf 2>/dev/null || echo gone; cat ~/.vireo-sbx-rc", as)
          .out,
      "gone\nrc\n");
  ASSERT_EQ(vireo({"app", "store", "reset", "conf"}, as).exit_code, 0);
  EXPECT_EQ(sh("conf", "cat ~/.vireo-sbx-rc 2>/dev/null || echo gone", as).out, "gone\n");
  auto missing = vireo({"app", "store", "reset", "conf", "/etc/nothing-here"}, as);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no stored change"), std::string::npos) << missing.err;
}

TEST_P(RedirectTest, TheAppRunsInItsOwnNamespacesAsTheCaller) {
  As as = GetParam();
  auto r = sh("ns", "id -u; hostname; ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/pid", as);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string uid = as == As::kUser ? "65534" : "0";
  auto host_pidns = fs::read_symlink("/proc/self/ns/pid").string();
  EXPECT_TRUE(r.out.starts_with(uid + "\nns\n")) << r.out;
  EXPECT_EQ(r.out.find(host_pidns), std::string::npos) << "same pid namespace as the host";
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsUser, RedirectTest, ::testing::Values(As::kRoot, As::kUser),
                         [](const auto& info) {
                           return info.param == As::kRoot ? "Root" : "User";
                         });

TEST_F(SandboxTest, ExitStatusAndStdinPassThrough) {
  EXPECT_EQ(sh("st", "exit 7").exit_code, 7);
  EXPECT_EQ(sh("st", "kill -TERM $$").exit_code, 143);
  auto cat = vireo({"app", "run", "--name", "st", "--", "/bin/cat"}, As::kRoot, "through\n");
  EXPECT_EQ(cat.out, "through\n");
  auto missing = vireo({"app", "run", "--name", "st", "--", "/no/such/program"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.err.find("/no/such/program"), std::string::npos) << missing.err;
}

TEST_F(SandboxTest, SignalsSentToVireoReachTheApp) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<std::string> argv{"/usr/bin/env"};
  for (const auto& e : env(As::kRoot)) argv.push_back(e);
  argv.insert(argv.end(), {vireo_, "app", "run", "--name", "sig", "--", "/bin/sh", "-c",
                           "trap 'echo got-term; exit 42' TERM; echo ready; "
                           "while :; do sleep 0.1; done"});
  auto c = c_strings(argv);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, c[0], &fa, nullptr, c.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  std::string got;
  char buf[256];
  pollfd p{out[0], POLLIN, 0};
  while (got.find("ready\n") == std::string::npos && ::poll(&p, 1, 20000) == 1) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, n);
  }
  ASSERT_EQ(got, "ready\n");
  ::kill(pid, SIGTERM);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  pollfd w{pidfd, POLLIN, 0};
  ASSERT_EQ(::poll(&w, 1, 20000), 1) << "the app did not end after SIGTERM";
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(pidfd);
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) got.append(buf, n);
  ::close(out[0]);
  EXPECT_EQ(got, "ready\ngot-term\n");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) << status;
}

TEST_F(SandboxTest, EscapeAttemptsEndInTheStoreNotOnTheHost) {
  std::string passwd = slurp("/etc/passwd"), hosts = slurp("/etc/hosts");
  auto r =
      sh("escape",
         // A symlink pointing at a host file, then a write through it.
         "ln -s /etc/passwd /usr/local/vireo-sbx-evil; echo pwned >> /usr/local/vireo-sbx-evil; "
         // A hardlink to a host file, then a write through it.
         "ln /etc/hosts /etc/vireo-sbx-hardlink; echo pwned >> /etc/vireo-sbx-hardlink; "
         // Through /proc: our root, and pid 1's cwd and root.
         "echo pwned >> /proc/self/root/etc/passwd; echo pwned > /proc/1/cwd/vireo-sbx-escape; "
         "echo pwned > /proc/1/root/vireo-sbx-escape; "
         // The read-only rest of the host, and the hidden stores.
         "touch /vireo-sbx-escape /root/../vireo-sbx-escape; ls -A \"$VIREO_APPS_DIR\" | wc -l; "
         "echo done",
         As::kRoot);
  EXPECT_TRUE(r.out.ends_with("0\ndone\n")) << r.out << r.err;
  EXPECT_EQ(slurp("/etc/passwd"), passwd);
  EXPECT_EQ(slurp("/etc/hosts"), hosts);
  EXPECT_FALSE(fs::exists("/vireo-sbx-escape"));
  EXPECT_FALSE(fs::exists("/usr/local/vireo-sbx-evil"));
  EXPECT_FALSE(fs::exists("/etc/vireo-sbx-hardlink"));
  // Inside, the app sees its own version of the files it wrote through.
  EXPECT_NE(slurp(store(As::kRoot, "escape") / "etc/passwd").find("pwned"), std::string::npos);
  // The same as an unprivileged user.
  r = sh("escape",
         "echo pwned >> /etc/passwd; ln -s /etc/shadow /etc/vireo-sbx-s; "
         "cat /etc/vireo-sbx-s >/dev/null 2>&1 && echo read-shadow; echo done",
         As::kUser);
  EXPECT_EQ(r.out, "done\n") << r.err;
  EXPECT_EQ(slurp("/etc/passwd"), passwd);
}

TEST_F(SandboxTest, SetuidBinariesDoNotRaisePrivileges) {
  fs::create_directories(root_ / "suid");
  fs::copy_file("/usr/bin/id", root_ / "suid/id");
  ASSERT_EQ(::chmod((root_ / "suid/id").c_str(), 04755), 0);
  auto r = sh("suid", "/tmp/suid/id -u; /tmp/suid/id -u -r", As::kUser,
              {"--bind", (root_ / "suid").string() + ":/tmp/suid:ro"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "65534\n65534\n");
}

TEST_F(SandboxTest, SeccompCapabilitiesAndNetworkFollowTheProfile) {
  // keyctl, bpf, init_module, kexec_load, mount: refused with EPERM in every profile.
  std::string probe =
      "python3 -c 'import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
      "for nr in (250, 321, 175, 246, 165):\n"
      "    libc.syscall(nr, 0, 0, 0, 0, 0); print(nr, ctypes.get_errno())'; "
      "grep CapEff /proc/self/status; grep -c : /proc/net/dev";
  auto def = sh("prof", probe);
  ASSERT_EQ(def.exit_code, 0) << def.err;
  EXPECT_NE(def.out.find("250 1\n321 1\n175 1\n246 1\n165 1\n"), std::string::npos) << def.out;
  EXPECT_EQ(def.out.find("CapEff:\t0000000000000000"), std::string::npos)
      << "root keeps Docker's set";
  auto strict = sh("prof", probe, As::kRoot, {"--profile", "strict"});
  ASSERT_EQ(strict.exit_code, 0) << strict.err;
  EXPECT_NE(strict.out.find("CapEff:\t0000000000000000"), std::string::npos) << strict.out;
  EXPECT_TRUE(strict.out.ends_with("\n1\n")) << "strict has only lo: " << strict.out;
  auto none = sh("prof", "grep -c : /proc/net/dev; cat /sys/class/net/lo/operstate", As::kUser,
                 {"--net", "none"});
  EXPECT_EQ(none.out, "1\nunknown\n") << none.err;
}

TEST_F(SandboxTest, ConnectionGroupSeesTheOtherAppsStore) {
  ASSERT_EQ(sh("group-a", "echo from-a > /etc/vireo-sbx-group").exit_code, 0);
  EXPECT_EQ(sh("group-b", "cat /etc/vireo-sbx-group 2>/dev/null || echo none").out, "none\n");
  EXPECT_EQ(sh("group-b", "cat /etc/vireo-sbx-group", As::kRoot, {"--with", "group-a"}).out,
            "from-a\n");
  auto unknown = sh("group-b", "true", As::kRoot, {"--with", "never-ran"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no store yet"), std::string::npos) << unknown.err;
}

TEST_F(SandboxTest, MemoryLimitIsAppliedForRoot) {
  auto r = sh("mem",
              "cg=$(grep -E ':memory:|^0::' /proc/self/cgroup | head -1 | cut -d: -f3); "
              "cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes 2>/dev/null || "
              "cat /sys/fs/cgroup$cg/memory.max",
              As::kRoot, {"--memory", "64M"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "67108864\n");
}

TEST_F(SandboxTest, BadInputIsRefusedWithOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"app", "run", "--name", "../x", "--", "true"}, "app name '../x'"},
      {{"app", "run", "--name", "b", "--bind", "/nonexistent-vireo:/tmp/x", "--", "true"},
       "bind source /nonexistent-vireo"},
      {{"app", "run", "--name", "b", "--bind", "nocolon", "--", "true"}, "--bind nocolon"},
      {{"app", "run", "--name", "b", "--redirect", "/proc", "--", "true"}, "/proc cannot be"},
      {{"app", "run", "--name", "b", "--redirect", "/usr/lib", "--", "true"}, "overlaps"},
      {{"app", "run", "--name", "b", "--memory", "lots", "--", "true"}, "--memory"},
      {{"app", "store", "reset", "b", "/etc/../../root"}, "must not contain '..'"},
      {{"app", "store", "ls", "../../etc"}, "app name"},
  };
  for (const auto& c : cases) {
    auto r = vireo(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args[3];
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(fs::exists(root_ / "x"));
}

}  // namespace
}  // namespace vireo::sandbox::testing

namespace vireo::sandbox::testing {
namespace {

TEST_F(SandboxTest, TheTerminalPassesThrough) {
  // script(1) gives vireo a pseudo-terminal; the app must see it as its stdin and stdout.
  std::string cmd = "env";
  for (const auto& e : env(As::kRoot)) cmd += " " + e;
  cmd += " " + vireo_ + " app run --name tty -- sh -c 'test -t 0 && test -t 1 && tty'";
  auto r = run_process({"script", "-qec", cmd, "/dev/null"}, {.timeout = std::chrono::seconds(60)});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  EXPECT_NE(r->out.find("/dev/pts/"), std::string::npos) << r->out;
}

}  // namespace
}  // namespace vireo::sandbox::testing
