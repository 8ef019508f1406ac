// vireo app: application virtualization without the daemon — run an app in a sandbox whose
// writes to system paths land in the app's own store, inspect and reset that store, and pack
// an app with its libraries into one verified file.
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/strings.h"
#include "base/subprocess.h"
#include "cli/context.h"
#include "sandbox/app_store.h"
#include "sandbox/sandbox.h"

namespace vireo::cli {

namespace {

namespace sb = vireo::sandbox;

struct AppFlags {
  std::string name, net, profile = "default", memory, output, path;
  std::vector<std::string> binds, with, redirect, env, includes, command;
};

Result<sb::Bind> parse_bind(const std::string& text) {
  auto parts = split(text, ':');
  if (parts.size() < 2 || parts.size() > 3 ||
      (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw"))
    return make_error(ErrorCode::kInvalidArgument, "--bind {}: use HOST:PATH or HOST:PATH:ro",
                      text);
  return sb::Bind{parts[0], parts[1], parts.size() == 3 && parts[2] == "ro"};
}

Result<void> apply_common(const AppFlags& f, sb::SandboxSpec& spec) {
  if (!f.name.empty()) spec.name = f.name;
  if (f.profile == "strict") spec.profile = sb::Profile::kStrict;
  if (f.net == "none") spec.net = sb::NetMode::kNone;
  if (f.net == "host") spec.net = sb::NetMode::kHost;
  if (!f.net.empty() && f.net != "none" && f.net != "host" && ::geteuid() != 0)
    return make_error(ErrorCode::kPermissionDenied,
                      "--net {}: an app on a Vireo network needs root (a veth pair and a port)",
                      f.net);
  if (!f.memory.empty()) spec.memory_limit = TRY_CTX(parse_size(f.memory), "--memory");
  for (const auto& b : f.binds) spec.binds.push_back(TRY(parse_bind(b)));
  spec.with_apps = f.with;
  spec.redirect = f.redirect;
  for (const auto& e : f.env) {
    if (e.find('=') == std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "-e {}: use KEY=VALUE", e);
    spec.env.push_back(e);
  }
  return {};
}

bool is_package(const std::string& arg) {
  std::error_code ec;
  return arg.ends_with(".vapp") && std::filesystem::is_regular_file(arg, ec);
}

// The app's name when none is given: the program's file name, made a valid app name.
std::string default_name(const std::string& program) {
  std::string name = std::filesystem::path(program).filename().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  while (!name.empty() && (name[0] == '.' || name[0] == '-')) name.erase(0, 1);
  return name.empty() ? "app" : name;
}

std::string vapp_tool() {
  std::string tool = find_sibling_program("vireo-vapp");
  return tool.empty() ? "vireo-vapp" : tool;
}

// Packages are verified and unpacked by vireo-vapp (a separate process for untrusted archives).
Result<Json> open_package(const std::string& file) {
  auto r = TRY(run_process({vapp_tool(), "open", file}, {.timeout = std::chrono::minutes(5)}));
  if (!r.ok()) return make_error(ErrorCode::kInvalidArgument, "{}", std::string(trim(r.err)));
  auto j = parse_json(r.out);
  if (!j || !j->is_object() || !j->contains("command"))
    return make_error(ErrorCode::kInternal, "vireo-vapp open {}: unexpected output", file);
  return *j;
}

// `vireo app pack` is vireo-vapp's pack, run in place of this process.
[[noreturn]] void exec_pack(const AppFlags& f) {
  std::vector<std::string> argv{vapp_tool(), "pack", "--name", f.name, "--profile", f.profile};
  for (const auto& i : f.includes) argv.insert(argv.end(), {"--include", i});
  for (const auto& e : f.env) argv.insert(argv.end(), {"-e", e});
  if (!f.output.empty()) argv.insert(argv.end(), {"-o", f.output});
  if (!f.net.empty()) argv.insert(argv.end(), {"--net", f.net});
  argv.push_back("--");
  argv.insert(argv.end(), f.command.begin(), f.command.end());
  auto c = c_strings(argv);
  ::execvp(c[0], c.data());
  std::fprintf(stderr, "vireo app pack: cannot run %s: %s\n", c[0], std::strerror(errno));
  std::exit(1);
}

// An app on a Vireo network: a veth pair whose host end is a port of the network (through
// vireod) and whose other end becomes the app's eth0. Removed again when the app ends.
class NetworkAttachment {
 public:
  static Result<std::unique_ptr<NetworkAttachment>> create(Context& ctx,
                                                           const std::string& network) {
    auto* client = TRY(ctx.client());
    TRY_CTX(client->request("GET", "/1.0/networks/" + network), "--net {}", network);
    auto a = std::unique_ptr<NetworkAttachment>(new NetworkAttachment(ctx, network));
    TRY(ip({"link", "add", a->host_, "type", "veth", "peer", "name", a->peer_}));
    a->made_ = true;
    TRY(ip({"link", "set", "dev", a->host_, "up"}));
    Json body{{"iface", a->host_}};
    TRY_CTX(client->request("POST", "/1.0/networks/" + network + "/ports", &body),
            "attach the app to network {}", network);
    a->attached_ = true;
    return a;
  }
  ~NetworkAttachment() {
    if (attached_)
      if (auto* client = ctx_.client().value_or(nullptr))
        (void)client->request("DELETE", "/1.0/networks/" + network_ + "/ports/" + host_);
    if (made_) (void)ip({"link", "del", host_});
  }
  const std::string& peer() const { return peer_; }

 private:
  NetworkAttachment(Context& ctx, std::string network)
      : ctx_(ctx),
        network_(std::move(network)),
        host_(fmt::format("vsb{}", ::getpid())),
        peer_(host_ + "a") {}
  static Result<void> ip(std::vector<std::string> args) {
    args.insert(args.begin(), "ip");
    auto r = TRY(run_process(args, {.timeout = std::chrono::seconds(10)}));
    if (!r.ok()) return make_error(ErrorCode::kIo, "ip {}: {}", args[1], std::string(trim(r.err)));
    return {};
  }
  Context& ctx_;
  std::string network_, host_, peer_;
  bool made_ = false, attached_ = false;
};

Result<int> run_app(Context& ctx, const AppFlags& f) {
  if (f.command.empty())
    return make_error(ErrorCode::kInvalidArgument, "usage: vireo app run [OPTIONS] -- CMD [ARGS]");
  sb::SandboxSpec spec;
  if (is_package(f.command[0])) {
    auto pkg = TRY(open_package(f.command[0]));
    spec.name = pkg.at("name");
    spec.command = pkg.at("command").get<std::vector<std::string>>();
    spec.command.insert(spec.command.end(), f.command.begin() + 1, f.command.end());
    spec.profile = pkg.at("profile") == "strict" ? sb::Profile::kStrict : sb::Profile::kDefault;
    spec.net = pkg.at("net") == "none" ? sb::NetMode::kNone : sb::NetMode::kHost;
    spec.env = pkg.at("env").get<std::vector<std::string>>();
    spec.package_files = pkg.at("files_dir");
  } else {
    spec.name = default_name(f.command[0]);
    spec.command = f.command;
  }
  TRY(apply_common(f, spec));
  std::unique_ptr<NetworkAttachment> attachment;
  if (!f.net.empty() && f.net != "none" && f.net != "host") {
    attachment = TRY(NetworkAttachment::create(ctx, f.net));
    spec.net_iface = attachment->peer();
  }
  return sb::run_sandbox(spec);
}

void print_changes(Context& ctx, const std::vector<sb::StoreChange>& changes) {
  Json items = Json::array();
  std::vector<std::vector<std::string>> rows{{"CHANGE", "TYPE", "SIZE", "PATH"}};
  for (const auto& c : changes) {
    std::string type = c.type == 'f'   ? "file"
                       : c.type == 'd' ? "dir"
                       : c.type == 'l' ? "link"
                                       : "-";
    items.push_back(
        {{"path", c.path}, {"change", sb::to_string(c.kind)}, {"type", type}, {"size", c.size}});
    rows.push_back({std::string(sb::to_string(c.kind)), type,
                    c.type == 'f' ? format_bytes(c.size) : "-", c.path});
  }
  print(ctx.format(), items, rows);
}

void add_store_commands(CLI::App& app, Context& ctx, std::shared_ptr<AppFlags> f) {
  auto* store = app.add_subcommand("store", "An app's stored changes (its virtualized settings)");
  store->require_subcommand(1);
  auto* ls = store->add_subcommand("ls", "List what the app changed, as it sees the paths");
  ls->add_option("app", f->name, "App name")->required();
  ls->callback([&ctx, f] {
    ctx.outcome = [&]() -> Result<void> {
      print_changes(ctx, TRY(sb::list_store(TRY(sb::app_paths(f->name)))));
      return {};
    }();
  });
  auto* diff = store->add_subcommand("diff", "Show the app's changes against the host");
  diff->add_option("app", f->name, "App name")->required();
  diff->callback([&ctx, f] {
    ctx.outcome = [&]() -> Result<void> {
      std::fputs(TRY(sb::diff_store(TRY(sb::app_paths(f->name)))).c_str(), stdout);
      return {};
    }();
  });
  auto* reset = store->add_subcommand("reset", "Forget the app's changes (all, or one path)");
  reset->add_option("app", f->name, "App name")->required();
  reset->add_option("path", f->path, "A system path or ~/PATH; all changes when omitted");
  reset->callback([&ctx, f] {
    ctx.outcome = [&]() -> Result<void> {
      return sb::reset_store(TRY(sb::app_paths(f->name)), f->path);
    }();
  });
}

void add_run_options(CLI::App* cmd, AppFlags& f) {
  cmd->add_option("--name", f.name, "The app (its store); default: the program's name");
  cmd->add_option("--net", f.net,
                  "host (default), none (strict's default), or a Vireo network (root)");
  cmd->add_option("--profile", f.profile,
                  "default, or strict: no capabilities, private home, "
                  "no network")
      ->check(CLI::IsMember({"default", "strict"}));
  cmd->add_option("-e,--env", f.env, "Set KEY=VALUE in the app's environment")
      ->allow_extra_args(false);
}

}  // namespace

void add_app_commands(CLI::App& app, Context& ctx) {
  auto f = std::make_shared<AppFlags>();
  auto* cmd = app.add_subcommand("app", "Sandboxed applications with redirected writes");
  cmd->require_subcommand(1);

  auto* run = cmd->add_subcommand("run", "Run CMD (or FILE.vapp) in a sandbox");
  add_run_options(run, *f);
  run->add_option("--bind", f->binds, "Bind HOST:PATH[:ro] into the sandbox")
      ->allow_extra_args(false);
  run->add_option("--memory", f->memory, "Memory limit (root; e.g. 512M)");
  run->add_option("--with", f->with, "Also see this app's store (connection group)")
      ->allow_extra_args(false);
  run->add_option("--redirect", f->redirect, "Also redirect writes below this path (remembered)")
      ->allow_extra_args(false);
  run->add_option("command", f->command, "-- CMD [ARGS], or FILE.vapp [ARGS]");
  run->callback([&ctx, f] {
    auto status = run_app(ctx, *f);
    if (!status) {
      ctx.outcome = std::unexpected(status.error());
      return;
    }
    ctx.exit_code = *status;
  });

  auto* pack = cmd->add_subcommand("pack", "Pack CMD with its libraries into one .vapp file");
  add_run_options(pack, *f);
  pack->get_option("--name")->required();
  pack->add_option("--include", f->includes, "Also pack this file or folder (system paths)")
      ->allow_extra_args(false);
  pack->add_option("-o,--output", f->output, "The package file (default NAME.vapp)");
  pack->add_option("command", f->command, "-- CMD [ARGS]")->required();
  pack->callback([f] { exec_pack(*f); });
  add_store_commands(*cmd, ctx, f);
}

}  // namespace vireo::cli
