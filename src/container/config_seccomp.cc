// config.json: linux.seccomp. Names are checked here so that a typo fails before anything is
// created; seccomp.cc turns the checked rules into a filter.
#include <set>

#include "container/config_parse.h"
#include "container/seccomp_names.h"

namespace vireo::container {

namespace {

std::string J(const std::string& path, std::string_view key) {
  return JsonFields::join(path, key);
}

Result<std::vector<SeccompArg>> parse_args(const JsonFields& f, const Json& j,
                                           const std::string& path) {
  TRY(f.expect_array(j, path));
  std::vector<SeccompArg> out;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = JsonFields::index(path, i);
    TRY(f.expect_object(j[i], p));
    f.warn_unknown(j[i], p, {"index", "value", "valueTwo", "op"});
    SeccompArg a;
    a.index = static_cast<uint32_t>(
        TRY(f.unsigned_int(*TRY(f.require(j[i], p, "index")), J(p, "index"), 5)));
    a.value = TRY(f.unsigned_int(*TRY(f.require(j[i], p, "value")), J(p, "value"), UINT64_MAX));
    TRY(f.get(j[i], p, "valueTwo", a.value_two));
    a.op = TRY(f.string(*TRY(f.require(j[i], p, "op")), J(p, "op")));
    if (seccomp_operator(a.op) < 0)
      return f.fail(J(p, "op"), fmt::format("unknown seccomp operator \"{}\"", a.op));
    out.push_back(a);
  }
  return out;
}

Result<void> check_action(const JsonFields& f, const std::string& action, const std::string& path) {
  if (!seccomp_action_known(action))
    return f.fail(path, fmt::format("unknown seccomp action \"{}\"", action));
  return {};
}

}  // namespace

Result<Seccomp> parse_seccomp(const JsonFields& f, const Json& j, const std::string& p) {
  TRY(f.expect_object(j, p));
  f.warn_unknown(j, p,
                 {"defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
                  "listenerMetadata", "syscalls"});
  Seccomp s;
  s.default_action = TRY(f.string(*TRY(f.require(j, p, "defaultAction")), J(p, "defaultAction")));
  TRY(check_action(f, s.default_action, J(p, "defaultAction")));
  TRY(f.get(j, p, "defaultErrnoRet", s.default_errno_ret));
  TRY(f.get(j, p, "architectures", s.architectures));
  for (size_t i = 0; i < s.architectures.size(); ++i)
    if (!seccomp_arch_known(s.architectures[i]))
      return f.fail(JsonFields::index(J(p, "architectures"), i),
                    fmt::format("unknown architecture \"{}\"", s.architectures[i]));
  TRY(f.get(j, p, "flags", s.flags));
  static const std::set<std::string> kFlags = {
      "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};
  for (size_t i = 0; i < s.flags.size(); ++i)
    if (!kFlags.contains(s.flags[i]))
      return f.fail(JsonFields::index(J(p, "flags"), i),
                    fmt::format("unknown seccomp flag \"{}\"", s.flags[i]));
  TRY(f.get(j, p, "listenerPath", s.listener_path));
  if (!s.listener_path.empty() && !s.listener_path.starts_with('/'))
    return f.fail(J(p, "listenerPath"), "must be an absolute path");
  TRY(f.get(j, p, "listenerMetadata", s.listener_metadata));
  bool notify = s.default_action == "SCMP_ACT_NOTIFY";
  if (const Json* v = JsonFields::find(j, "syscalls")) {
    std::string sp = J(p, "syscalls");
    TRY(f.expect_array(*v, sp));
    for (size_t i = 0; i < v->size(); ++i) {
      std::string rp = JsonFields::index(sp, i);
      const Json& r = (*v)[i];
      TRY(f.expect_object(r, rp));
      f.warn_unknown(r, rp,
                     {"names", "action", "errnoRet", "args", "comment", "includes", "excludes"});
      SeccompRule rule;
      rule.names = TRY(f.string_list(*TRY(f.require(r, rp, "names")), J(rp, "names")));
      rule.action = TRY(f.string(*TRY(f.require(r, rp, "action")), J(rp, "action")));
      TRY(check_action(f, rule.action, J(rp, "action")));
      notify = notify || rule.action == "SCMP_ACT_NOTIFY";
      TRY(f.get(r, rp, "errnoRet", rule.errno_ret));
      if (const Json* a = JsonFields::find(r, "args"))
        rule.args = TRY(parse_args(f, *a, J(rp, "args")));
      s.syscalls.push_back(std::move(rule));
    }
  }
  if (notify && s.listener_path.empty())
    return f.fail(J(p, "listenerPath"), "SCMP_ACT_NOTIFY needs a listenerPath");
  return s;
}

}  // namespace vireo::container
