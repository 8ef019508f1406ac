// vireo ct: containers through vireod (/1.0/containers), the commands a Docker or Podman user
// expects: run, create, start, stop, restart, kill, rm, ps, logs, inspect, wait.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "api/operation.h"
#include "base/ids.h"
#include "base/strings.h"
#include "cli/container_attach.h"
#include "cli/context.h"

namespace vireo::cli {

Result<std::string> container_path(const std::string& name, const std::string& suffix) {
  bool ok = !name.empty();
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok) return make_error(ErrorCode::kInvalidArgument, "invalid container name '{}'", name);
  return kContainers + "/" + name + suffix;
}

Result<Json> finish_operation(Context& ctx, const Json& reply) {
  auto op = TRY(api::operation_from_json(reply));
  auto* c = TRY(ctx.client());
  for (;;) {
    op = TRY(c->wait_operation(op.id, std::chrono::seconds(30)));
    if (op.status == api::OperationStatus::kSuccess) return op.result;
    if (op.status == api::OperationStatus::kFailure)
      return make_error(ErrorCode::kIo, "{}", op.error);
    if (op.status == api::OperationStatus::kCancelled)
      return make_error(ErrorCode::kCancelled, "operation {} was cancelled", op.id);
  }
}

namespace {

constexpr int kLogPollSeconds = 20;

struct CreateFlags {
  std::string name, workdir, user, network, ip, memory, restart, entrypoint;
  std::string health_cmd, health_interval, health_timeout, health_start_period;
  int health_retries = 0;
  std::vector<std::string> env, env_files, volumes, cap_add, cap_drop, log_opts, publish,
      security_opts;
  double cpus = 0;
  int64_t pids_limit = 0;
  bool detach = false, interactive = false, tty = false, remove = false, read_only = false;
};

struct Flags {
  CreateFlags create;
  std::vector<std::string> args;
  std::vector<std::string> exec_env;
  std::string exec_user, exec_workdir;
  bool exec_interactive = false, exec_tty = false;
  std::vector<std::string> names;
  std::string name, signal = "KILL", since;
  int timeout = 10;
  int64_t tail = -1;
  bool all = false, force = false, follow = false, stream = false, no_stream = false;
  bool no_ports = false;
};

template <typename F>
void run(CLI::App* cmd, Context& ctx, F body) {
  cmd->callback([&ctx, body] { ctx.outcome = body(); });
}

Result<Json> request(Context& ctx, const char* method, const std::string& path,
                     const Json* body = nullptr) {
  return TRY(TRY(ctx.client())->request(method, path, body)).body;
}

Result<std::vector<std::string>> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kNotFound, "--env-file {}: cannot be read", path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    std::string t(trim(line));
    if (t.empty() || t.starts_with("#")) continue;
    out.push_back(t);
  }
  return out;
}

// K=V stays; a bare K takes the value of K in the CLI's environment (as docker -e K).
std::vector<std::string> resolve_env(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& e : items) {
    if (e.find('=') != std::string::npos) {
      out.push_back(e);
    } else if (const char* v = std::getenv(e.c_str())) {
      out.push_back(e + "=" + v);
    }
  }
  return out;
}

Result<Json> parse_volume(const std::string& text) {
  auto parts = split(text, ':');
  if (parts.size() < 2 || parts.size() > 3 ||
      (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw"))
    return make_error(ErrorCode::kInvalidArgument,
                      "-v {}: use /HOST/PATH:/PATH[:ro] or [POOL/]VOLUME:/PATH[:ro]", text);
  if (!parts[1].starts_with("/"))
    return make_error(ErrorCode::kInvalidArgument, "-v {}: the container path must be absolute",
                      text);
  // Not a path: a named volume of a storage pool (the daemon checks the name).
  const char* source_key = parts[0].starts_with("/") ? "source" : "volume";
  return Json{{source_key, parts[0]},
              {"target", parts[1]},
              {"read_only", parts.size() == 3 && parts[2] == "ro"}};
}

// Docker's --log-opt max-size=10m / max-file=3 (the json-file driver's rotation).
Result<void> apply_log_opt(const std::string& text, Json& body) {
  auto eq = text.find('=');
  std::string key = text.substr(0, eq), value = eq == std::string::npos ? "" : text.substr(eq + 1);
  if (key == "max-size") {
    body["log_max_size"] = TRY_CTX(parse_size(value), "--log-opt {}", text);
    return {};
  }
  if (key == "max-file") {
    try {
      size_t used = 0;
      int n = std::stoi(value, &used);
      if (used == value.size() && n > 0) {
        body["log_max_files"] = n;
        return {};
      }
    } catch (const std::exception&) {
    }
    return make_error(ErrorCode::kInvalidArgument, "--log-opt {}: max-file must be a whole number",
                      text);
  }
  return make_error(ErrorCode::kInvalidArgument, "--log-opt {}: use max-size=SIZE or max-file=N",
                    text);
}

Result<Json> parse_restart(const std::string& text) {
  auto colon = text.find(':');
  std::string policy = text.substr(0, colon);
  if (policy != "no" && policy != "on-failure" && policy != "always" && policy != "unless-stopped")
    return make_error(ErrorCode::kInvalidArgument,
                      "--restart {}: use no, on-failure[:N], always or unless-stopped", text);
  Json r = {{"policy", policy}};
  if (colon == std::string::npos) return r;
  if (policy != "on-failure")
    return make_error(ErrorCode::kInvalidArgument, "--restart {}: only on-failure takes :N", text);
  try {
    size_t used = 0;
    int n = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || n < 0) throw std::invalid_argument("n");
    r["max_retries"] = n;
  } catch (const std::exception&) {
    return make_error(ErrorCode::kInvalidArgument, "--restart {}: N must be a whole number", text);
  }
  return r;
}

// "500ms", "5s", "2m", "1h" → milliseconds.
Result<int64_t> parse_duration_ms(const std::string& text, const char* flag) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  const double scale = unit == "ms"  ? 1
                       : unit == "s" ? 1e3
                       : unit == "m" ? 60e3
                       : unit == "h" ? 3600e3
                                     : 0;
  if (used == 0 || scale == 0 || !(v > 0))
    return make_error(ErrorCode::kInvalidArgument,
                      "{} {}: expected a duration such as 500ms, 5s, 2m or 1h", flag, text);
  return static_cast<int64_t>(v * scale);
}

Result<Json> health_body(const CreateFlags& f) {
  const bool tuned = !f.health_interval.empty() || !f.health_timeout.empty() ||
                     !f.health_start_period.empty() || f.health_retries != 0;
  if (f.health_cmd.empty()) {
    if (tuned)
      return make_error(ErrorCode::kInvalidArgument,
                        "--health-interval, --health-timeout, --health-retries and "
                        "--health-start-period need --health-cmd");
    return Json(nullptr);
  }
  // As docker's --health-cmd: a shell command.
  Json h = {{"command", {"sh", "-c", f.health_cmd}}};
  if (!f.health_interval.empty())
    h["interval_ms"] = TRY(parse_duration_ms(f.health_interval, "--health-interval"));
  if (!f.health_timeout.empty())
    h["timeout_ms"] = TRY(parse_duration_ms(f.health_timeout, "--health-timeout"));
  if (!f.health_start_period.empty())
    h["start_period_ms"] = TRY(parse_duration_ms(f.health_start_period, "--health-start-period"));
  if (f.health_retries < 0)
    return make_error(ErrorCode::kInvalidArgument, "--health-retries must be positive");
  if (f.health_retries > 0) h["retries"] = f.health_retries;
  return h;
}

// The create request from the flags and [IMAGE, CMD...].
Result<Json> create_body(const CreateFlags& f, const std::vector<std::string>& image_and_command) {
  if (image_and_command.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "an IMAGE is required: vireo ct run IMAGE [CMD...]");
  Json body = {{"image", image_and_command.front()}};
  if (f.tty) body["tty"] = true;
  if (f.interactive) body["stdin"] = true;
  if (image_and_command.size() > 1)
    body["command"] =
        std::vector<std::string>(image_and_command.begin() + 1, image_and_command.end());
  if (!f.name.empty()) body["name"] = f.name;
  std::vector<std::string> env;
  for (const auto& file : f.env_files) {
    auto lines = TRY(read_env_file(file));
    env.insert(env.end(), lines.begin(), lines.end());
  }
  env.insert(env.end(), f.env.begin(), f.env.end());
  if (!env.empty()) body["env"] = resolve_env(env);
  if (!f.workdir.empty()) body["workdir"] = f.workdir;
  if (!f.user.empty()) body["user"] = f.user;
  if (!f.entrypoint.empty()) body["entrypoint"] = std::vector<std::string>{f.entrypoint};
  if (!f.network.empty()) body["network"] = f.network;
  if (!f.ip.empty()) body["ip"] = f.ip;
  // The daemon parses the specs: one grammar, one error text.
  if (!f.publish.empty()) body["ports"] = f.publish;
  if (!f.memory.empty()) body["memory"] = TRY_CTX(parse_size(f.memory), "--memory");
  if (f.cpus < 0) return make_error(ErrorCode::kInvalidArgument, "--cpus must be positive");
  if (f.cpus > 0) body["cpus"] = f.cpus;
  if (f.pids_limit < 0)
    return make_error(ErrorCode::kInvalidArgument, "--pids-limit must be positive");
  if (f.pids_limit > 0) body["pids_limit"] = f.pids_limit;
  if (!f.cap_add.empty()) body["cap_add"] = f.cap_add;
  if (!f.cap_drop.empty()) body["cap_drop"] = f.cap_drop;
  if (f.read_only) body["read_only"] = true;
  if (!f.restart.empty()) body["restart"] = TRY(parse_restart(f.restart));
  for (const auto& opt : f.security_opts) {
    if (opt == "no-new-privileges" || opt == "no-new-privileges=true" ||
        opt == "no-new-privileges:true")
      body["no_new_privileges"] = true;
    else if (opt == "no-new-privileges=false" || opt == "no-new-privileges:false")
      body["no_new_privileges"] = false;
    else
      return make_error(ErrorCode::kInvalidArgument,
                        "--security-opt {}: only no-new-privileges[=true|false] is supported (the "
                        "seccomp profile and capabilities have their own flags)",
                        opt);
  }
  if (Json health = TRY(health_body(f)); !health.is_null()) body["health"] = health;
  for (const auto& opt : f.log_opts) TRY(apply_log_opt(opt, body));
  Json mounts = Json::array();
  for (const auto& v : f.volumes) mounts.push_back(TRY(parse_volume(v)));
  if (!mounts.empty()) body["mounts"] = mounts;
  return body;
}

// `vireo ct cp SRC DST`: exactly one of them is CONTAINER:PATH; host paths are made absolute
// here (the daemon has its own working directory).
Result<void> copy_files(Context& ctx, const std::string& src, const std::string& dst) {
  auto container_part =
      [](const std::string& arg) -> std::optional<std::pair<std::string, std::string>> {
    auto colon = arg.find(':');
    if (colon == std::string::npos || colon == 0 || arg.starts_with('/') || arg.starts_with('.'))
      return std::nullopt;
    return std::make_pair(arg.substr(0, colon), arg.substr(colon + 1));
  };
  auto from = container_part(src), to = container_part(dst);
  if (bool(from) == bool(to))
    return make_error(ErrorCode::kInvalidArgument,
                      "usage: vireo ct cp CONTAINER:PATH HOSTPATH | HOSTPATH CONTAINER:PATH");
  const auto& [name, inside] = from ? *from : *to;
  std::error_code ec;
  std::string host = std::filesystem::absolute(from ? dst : src, ec).lexically_normal().string();
  Json body = {{"direction", from ? "out" : "in"},
               {"container_path", inside.empty() ? "/" : inside},
               {"host_path", host}};
  Json reply = TRY(request(ctx, "POST", TRY(container_path(name, "/copy")), &body));
  TRY(finish_operation(ctx, reply));
  return {};
}

void add_create_flags(CLI::App* cmd, CreateFlags& f, bool run) {
  cmd->add_option("--name", f.name, "Container name (generated when omitted)");
  cmd->add_option("-e,--env", f.env, "Environment variable K=V (or K: take it from here)")
      ->allow_extra_args(false);
  cmd->add_option("--env-file", f.env_files, "File of K=V lines")->allow_extra_args(false);
  cmd->add_option("-w,--workdir", f.workdir, "Working directory inside the container");
  cmd->add_option("-u,--user", f.user, "USER[:GROUP] or UID[:GID]");
  cmd->add_option("-v,--volume", f.volumes,
                  "Bind mount /HOST:/PATH[:ro] or a volume [POOL/]VOL:/PATH[:ro]")
      ->allow_extra_args(false);
  cmd->add_option("--net,--network", f.network, "A Vireo network (default: vireo0), none or host");
  cmd->add_option("--ip", f.ip, "Address on the network (default: a free one)");
  cmd->add_option("-p,--publish", f.publish, "Publish a port: [IP:]HOST:CTR[/udp]")
      ->allow_extra_args(false);
  cmd->add_option("--memory,-m", f.memory, "Memory limit (256M, 1G)");
  cmd->add_option("--cpus", f.cpus, "CPU limit (1.5 = one and a half CPUs)");
  cmd->add_option("--pids-limit", f.pids_limit, "Maximum number of processes");
  cmd->add_option("--restart", f.restart, "no, on-failure[:N], always or unless-stopped");
  cmd->add_option("--cap-add", f.cap_add, "Add a capability (NET_ADMIN, ALL)")
      ->allow_extra_args(false);
  cmd->add_option("--cap-drop", f.cap_drop, "Drop a capability")->allow_extra_args(false);
  cmd->add_option("--entrypoint", f.entrypoint, "Override the image's entrypoint");
  cmd->add_option("--log-opt", f.log_opts, "max-size=SIZE (10m default) or max-file=N (5)")
      ->allow_extra_args(false);
  cmd->add_flag("--read-only", f.read_only, "Mount the root file system read-only");
  cmd->add_option("--security-opt", f.security_opts,
                  "no-new-privileges[=true|false] (true by default)")
      ->allow_extra_args(false);
  cmd->add_option("--health-cmd", f.health_cmd, "Health check: a shell command, 0 = healthy");
  cmd->add_option("--health-interval", f.health_interval, "Between checks (30s default)");
  cmd->add_option("--health-timeout", f.health_timeout, "A longer check fails (30s default)");
  cmd->add_option("--health-retries", f.health_retries, "Failures in a row for unhealthy (3)");
  cmd->add_option("--health-start-period", f.health_start_period,
                  "Failures after a start that do not count (0s default)");
  cmd->add_flag("-i,--interactive", f.interactive, "Keep stdin open (attach to send it)");
  cmd->add_flag("-t,--tty", f.tty, "Allocate a terminal");
  if (!run) return;
  cmd->add_flag("-d,--detach", f.detach, "Start in the background and print the name");
  cmd->add_flag("--rm", f.remove, "Remove the container when it exits");
}

std::string bytes_text(const Json& v) {
  return v.is_number_unsigned() ? format_bytes(v.get<uint64_t>()) : plain(v);
}

std::string short_id(const Json& c) {
  return plain(c.value("id", Json())).substr(0, 12);
}

// "running (healthy)" for a container with a health check.
std::string state_text(const Json& c) {
  std::string state = plain(c.value("state", Json()));
  const Json& h = c.value("health", Json());
  if (h.is_object() && state == "running")
    state += fmt::format(" ({})", plain(h.value("status", Json())));
  return state;
}

std::string network_text(const Json& c) {
  const Json& n = c.value("network", Json());
  if (n.is_object())
    return fmt::format("{} ({}/{} on {})", plain(n.value("network", Json())),
                       plain(n.value("ip", Json())), plain(n.value("prefix", Json())),
                       plain(n.value("iface", Json())));
  return plain(c.value("config", Json::object()).value("network", Json()));
}

// "0.0.0.0:8080->80/tcp, ..."
std::string ports_text(const Json& c) {
  std::string out;
  const Json& ports = c.value("config", Json::object()).value("ports", Json::array());
  for (const auto& p : ports)
    out +=
        fmt::format("{}{}:{}->{}/{}", out.empty() ? "" : ", ", plain(p.value("host_ip", Json())),
                    plain(p.value("host_port", Json())), plain(p.value("container_port", Json())),
                    plain(p.value("protocol", Json())));
  return out.empty() ? "-" : out;
}

void print_container(Context& ctx, const Json& c) {
  print(ctx.format(), c,
        {{"name:", plain(c.value("name", Json()))},
         {"id:", short_id(c)},
         {"image:", plain(c.value("image", Json()))},
         {"state:", state_text(c)},
         {"exit code:", plain(c.value("exit_code", Json()))},
         {"created:", plain(c.value("created_at", Json()))},
         {"started:", plain(c.value("started_at", Json()))},
         {"finished:", plain(c.value("finished_at", Json()))},
         {"restarts:", plain(c.value("restart_count", Json()))},
         {"network:", network_text(c)},
         {"ports:", ports_text(c)}});
}

// Prints log lines to the streams they came from; returns the new cursor and whether the
// container still runs.
struct LogPage {
  std::string cursor;
  bool running = false;
  size_t lines = 0;
};

Result<LogPage> print_logs(Context& ctx, const std::string& name, const std::string& query) {
  Json page = TRY(request(ctx, "GET", TRY(container_path(name, "/logs")) + query));
  LogPage out{
      .cursor = page.value("cursor", ""), .running = page.value("running", false), .lines = 0};
  for (const auto& line : page.value("lines", Json::array())) {
    std::string text = line.value("log", "");
    FILE* stream = line.value("stream", "") == "stderr" ? stderr : stdout;
    std::fwrite(text.data(), 1, text.size(), stream);
    ++out.lines;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  return out;
}

// Streams the container's output until it has exited and everything is printed.
Result<void> stream_logs(Context& ctx, const std::string& name, std::string query) {
  std::string cursor;
  for (;;) {
    std::string q =
        query + (query.empty() ? "?" : "&") + "follow=1&timeout=" + std::to_string(kLogPollSeconds);
    if (!cursor.empty()) q += "&cursor=" + cursor;
    LogPage page = TRY(print_logs(ctx, name, q));
    if (!page.cursor.empty()) cursor = page.cursor;
    if (!page.running && page.lines == 0) return {};
    query.clear();  // tail/since apply to the first page only
  }
}

Result<void> run_container(Context& ctx, const CreateFlags& f,
                           const std::vector<std::string>& args) {
  Json body = TRY(create_body(f, args));
  body["start"] = true;
  if (f.detach) {
    if (f.remove) body["auto_remove"] = true;
    Json c = TRY(request(ctx, "POST", kContainers, &body));
    std::printf("%s\n", plain(c.value("name", Json())).c_str());
    return {};
  }
  if (f.interactive || f.tty) return run_attached(ctx, std::move(body), f.remove);
  // In the foreground the CLI removes the container itself (--rm) once it has printed all of
  // its output: the daemon removing it would race the last log lines.
  // The name is chosen here when not given: the operation's result comes only at the exit,
  // and the output has to be read from the start.
  if (!body.contains("name")) body["name"] = "ct-" + random_hex(4);
  std::string name = body["name"];
  body["wait"] = true;
  Json reply = TRY(request(ctx, "POST", kContainers, &body));
  TRY(stream_logs(ctx, name, ""));
  Json done = TRY(finish_operation(ctx, reply));
  if (f.remove) TRY(request(ctx, "DELETE", TRY(container_path(name))));
  const Json& code = done.contains("exit_code") ? done["exit_code"] : Json();
  ctx.exit_code = code.is_number_integer() ? code.get<int>() : 1;
  return {};
}

// IMAGE [CMD...]: everything from the image on belongs to the command, flags included.
void add_image_and_command(CLI::App* cmd, std::vector<std::string>& args) {
  cmd->add_option("image-and-command", args, "IMAGE [CMD [ARGS...]]");
  cmd->positionals_at_end(true);
}

void add_run_commands(CLI::App* noun, Context& ctx, Flags& f) {
  auto* run_cmd = noun->add_subcommand("run", "Create and start a container, streaming its output");
  add_create_flags(run_cmd, f.create, true);
  add_image_and_command(run_cmd, f.args);
  run(run_cmd, ctx, [&ctx, &f]() -> Result<void> { return run_container(ctx, f.create, f.args); });
  auto* create = noun->add_subcommand("create", "Create a container without starting it");
  add_create_flags(create, f.create, false);
  add_image_and_command(create, f.args);
  run(create, ctx, [&ctx, &f]() -> Result<void> {
    Json body = TRY(create_body(f.create, f.args));
    print_container(ctx, TRY(request(ctx, "POST", kContainers, &body)));
    return {};
  });
}

void add_lifecycle_commands(CLI::App* noun, Context& ctx, Flags& f) {
  auto* start = noun->add_subcommand("start", "Start created or stopped containers");
  start->add_option("names", f.names, "Containers")->required();
  run(start, ctx, [&ctx, &f]() -> Result<void> {
    for (const auto& n : f.names) {
      TRY(request(ctx, "POST", TRY(container_path(n, "/start"))));
      std::printf("%s\n", n.c_str());
    }
    return {};
  });
  for (const char* verb : {"stop", "restart"}) {
    auto* cmd = noun->add_subcommand(
        verb, std::string(verb == std::string("stop")
                              ? "Stop containers (SIGTERM, then SIGKILL after -t seconds)"
                              : "Stop and start containers again"));
    cmd->add_option("names", f.names, "Containers")->required();
    cmd->add_option("-t,--time", f.timeout, "Seconds to wait before SIGKILL")
        ->capture_default_str();
    std::string suffix = std::string("/") + verb;
    run(cmd, ctx, [&ctx, &f, suffix]() -> Result<void> {
      for (const auto& n : f.names) {
        Json body = {{"timeout", f.timeout}};
        TRY(finish_operation(ctx,
                             TRY(request(ctx, "POST", TRY(container_path(n, suffix)), &body))));
        std::printf("%s\n", n.c_str());
      }
      return {};
    });
  }
  auto* kill = noun->add_subcommand("kill", "Send a signal to containers");
  kill->add_option("names", f.names, "Containers")->required();
  kill->add_option("-s,--signal", f.signal, "Signal name or number")->capture_default_str();
  run(kill, ctx, [&ctx, &f]() -> Result<void> {
    for (const auto& n : f.names) {
      Json body = {{"signal", f.signal}};
      TRY(request(ctx, "POST", TRY(container_path(n, "/kill")), &body));
      std::printf("%s\n", n.c_str());
    }
    return {};
  });
  auto* rm = noun->add_subcommand("rm", "Remove containers");
  rm->add_option("names", f.names, "Containers")->required();
  rm->add_flag("-f,--force", f.force, "Kill a running container first");
  run(rm, ctx, [&ctx, &f]() -> Result<void> {
    for (const auto& n : f.names) {
      TRY(request(ctx, "DELETE", TRY(container_path(n)) + (f.force ? "?force=1" : "")));
      std::printf("%s\n", n.c_str());
    }
    return {};
  });
  auto* wait = noun->add_subcommand("wait", "Wait for a container to exit; print its exit code");
  wait->add_option("name", f.name, "Container")->required();
  run(wait, ctx, [&ctx, &f]() -> Result<void> {
    Json done =
        TRY(finish_operation(ctx, TRY(request(ctx, "POST", TRY(container_path(f.name, "/wait"))))));
    std::printf("%s\n", plain(done.value("exit_code", Json())).c_str());
    return {};
  });
}

// NAME CMD...: runs CMD in the running container, prints its output, passes its exit status;
// with -i/-t interactively, through the attach relay.
Result<void> exec_in(Context& ctx, const Flags& f) {
  if (f.args.size() < 2)
    return make_error(ErrorCode::kInvalidArgument, "usage: vireo ct exec NAME CMD [ARGS...]");
  Json body = {{"command", std::vector<std::string>(f.args.begin() + 1, f.args.end())}};
  if (!f.exec_env.empty()) body["env"] = resolve_env(f.exec_env);
  if (!f.exec_user.empty()) body["user"] = f.exec_user;
  if (!f.exec_workdir.empty()) body["workdir"] = f.exec_workdir;
  if (f.exec_interactive || f.exec_tty)
    return exec_attached(ctx, f.args[0], body, {.input = f.exec_interactive, .tty = f.exec_tty});
  Json r = TRY(finish_operation(
      ctx, TRY(request(ctx, "POST", TRY(container_path(f.args[0], "/exec")), &body))));
  std::string out = r.value("stdout", ""), err = r.value("stderr", "");
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fwrite(err.data(), 1, err.size(), stderr);
  if (r.value("truncated", false)) std::fprintf(stderr, "vireo: output truncated at 1 MiB\n");
  ctx.exit_code = r.value("exit_code", 1);
  return {};
}

void add_exec_command(CLI::App* noun, Context& ctx, Flags& f) {
  auto* exec = noun->add_subcommand("exec", "Run a command in a running container");
  exec->add_option("-e,--env", f.exec_env, "Environment variable K=V")->allow_extra_args(false);
  exec->add_option("-u,--user", f.exec_user, "UID[:GID]");
  exec->add_option("-w,--workdir", f.exec_workdir, "Working directory");
  exec->add_flag("-i,--interactive", f.exec_interactive, "Keep stdin open");
  exec->add_flag("-t,--tty", f.exec_tty, "Allocate a terminal");
  exec->add_option("name-and-command", f.args, "NAME CMD [ARGS...]");
  exec->positionals_at_end(true);
  run(exec, ctx, [&ctx, &f]() -> Result<void> { return exec_in(ctx, f); });
}

void add_update_command(CLI::App* noun, Context& ctx, Flags& f) {
  auto* update = noun->add_subcommand(
      "update", "Change a container's limits and published ports, also while it runs");
  update->add_option("names", f.names, "Containers")->required();
  update->add_option("--memory,-m", f.create.memory, "Memory limit (256M, 1G)");
  update->add_option("--cpus", f.create.cpus, "CPU limit");
  update->add_option("--pids-limit", f.create.pids_limit, "Maximum number of processes");
  update
      ->add_option("-p,--publish", f.create.publish,
                   "The published ports from now on: [IP:]HOST:CTR[/udp] (replaces the old set)")
      ->allow_extra_args(false);
  update->add_flag("--no-ports", f.no_ports, "Publish no ports any more");
  run(update, ctx, [&ctx, &f]() -> Result<void> {
    Json body = Json::object();
    if (!f.create.memory.empty()) body["memory"] = TRY_CTX(parse_size(f.create.memory), "--memory");
    if (f.create.cpus != 0) body["cpus"] = f.create.cpus;
    if (f.create.pids_limit != 0) body["pids_limit"] = f.create.pids_limit;
    if (!f.create.publish.empty() && f.no_ports)
      return make_error(ErrorCode::kInvalidArgument, "give either --publish or --no-ports");
    if (!f.create.publish.empty()) body["ports"] = f.create.publish;
    if (f.no_ports) body["ports"] = Json::array();
    for (const auto& n : f.names) {
      TRY(request(ctx, "POST", TRY(container_path(n, "/update")), &body));
      std::printf("%s\n", n.c_str());
    }
    return {};
  });
}

void add_cleanup_commands(CLI::App* noun, Context& ctx, Flags& f) {
  run(noun->add_subcommand("prune", "Remove every container that is not running"), ctx,
      [&ctx]() -> Result<void> {
        Json r = TRY(request(ctx, "POST", kContainers + "/prune"));
        std::vector<std::vector<std::string>> rows = {{"REMOVED"}};
        for (const auto& n : r.value("removed", Json::array())) rows.push_back({plain(n)});
        print(ctx.format(), r, rows);
        return {};
      });
  auto* top = noun->add_subcommand("top", "Show a running container's processes");
  top->add_option("name", f.name, "Container")->required();
  run(top, ctx, [&ctx, &f]() -> Result<void> {
    Json list = TRY(request(ctx, "GET", TRY(container_path(f.name, "/top"))));
    std::vector<std::vector<std::string>> rows = {{"PID", "UID", "STATE", "CPU", "RSS", "COMMAND"}};
    for (const auto& p : list)
      rows.push_back({plain(p.value("pid", Json())), plain(p.value("uid", Json())),
                      plain(p.value("state", Json())),
                      fmt::format("{:.2f}s", p.value("cpu_seconds", 0.0)),
                      bytes_text(p.value("rss", Json())), plain(p.value("command", Json()))});
    print(ctx.format(), list, rows);
    return {};
  });
}

// Two samples a second apart: counters as they are, and the CPU use over that second.
// Counters of each container now; nullopt for one that stopped running.
Result<std::vector<std::optional<Json>>> stats_counters(Context& ctx,
                                                        const std::vector<std::string>& names,
                                                        bool tolerate_stopped) {
  std::vector<std::optional<Json>> out;
  for (const auto& n : names) {
    auto s = request(ctx, "GET", TRY(container_path(n, "/stats")));
    if (!s && tolerate_stopped && s.error().code() == ErrorCode::kConflict) {
      out.emplace_back();
      continue;
    }
    out.emplace_back(TRY(std::move(s)));
  }
  return out;
}

// One table of the containers still running: CPU % over wall seconds between before and now.
void print_stats_table(Context& ctx, const std::vector<std::string>& names,
                       const std::vector<std::optional<Json>>& before,
                       const std::vector<std::optional<Json>>& now, double wall) {
  Json all = Json::array();
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "CPU %", "MEMORY", "LIMIT", "PIDS", "NET RX/TX", "BLOCK R/W"}};
  for (size_t i = 0; i < names.size(); ++i) {
    if (!before[i] || !now[i]) continue;
    Json s = *now[i];
    double cpu = (s.value("cpu_seconds", 0.0) - before[i]->value("cpu_seconds", 0.0)) / wall * 100;
    s["name"] = names[i];
    s["cpu_percent"] = cpu;
    all.push_back(s);
    uint64_t limit = s.value("memory_limit", uint64_t{0});
    rows.push_back(
        {names[i], fmt::format("{:.1f}", cpu), bytes_text(s.value("memory", Json())),
         limit ? format_bytes(limit) : "-", plain(s.value("pids", Json())),
         bytes_text(s.value("net_rx", Json())) + " / " + bytes_text(s.value("net_tx", Json())),
         bytes_text(s.value("block_read", Json())) + " / " +
             bytes_text(s.value("block_write", Json()))});
  }
  print(ctx.format(), all, rows);
}

// One sample a second apart; streaming (as docker stats) a new one every second until every
// container stopped (or the user interrupts).
Result<void> print_stats(Context& ctx, const std::vector<std::string>& names, bool stream) {
  auto before = TRY(stats_counters(ctx, names, false));
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    auto now = TRY(stats_counters(ctx, names, stream));
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool any = std::any_of(now.begin(), now.end(), [](const auto& s) { return bool(s); });
    if (!any) return {};
    if (stream && ctx.format() == Format::kTable && ::isatty(STDOUT_FILENO))
      std::fputs("\033[2J\033[H", stdout);  // redraw in place, as docker stats does
    print_stats_table(ctx, names, before, now, wall);
    std::fflush(stdout);
    if (!stream) return {};
    before = std::move(now);
  }
}

void add_query_commands(CLI::App* noun, Context& ctx, Flags& f) {
  auto* stats =
      noun->add_subcommand("stats", "CPU, memory, pids, network and block I/O of containers");
  stats->add_option("names", f.names, "Running containers")->required();
  stats->add_flag("--stream", f.stream, "A new sample every second until they stop");
  stats->add_flag("--no-stream", f.no_stream, "One sample (the default off a terminal)");
  run(stats, ctx, [&ctx, &f]() -> Result<void> {
    // As docker: streaming on a terminal; one sample for scripts and JSON.
    bool stream =
        f.stream || (!f.no_stream && ctx.format() == Format::kTable && ::isatty(STDOUT_FILENO));
    return print_stats(ctx, f.names, stream);
  });
  auto* ps = noun->add_subcommand("ps", "List running containers (-a: all)");
  ps->alias("ls");
  ps->add_flag("-a,--all", f.all, "Also created and exited containers");
  run(ps, ctx, [&ctx, &f]() -> Result<void> {
    Json list = TRY(request(ctx, "GET", kContainers + (f.all ? "?all=1" : "")));
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "ID", "IMAGE", "STATE", "EXIT", "IP", "PORTS", "CREATED"}};
    for (const auto& c : list) {
      const Json& net = c.value("network", Json());
      rows.push_back({plain(c.value("name", Json())), short_id(c), plain(c.value("image", Json())),
                      state_text(c), plain(c.value("exit_code", Json())),
                      net.is_object() ? plain(net.value("ip", Json())) : "-", ports_text(c),
                      plain(c.value("created_at", Json()))});
    }
    print(ctx.format(), list, rows);
    return {};
  });
  auto* cp = noun->add_subcommand(
      "cp", "Copy files between a container and the host: CTR:PATH HOSTPATH or HOSTPATH CTR:PATH");
  cp->add_option("args", f.args, "SRC DST")->expected(2)->required();
  run(cp, ctx, [&ctx, &f]() -> Result<void> { return copy_files(ctx, f.args[0], f.args[1]); });
  auto* inspect = noun->add_subcommand("inspect", "Show a container");
  inspect->alias("show");
  inspect->add_option("name", f.name, "Container")->required();
  run(inspect, ctx, [&ctx, &f]() -> Result<void> {
    Json c = TRY(request(ctx, "GET", TRY(container_path(f.name))));
    if (ctx.format() == Format::kTable) {
      std::printf("%s\n", c.dump(2).c_str());
      return {};
    }
    print_container(ctx, c);
    return {};
  });
  auto* logs = noun->add_subcommand("logs", "Print a container's output");
  logs->add_option("name", f.name, "Container")->required();
  logs->add_flag("-f,--follow", f.follow, "Keep printing until the container exits");
  logs->add_option("--tail", f.tail, "Only the last N lines");
  logs->add_option("--since", f.since, "Only lines after this time (RFC 3339 or Unix seconds)");
  run(logs, ctx, [&ctx, &f]() -> Result<void> {
    std::string q;
    if (f.tail >= 0) q += "&tail=" + std::to_string(f.tail);
    if (!f.since.empty()) q += "&since=" + f.since;
    if (!q.empty()) q[0] = '?';
    if (f.follow) return stream_logs(ctx, f.name, q);
    TRY(print_logs(ctx, f.name, q));
    return {};
  });
}

}  // namespace

void add_container_commands(CLI::App& app, Context& ctx) {
  static Flags flags;
  auto* noun = app.add_subcommand("ct", "Run and manage containers (run, ps, logs, stop, rm)");
  noun->alias("container");
  noun->require_subcommand(1);
  add_run_commands(noun, ctx, flags);
  add_lifecycle_commands(noun, ctx, flags);
  add_query_commands(noun, ctx, flags);
  add_exec_command(noun, ctx, flags);
  add_cleanup_commands(noun, ctx, flags);
  add_update_command(noun, ctx, flags);
  add_attach_command(noun, ctx);
}

}  // namespace vireo::cli
