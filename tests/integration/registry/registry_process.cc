#include "registry_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "base/file.h"
#include "base/json.h"

namespace vireo::registry::testing {

namespace {

std::vector<std::string> registry_args(const fs::path& root,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--root", root.string(), "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace

RegistryProcess::RegistryProcess(const fs::path& root, const std::vector<std::string>& extra)
    : ReadyProcess("vireo-registry", registry_args(root, extra)) {
  auto colon = ready_line().rfind(':');
  if (ReadyProcess::ready() && colon != std::string::npos)
    port_ = uint16_t(std::atoi(ready_line().c_str() + colon + 1));
}

Listener listen_loopback() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 16) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return {};
  }
  return {fd, ntohs(a.sin_port)};
}

uint16_t unused_port() {
  Listener l = listen_loopback();
  if (l.fd >= 0) ::close(l.fd);
  return l.port;
}

ProcessResult skopeo(std::vector<std::string> args) {
  args.insert(args.begin(), {"skopeo", "--insecure-policy"});
  return run(args);
}

std::string make_umoci_layout(const fs::path& dir, const fs::path& scratch) {
  std::string img = dir.string() + ":t";
  fs::path files = scratch / "files";
  fs::create_directories(files / "bin");
  fs::copy_file("/bin/busybox", files / "bin" / "busybox", fs::copy_options::overwrite_existing);
  if (!write_file_atomic(files / "hello.txt", "hello from vireo\n")) return "write hello.txt";
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"umoci", "init", "--layout", dir.string()},
           {"umoci", "new", "--image", img},
           {"umoci", "insert", "--image", img, (files / "bin").string(), "/bin"},
           {"umoci", "insert", "--image", img, (files / "hello.txt").string(), "/hello.txt"}}) {
    auto r = run(argv);
    if (!r.ok()) return argv[1] + ": " + r.err;
  }
  return {};
}

std::string layout_digest(const fs::path& layout) {
  auto text = read_file(layout / "index.json");
  if (!text) return {};
  auto j = parse_json(*text);
  if (!j) return {};
  return (*j)["manifests"][0]["digest"].get<std::string>();
}

}  // namespace vireo::registry::testing
