#include "runtime_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/file.h"
#include "container/default_spec.h"

extern char** environ;

namespace vireo::container::testing {

namespace fs = std::filesystem;

fs::path RuntimeTest::tmp_;
fs::path RuntimeTest::rootfs_;
std::string RuntimeTest::runtime_bin_;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string cgroup_parent() {
  return fmt::format("vireo-test-{}", ::getpid());
}

}  // namespace

Output spawn(const std::vector<std::string>& argv, const fs::path& dir, int timeout_s,
             int keep_fd) {
  static int counter = 0;
  fs::path out = dir / fmt::format("out-{}", counter), err = dir / fmt::format("err-{}", counter);
  ++counter;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  (void)keep_fd;  // inherited as is: the caller opened it without O_CLOEXEC
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  Output o;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) return o;
  posix_spawn_file_actions_destroy(&fa);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  pollfd p{pidfd, POLLIN, 0};
  if (::poll(&p, 1, timeout_s * 1000) != 1) {
    ::kill(pid, SIGKILL);
    ADD_FAILURE() << argv[0] << " " << (argv.size() > 3 ? argv[3] : "") << ": timed out";
  }
  ::close(pidfd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = slurp(out);
  o.err = slurp(err);
  fs::remove(out);
  fs::remove(err);
  return o;
}

void RuntimeTest::SetUpTestSuite() {
  const char* bin = ::getenv("VIREO_BIN_DIR");
  runtime_bin_ = fmt::format("{}/vireo-runtime", bin ? bin : "build/bin");
  tmp_ = fs::temp_directory_path() / fmt::format("vireo-runtime-test-{}", ::getpid());
  rootfs_ = tmp_ / "rootfs";
  fs::create_directories(rootfs_ / "bin");
  for (const char* d : {"proc", "sys", "dev", "tmp", "etc", "root"})
    fs::create_directories(rootfs_ / d);
  fs::copy_file("/bin/busybox", rootfs_ / "bin/busybox");
  for (const char* applet :
       {"sh",    "true", "false", "echo", "cat", "ls",   "sleep", "hostname", "id",
        "touch", "dd",   "grep",  "head", "wc",  "seq",  "kill",  "readlink", "stat",
        "umask", "pwd",  "env",   "sort", "tr",  "test", "mount", "ps",       "wait"})
    fs::create_symlink("busybox", rootfs_ / "bin" / applet);
  std::ofstream(rootfs_ / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n";
  std::ofstream(rootfs_ / "etc/group") << "root:x:0:\n";
}

void RuntimeTest::TearDownTestSuite() {
  for (const auto& entry : fs::directory_iterator("/sys/fs/cgroup")) {
    fs::path parent = entry.path() / cgroup_parent();
    if (fs::exists(parent)) ::rmdir(parent.c_str());
  }
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers"))
    ::rmdir(("/sys/fs/cgroup/" + cgroup_parent()).c_str());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void RuntimeTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  root_ = tmp_ / fmt::format("{}.{}", info->test_suite_name(), info->name());
  fs::create_directories(root_ / "state");
}

void RuntimeTest::TearDown() {
  for (const auto& id : created_) runtime({"delete", "--force", id});
  for (const auto& id : created_) {
    EXPECT_FALSE(state_dir_exists(id)) << id;
    EXPECT_FALSE(any_cgroup_exists(id)) << id;
  }
  EXPECT_FALSE(rootfs_is_mounted());
  std::error_code ec;
  fs::remove_all(root_, ec);
}

Json RuntimeTest::config(std::vector<std::string> args) const {
  Json c = default_spec();
  c["root"]["path"] = rootfs_.string();
  c["process"]["terminal"] = false;
  c["process"]["args"] = args;
  c["hostname"] = "vireo-test";
  c["linux"]["cgroupsPath"] = fmt::format("/{}/placeholder", cgroup_parent());
  c["mounts"].push_back(Json{{"destination", "/tmp"},
                             {"type", "tmpfs"},
                             {"source", "tmpfs"},
                             {"options", {"nosuid", "nodev", "size=8m"}}});
  return c;
}

std::string RuntimeTest::new_id() {
  static int counter = 0;
  std::string id = fmt::format("vt-{}-{}", ::getpid(), counter++);
  created_.push_back(id);
  return id;
}

fs::path RuntimeTest::bundle(Json config, const std::string& id) {
  config["linux"]["cgroupsPath"] = fmt::format("/{}/{}", cgroup_parent(), id);
  fs::path dir = root_ / fmt::format("bundle{}", bundles_++);
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

Output RuntimeTest::runtime(const std::vector<std::string>& args, int timeout_s) const {
  std::vector<std::string> argv = {runtime_bin_, "--root", (root_ / "state").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return spawn(argv, root_, timeout_s);
}

Output RuntimeTest::runc(const std::vector<std::string>& args, int timeout_s) const {
  std::vector<std::string> argv = {"/usr/sbin/runc", "--root", (root_ / "runc-state").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return spawn(argv, root_, timeout_s);
}

Output RuntimeTest::run(const Json& c) {
  std::string id = new_id();
  return runtime({"run", "--bundle", bundle(c, id).string(), id});
}

std::string RuntimeTest::cgroup_dir(const std::string& id, const std::string& controller) const {
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers"))
    return fmt::format("/sys/fs/cgroup/{}/{}", cgroup_parent(), id);
  return fmt::format("/sys/fs/cgroup/{}/{}/{}", controller, cgroup_parent(), id);
}

bool RuntimeTest::state_dir_exists(const std::string& id) const {
  return fs::exists(root_ / "state" / id);
}

bool RuntimeTest::any_cgroup_exists(const std::string& id) const {
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) return fs::exists(cgroup_dir(id, ""));
  for (const auto& entry : fs::directory_iterator("/sys/fs/cgroup"))
    if (fs::exists(entry.path() / cgroup_parent() / id)) return true;
  return false;
}

bool RuntimeTest::rootfs_is_mounted() const {
  return slurp("/proc/self/mountinfo").find(rootfs_.string()) != std::string::npos;
}

}  // namespace vireo::container::testing
