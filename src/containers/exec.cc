// Processes in a running container: Engine::exec (a command through `vireo-runtime exec`,
// output captured; no terminal, no stdin) and Engine::top (the runtime's `ps`, then /proc).
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/file.h"
#include "base/json.h"

#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"

namespace vireo::containers {

namespace {

Result<std::vector<std::string>> string_list(const Json& v, const std::string& field) {
  if (!v.is_array())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a list of strings", field);
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string())
      return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a list of strings", field);
    out.push_back(item.get<std::string>());
  }
  return out;
}

Result<std::string> string_field(const Json& v, const std::string& field) {
  if (!v.is_string())
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a string", field);
  return v.get<std::string>();
}

void cap(std::string& text, bool& truncated) {
  if (text.size() <= kMaxExecOutput) return;
  text.resize(kMaxExecOutput);
  truncated = true;
}

// One process from /proc; nullopt when it is gone meanwhile.
std::optional<ProcessInfo> read_process(int pid) {
  std::string dir = "/proc/" + std::to_string(pid);
  auto stat = read_file(dir + "/stat");
  auto status = read_file(dir + "/status");
  if (!stat || !status) return std::nullopt;
  ProcessInfo p{.pid = pid};
  // stat: pid (comm) state ppid ... utime(14) stime(15) ... rss(24); comm may hold spaces.
  auto close = stat->rfind(')');
  auto open = stat->find('(');
  if (close == std::string::npos || open == std::string::npos) return std::nullopt;
  std::string comm = stat->substr(open + 1, close - open - 1);
  std::istringstream rest(stat->substr(close + 2));
  std::vector<std::string> f;
  for (std::string w; rest >> w;) f.push_back(w);
  if (f.size() < 22) return std::nullopt;
  p.state = f[0];
  long ticks = ::sysconf(_SC_CLK_TCK);
  p.cpu_seconds =
      (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(ticks > 0 ? ticks : 100);
  p.rss_bytes = std::stoull(f[21]) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::istringstream lines(*status);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("Uid:")) p.uid = std::stoi(line.substr(4));
  auto cmdline = read_file(dir + "/cmdline");
  std::string cmd = cmdline ? *cmdline : "";
  while (!cmd.empty() && cmd.back() == '\0') cmd.pop_back();
  std::replace(cmd.begin(), cmd.end(), '\0', ' ');
  p.command = cmd.empty() ? "[" + comm + "]" : cmd;
  return p;
}

}  // namespace

Result<Container> Engine::Impl::running(const std::string& name) {
  auto r = TRY(find(name));
  std::lock_guard lock(mu);
  if (r->c.state != State::kRunning)
    return make_error(ErrorCode::kConflict, "container {} is not running", r->c.name);
  return r->c;
}

Result<ExecRequest> parse_exec_request(const Json& body) {
  if (!body.is_object())
    return make_error(ErrorCode::kInvalidArgument, "body must be {\"command\": [...]}");
  ExecRequest r;
  for (const auto& [k, v] : body.items()) {
    if (k == "command")
      r.command = TRY(string_list(v, k));
    else if (k == "env")
      r.env = TRY(string_list(v, k));
    else if (k == "workdir")
      r.workdir = TRY(string_field(v, k));
    else if (k == "user")
      r.user = TRY(string_field(v, k));
    else
      return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
  }
  if (r.command.empty() || r.command[0].empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'command' is required: the program and its arguments");
  for (const auto& e : r.env)
    if (e.find('=') == std::string::npos || e.starts_with("="))
      return make_error(ErrorCode::kInvalidArgument, "env '{}': use K=V", e);
  if (!r.workdir.empty() && !r.workdir.starts_with("/"))
    return make_error(ErrorCode::kInvalidArgument, "workdir '{}' must be absolute", r.workdir);
  return r;
}

Result<ExecResult> Engine::exec(const std::string& name, const ExecRequest& request,
                                std::chrono::milliseconds timeout) {
  return impl_->exec_in(TRY(impl_->running(name)), request, timeout);
}

void append_exec_args(std::vector<std::string>& argv, const std::string& id,
                      const ExecRequest& request) {
  for (const auto& e : request.env) argv.insert(argv.end(), {"--env", e});
  if (!request.workdir.empty()) argv.insert(argv.end(), {"--cwd", request.workdir});
  if (!request.user.empty()) argv.insert(argv.end(), {"--user", request.user});
  argv.push_back(id);
  argv.push_back("--");
  argv.insert(argv.end(), request.command.begin(), request.command.end());
}

Result<ExecResult> Engine::Impl::exec_in(const Container& c, const ExecRequest& request,
                                         std::chrono::milliseconds timeout) {
  const std::string& id = c.id;
  const std::string& cname = c.name;
  std::vector<std::string> argv = {o.runtime, "--root", runtime_root.string(), "exec"};
  append_exec_args(argv, id, request);
  auto p = run_process(argv, {.timeout = timeout});
  if (!p)
    return make_error(
        p.error().code() == ErrorCode::kTimeout ? ErrorCode::kTimeout : p.error().code(),
        "exec in container {}: {}", cname, p.error().message());
  ExecResult out{.exit_code = p->term_signal ? 128 + p->term_signal : p->exit_code,
                 .out = std::move(p->out),
                 .err = std::move(p->err),
                 .truncated = false};
  cap(out.out, out.truncated);
  cap(out.err, out.truncated);
  return out;
}

Result<std::vector<ProcessInfo>> Engine::top(const std::string& name) {
  Container c = TRY(impl_->running(name));
  const std::string& id = c.id;
  const std::string& cname = c.name;
  auto p = run_process(
      {impl_->o.runtime, "--root", impl_->runtime_root.string(), "ps", "--format", "json", id},
      {.timeout = std::chrono::seconds(10)});
  if (!p)
    return make_error(p.error().code(), "processes of container {}: {}", cname,
                      p.error().message());
  if (!p->ok())
    return make_error(ErrorCode::kConflict, "processes of container {}: {}", cname,
                      std::string(trim(p->err)));
  auto pids = parse_json(p->out);
  if (!pids || !pids->is_array())
    return make_error(ErrorCode::kInternal, "runtime ps of container {}: not a JSON list", cname);
  std::vector<ProcessInfo> out;
  for (const auto& pid : *pids)
    if (pid.is_number_integer())
      if (auto info = read_process(pid.get<int>())) out.push_back(std::move(*info));
  return out;
}

}  // namespace vireo::containers
