// vireod: the Vireo host daemon. Serves the REST API on a Unix socket (and optionally TCP+TLS)
// and manages tokens and trusted certificates for remote clients.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "base/fd.h"
#include "base/file.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "daemon/daemon.h"
#include "store/store.h"

using namespace vireo;

namespace {

int fail(const Error& e) {
  std::cerr << "vireod: " << e.message() << "\n";
  return 1;
}

// Detaches into the background. The parent returns only when the child is serving (or has
// failed), so that a script can use the socket right after `vireod` returns.
Result<bool> daemonize(const std::filesystem::path& log_file, int& ready_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe");
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork");
  if (pid > 0) {
    ::close(fds[1]);
    char status = 1;
    ssize_t n = ::read(fds[0], &status, 1);
    return n == 1 && status == 0;  // parent: true on success
  }
  ::close(fds[0]);
  ::setsid();
  if (::fork() > 0) ::_exit(0);
  int null = ::open("/dev/null", O_RDWR);
  int log = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  ::dup2(null, 0);
  ::dup2(log >= 0 ? log : null, 1);
  ::dup2(log >= 0 ? log : null, 2);
  ready_fd = fds[1];
  return make_error(ErrorCode::kInternal, "child");  // marks "this is the daemon process"
}

int serve(daemon::DaemonConfig config, bool foreground) {
  int ready_fd = -1;
  if (!foreground) {
    if (auto r = make_dirs(config.root, 0711); !r) return fail(r.error());
    auto parent = daemonize(config.root / "vireod.log", ready_fd);
    if (parent) {
      if (!*parent) {
        std::cerr << "vireod: failed to start; see " << (config.root / "vireod.log").string()
                  << "\n";
        return 1;
      }
      std::cout << "vireod is running (socket " << config.socket << ", log "
                << (config.root / "vireod.log").string() << ")\n";
      return 0;
    }
  }
  auto report = [&](char status) {
    if (ready_fd >= 0) {
      [[maybe_unused]] auto n = ::write(ready_fd, &status, 1);
      ::close(ready_fd);
      ready_fd = -1;
    }
  };
  auto d = daemon::Daemon::create(config);
  if (!d) {
    report(1);
    return fail(d.error());
  }
  auto pidfile = config.root / "vireod.pid";
  auto ran = (*d)->run([&] {
    (void)write_file_atomic(pidfile, std::to_string(::getpid()) + "\n");
    report(0);
  });
  ::unlink(pidfile.c_str());
  if (!ran) {
    report(1);
    return fail(ran.error());
  }
  return 0;
}

Result<std::unique_ptr<store::Store>> open_store(const std::filesystem::path& root) {
  TRY(make_dirs(root, 0711));
  return store::Store::open(daemon::database_path(root));
}

Result<void> token_create(const std::filesystem::path& root, const std::string& name) {
  auto store = TRY(open_store(root));
  std::string token = "vireo_" + random_hex(24);
  TRY(store->add_token(name, sha256_hex(token)));
  std::cout << token << "\n";
  return {};
}

Result<void> token_list(const std::filesystem::path& root) {
  auto store = TRY(open_store(root));
  for (const auto& t : TRY(store->list_tokens()))
    std::cout << t.name << "\t" << t.created_at << "\n";
  return {};
}

Result<void> token_delete(const std::filesystem::path& root, const std::string& name) {
  auto store = TRY(open_store(root));
  return store->delete_token(name);
}

Result<void> trust_add(const std::filesystem::path& root, const std::string& cert,
                       const std::string& name) {
  auto out =
      TRY(run_process({"openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"}));
  if (!out.ok())
    return make_error(ErrorCode::kInvalidArgument, "{} is not a PEM certificate: {}", cert,
                      std::string(trim(out.err)));
  // "sha256 Fingerprint=AB:CD:..." → "abcd..."
  std::string fp;
  for (char c : out.out.substr(out.out.find('=') + 1))
    if (std::isxdigit(static_cast<unsigned char>(c))) fp += static_cast<char>(std::tolower(c));
  auto store = TRY(open_store(root));
  TRY(store->add_trusted_certificate(name.empty() ? cert : name, fp));
  std::cout << "trusted " << fp << "\n";
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vireod: the Vireo host daemon"};
  app.set_version_flag("--version", VIREO_VERSION_STRING);
  daemon::DaemonConfig config;
  std::string root = config.root;
  bool foreground = false;
  std::string log_level = "info";
  app.add_option("--root", root, "State directory")->capture_default_str();
  app.add_option("--socket", config.socket, "Unix socket path")->capture_default_str();
  app.add_option("--listen", config.listen, "Also serve HTTPS on HOST:PORT");
  app.add_option("--tls-cert", config.tls_cert, "Server certificate (PEM) for --listen");
  app.add_option("--tls-key", config.tls_key, "Server private key (PEM) for --listen");
  app.add_flag("--foreground", foreground, "Stay in the foreground, log to stderr");
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_flag("--enable-debug-api", config.debug_api, "Serve /1.0/debug test hooks");
  app.add_option("--vxlan-local", config.vxlan_local,
                 "This host's VTEP address, passed to the vireo-netd vireod starts");

  auto* token = app.add_subcommand("token", "Manage API tokens for remote clients");
  std::string token_name;
  auto* token_create_cmd = token->add_subcommand("create", "Create a token and print it once");
  token_create_cmd->add_option("--name", token_name, "Token name")->required();
  auto* token_ls = token->add_subcommand("ls", "List token names");
  auto* token_rm = token->add_subcommand("rm", "Delete a token");
  token_rm->add_option("name", token_name)->required();
  token->require_subcommand(1);

  auto* trust = app.add_subcommand("trust", "Trust client certificates for TLS");
  std::string cert_file, cert_name;
  auto* trust_add_cmd = trust->add_subcommand("add", "Trust a client certificate");
  trust_add_cmd->add_option("cert", cert_file, "PEM certificate")
      ->required()
      ->check(CLI::ExistingFile);
  trust_add_cmd->add_option("--name", cert_name, "Name to remember it by");
  trust->require_subcommand(1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  config.root = root;
  LogLevel level = log_level == "debug"   ? LogLevel::kDebug
                   : log_level == "warn"  ? LogLevel::kWarn
                   : log_level == "error" ? LogLevel::kError
                                          : LogLevel::kInfo;
  init_logging(level);

  Result<void> r;
  if (*token_create_cmd)
    r = token_create(config.root, token_name);
  else if (*token_ls)
    r = token_list(config.root);
  else if (*token_rm)
    r = token_delete(config.root, token_name);
  else if (*trust_add_cmd)
    r = trust_add(config.root, cert_file, cert_name);
  else
    return serve(config, foreground);
  return r ? 0 : fail(r.error());
}
