// Engine::exec: a command run in a running container through `vireo-runtime exec`, output
// captured (no terminal, no stdin).
#include <algorithm>

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

}  // namespace

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
  auto r = TRY(impl_->find(name));
  std::string id, cname;
  {
    std::lock_guard lock(impl_->mu);
    if (r->c.state != State::kRunning)
      return make_error(ErrorCode::kConflict, "container {} is not running", r->c.name);
    id = r->c.id;
    cname = r->c.name;
  }
  std::vector<std::string> argv = {impl_->o.runtime, "--root", impl_->runtime_root.string(),
                                   "exec"};
  for (const auto& e : request.env) argv.insert(argv.end(), {"--env", e});
  if (!request.workdir.empty()) argv.insert(argv.end(), {"--cwd", request.workdir});
  if (!request.user.empty()) argv.insert(argv.end(), {"--user", request.user});
  argv.push_back(id);
  argv.push_back("--");
  argv.insert(argv.end(), request.command.begin(), request.command.end());
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

}  // namespace vireo::containers
