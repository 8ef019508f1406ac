// Engine::attach: a connection to the attach socket of a container's vireo-monitor, awaited
// through a start when the container does not run yet.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "base/file.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace {

// While waiting, the state is looked at again this often: the end of a run (another run may
// start) raises no event in the monitor directory.
constexpr std::chrono::milliseconds kRecheck{100};

enum class Connect { kConnected, kNobody };

// Connects to dir/attach.sock; kNobody when no monitor listens there (no socket, or a stale one).
Result<Connect> connect_socket(const std::string& dir, Fd& out) {
  std::string path = dir + "/attach.sock";
  Fd dirfd;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    // Too long for sockaddr_un: the same file through our fd of the directory.
    dirfd = Fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd) return errno_error("open " + dir);
    path = fmt::format("/proc/self/fd/{}/attach.sock", dirfd.get());
  }
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return errno_error("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return Connect::kNobody;
    return errno_error(fmt::format("connect {}/attach.sock", dir));
  }
  out = std::move(s);
  return Connect::kConnected;
}

void drain(int fd) {
  char buf[4096];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

}  // namespace

Result<Fd> Engine::attach(const std::string& name, std::chrono::milliseconds timeout,
                          std::stop_token stop, const std::function<void()>& watching) {
  auto r = TRY(impl_->find(name));
  const std::string dir = monitor_dir(*r);
  // The monitor makes its socket in this directory; watch it before looking, so that a socket
  // made in between is not missed.
  TRY(make_dirs(dir, 0700));
  Fd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) return errno_error("inotify_init1");
  if (::inotify_add_watch(inotify.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0)
    return errno_error("inotify_add_watch " + dir);
  Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return errno_error("eventfd");
  std::stop_callback on_stop(stop, [&wake] {
    uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  });
  const auto deadline = Clock::now() + timeout;
  bool told = false;
  for (;;) {
    State state;
    bool removed;
    std::string cname;
    {
      std::lock_guard lock(impl_->mu);
      state = r->c.state;
      removed = r->removed;
      cname = r->c.name;
    }
    if (removed) return make_error(ErrorCode::kNotFound, "container {} was removed", cname);
    if (state == State::kExited)
      return make_error(ErrorCode::kConflict, "container {} is not running", cname);
    // Created or restarting: a monitor starting it may already listen.
    Fd fd;
    if (TRY(connect_socket(dir, fd)) == Connect::kConnected) return fd;
    if (!told && watching) watching();
    told = true;
    if (stop.stop_requested())
      return make_error(ErrorCode::kCancelled, "attach to {}: cancelled", cname);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return make_error(ErrorCode::kTimeout, "container {} did not start in time", cname);
    pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min(left, kRecheck).count()));
    if (n < 0 && errno != EINTR) return errno_error("poll");
    drain(inotify.get());
  }
}

}  // namespace vireo::containers
