// vireo-runtime: an OCI runtime with runc's command line, so engines (podman, containerd,
// vireod) and test harnesses can call it in runc's place.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "base/strings.h"
#include "base/time.h"
#include "container/config_parse.h"
#include "container/default_spec.h"
#include "container/runtime.h"
#include "container/sealed_exe.h"

namespace {

using namespace vireo;
using namespace vireo::container;

// Root keeps state in /run; an unprivileged user in its own runtime directory, as runc does.
std::string default_root() {
  const char* xdg = ::getenv("XDG_RUNTIME_DIR");
  if (::geteuid() != 0 && xdg && *xdg) return std::string(xdg) + "/vireo-runtime";
  if (::geteuid() != 0) return fmt::format("/tmp/vireo-runtime-{}", ::geteuid());
  return "/run/vireo-runtime";
}

struct Globals {
  std::string root = default_root();
  std::string log_file;
  std::string log_format = "text";
  bool debug = false;
  bool systemd_cgroup = false;
  std::string rootless;
};

// One clear line on stderr, and in the --log file (JSON when asked, as engines parse it).
void report_error(const Globals& g, const std::string& message) {
  fmt::print(stderr, "vireo-runtime: {}\n", message);
  if (g.log_file.empty()) return;
  if (FILE* f = std::fopen(g.log_file.c_str(), "ae")) {
    if (g.log_format == "json")
      fmt::print(f, "{}\n",
                 dump_json(Json{{"level", "error"}, {"msg", message}, {"time", now_timestamp()}}));
    else
      fmt::print(f, "{} error {}\n", now_timestamp(), message);
    std::fclose(f);
  }
}

// "1000" or "1000:1000" (numeric only: names would be resolved in the container's /etc).
Result<std::pair<uid_t, gid_t>> parse_user(const std::string& text) {
  auto parts = split(text, ':');
  std::vector<unsigned long> ids;
  for (const auto& p : parts) {
    char* end = nullptr;
    unsigned long v = std::strtoul(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || v > UINT32_MAX || parts.size() > 2)
      return make_error(ErrorCode::kInvalidArgument, "--user \"{}\": expected UID[:GID]", text);
    ids.push_back(v);
  }
  uid_t uid = static_cast<uid_t>(ids[0]);
  return std::make_pair(uid, ids.size() > 1 ? static_cast<gid_t>(ids[1]) : uid);
}

int finish(const Globals& g, const Result<void>& r) {
  if (r) return 0;
  report_error(g, r.error().message());
  return 1;
}

Result<Resources> resources_from_file(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    text = TRY(read_file(path));
  }
  Json j = TRY(parse_json(text));
  JsonFields f("--resources", nullptr);
  return parse_resources(f, j, "resources");
}

struct UpdateFlags {
  std::string resources_file;
  std::optional<int64_t> memory, memory_reservation, memory_swap, pids_limit, cpu_quota;
  std::optional<uint64_t> cpu_period, cpu_shares;
  std::string cpuset_cpus, cpuset_mems;
};

Result<Resources> update_resources(const UpdateFlags& u) {
  Resources r;
  if (!u.resources_file.empty()) r = TRY(resources_from_file(u.resources_file));
  if (u.memory) r.memory_limit = u.memory;
  if (u.memory_reservation) r.memory_reservation = u.memory_reservation;
  if (u.memory_swap) r.memory_swap = u.memory_swap;
  if (u.pids_limit) r.pids_limit = u.pids_limit;
  if (u.cpu_quota) r.cpu_quota = u.cpu_quota;
  if (u.cpu_period) r.cpu_period = u.cpu_period;
  if (u.cpu_shares) r.cpu_shares = u.cpu_shares;
  if (!u.cpuset_cpus.empty()) r.cpuset_cpus = u.cpuset_cpus;
  if (!u.cpuset_mems.empty()) r.cpuset_mems = u.cpuset_mems;
  return r;
}

void print_list(const std::vector<Json>& list, const std::string& format, bool quiet) {
  if (format == "json") {
    fmt::print("{}\n", dump_json(Json(list)));
    return;
  }
  if (quiet) {
    for (const auto& c : list) fmt::print("{}\n", c["id"].get<std::string>());
    return;
  }
  fmt::print("{:<24}{:<10}{:<10}{:<40}{:<26}{}\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED",
             "OWNER");
  for (const auto& c : list)
    fmt::print("{:<24}{:<10}{:<10}{:<40}{:<26}{}\n", c["id"].get<std::string>(),
               c["pid"].get<int>(), c["status"].get<std::string>(), c["bundle"].get<std::string>(),
               c["created"].get<std::string>(), "root");
}

Result<void> write_spec(const std::string& bundle, bool rootless) {
  std::filesystem::path path = std::filesystem::path(bundle) / "config.json";
  if (std::filesystem::exists(path))
    return make_error(ErrorCode::kAlreadyExists, "{} already exists; remove it first",
                      path.string());
  SpecOptions o{rootless, ::getuid(), ::getgid()};
  return write_file_atomic(path, default_spec(o).dump(2) + "\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vireo-runtime: an OCI container runtime"};
  app.set_version_flag("-v,--version",
                       "vireo-runtime version 0.1.0\nspec: 1.2.0\nlibseccomp: 2.5.4");
  app.require_subcommand(1);
  Globals g;
  app.add_option("--root", g.root, "state directory")->capture_default_str();
  app.add_option("--log", g.log_file, "log file (errors are also printed on stderr)");
  app.add_option("--log-format", g.log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--debug", g.debug, "debug logging");
  app.add_flag("--systemd-cgroup", g.systemd_cgroup,
               "cgroupsPath is slice:prefix:name (mapped to a plain cgroup path)");
  app.add_option("--rootless", g.rootless, "accepted for runc compatibility");
  app.add_option("--criu", g.rootless, "accepted for runc compatibility");

  CreateOptions co;
  std::string id, signal = "SIGTERM";
  bool detach = false, force = false, all = false, quiet = false, ignored = false;
  std::string format = "table", spec_bundle = ".";
  bool spec_rootless = false;
  auto add_create_flags = [&](CLI::App* cmd) {
    cmd->add_option("-b,--bundle", co.bundle, "bundle directory");
    cmd->add_option("--pid-file", co.pid_file, "write the init's pid here");
    cmd->add_option("--console-socket", co.console_socket, "unix socket to receive the pty master");
    cmd->add_flag("--no-pivot", co.no_pivot, "use MS_MOVE + chroot instead of pivot_root");
    cmd->add_option("--preserve-fds", co.preserve_fds, "pass N extra fds from 3 on");
    cmd->add_flag("--no-new-keyring", ignored, "accepted for runc compatibility");
    cmd->add_option("id", id)->required();
  };
  auto* create = app.add_subcommand("create", "create a container");
  add_create_flags(create);
  auto* run = app.add_subcommand("run", "create, start and wait for a container");
  add_create_flags(run);
  run->add_flag("-d,--detach", detach, "return once started");
  auto* start = app.add_subcommand("start", "start a created container");
  start->add_option("id", id)->required();
  auto* state = app.add_subcommand("state", "print the OCI state");
  state->add_option("id", id)->required();
  auto* kill = app.add_subcommand("kill", "signal the container");
  kill->add_flag("-a,--all", all, "signal every process in the container");
  kill->add_option("id", id)->required();
  kill->add_option("signal", signal, "name or number (default SIGTERM)");
  auto* del = app.add_subcommand("delete", "delete a stopped container");
  del->add_flag("-f,--force", force, "kill it first if it runs");
  del->add_option("id", id)->required();
  auto* list = app.add_subcommand("list", "list containers");
  list->add_option("-f,--format", format)->check(CLI::IsMember({"table", "json"}));
  list->add_flag("-q,--quiet", quiet, "IDs only");
  auto* ps = app.add_subcommand("ps", "list the container's processes");
  ps->add_option("-f,--format", format)->check(CLI::IsMember({"table", "json"}));
  ps->add_option("id", id)->required();
  auto* pause = app.add_subcommand("pause", "freeze the container");
  pause->add_option("id", id)->required();
  auto* resume = app.add_subcommand("resume", "thaw the container");
  resume->add_option("id", id)->required();
  UpdateFlags uf;
  auto* update = app.add_subcommand("update", "change resource limits live");
  update->add_option("-r,--resources", uf.resources_file, "linux.resources JSON file, - for stdin");
  update->add_option("--memory", uf.memory);
  update->add_option("--memory-reservation", uf.memory_reservation);
  update->add_option("--memory-swap", uf.memory_swap);
  update->add_option("--pids-limit", uf.pids_limit);
  update->add_option("--cpu-quota", uf.cpu_quota);
  update->add_option("--cpu-period", uf.cpu_period);
  update->add_option("--cpu-share", uf.cpu_shares);
  update->add_option("--cpuset-cpus", uf.cpuset_cpus);
  update->add_option("--cpuset-mems", uf.cpuset_mems);
  update->add_option("id", id)->required();
  ExecOptions eo;
  std::string exec_user;
  auto* exec = app.add_subcommand("exec", "run another process in a running container");
  exec->add_flag("-t,--tty", eo.tty, "give the process a pty (needs --console-socket)");
  exec->add_option("-p,--process", eo.process_file, "process.json to run");
  exec->add_option("--console-socket", eo.console_socket, "unix socket to receive the pty master");
  exec->add_option("--pid-file", eo.pid_file, "write the process's pid here");
  exec->add_flag("-d,--detach", eo.detach, "do not wait for the process");
  exec->add_option("--cwd", eo.cwd, "working directory in the container");
  exec->add_option("-e,--env", eo.env, "K=V added to the environment")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  exec->add_option("-u,--user", exec_user, "uid[:gid]");
  exec->add_option("--preserve-fds", eo.preserve_fds, "pass N extra fds from 3 on");
  exec->add_option("id", id)->required();
  exec->add_option("args", eo.args, "command and arguments (after --)");
  auto* spec = app.add_subcommand("spec", "write a default config.json");
  spec->add_option("-b,--bundle", spec_bundle);
  spec->add_flag("--rootless", spec_rootless);
  auto* feats = app.add_subcommand("features", "print the supported features as JSON");

  CLI11_PARSE(app, argc, argv);
  init_logging(g.debug ? LogLevel::kDebug : LogLevel::kWarn, g.log_file);
  // Before any container process exists: see sealed_exe.h.
  if (create->parsed() || run->parsed() || exec->parsed()) {
    if (auto r = ensure_sealed_exe(argv, g.root); !r) return finish(g, r);
  }
  Runtime rt(RuntimeOptions{g.root, g.systemd_cgroup});

  if (create->parsed()) return finish(g, rt.create(id, co));
  if (start->parsed()) return finish(g, rt.start(id));
  if (run->parsed()) {
    auto code = rt.run(id, co, detach);
    if (!code) return finish(g, std::unexpected(code.error()));
    return *code;
  }
  if (state->parsed()) {
    auto j = rt.state(id);
    if (!j) return finish(g, std::unexpected(j.error()));
    fmt::print("{}\n", j->dump(2));
    return 0;
  }
  if (kill->parsed()) {
    auto sig = parse_signal(signal);
    if (!sig) return finish(g, std::unexpected(sig.error()));
    return finish(g, rt.kill(id, *sig, all));
  }
  if (del->parsed()) return finish(g, rt.remove(id, force));
  if (list->parsed()) {
    auto l = rt.list();
    if (!l) return finish(g, std::unexpected(l.error()));
    print_list(*l, format, quiet);
    return 0;
  }
  if (ps->parsed()) {
    auto pids = rt.ps(id);
    if (!pids) return finish(g, std::unexpected(pids.error()));
    if (format == "json")
      fmt::print("{}\n", Json(*pids).dump());
    else
      for (pid_t p : *pids) fmt::print("{}\n", p);
    return 0;
  }
  if (pause->parsed()) return finish(g, rt.pause(id));
  if (resume->parsed()) return finish(g, rt.resume(id));
  if (update->parsed()) {
    auto r = update_resources(uf);
    if (!r) return finish(g, std::unexpected(r.error()));
    return finish(g, rt.update(id, *r));
  }
  if (exec->parsed()) {
    if (!exec_user.empty()) {
      auto user = parse_user(exec_user);
      if (!user) return finish(g, std::unexpected(user.error()));
      eo.user = *user;
    }
    auto code = rt.exec(id, eo);
    if (!code) return finish(g, std::unexpected(code.error()));
    return *code;
  }
  if (spec->parsed()) return finish(g, write_spec(spec_bundle, spec_rootless));
  if (feats->parsed()) {
    fmt::print("{}\n", features().dump(2));
    return 0;
  }
  return 0;
}
