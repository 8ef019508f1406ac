#include "container/state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/fd.h"
#include "base/file.h"
#include "container/linux_sys.h"

namespace vireo::container {

namespace fs = std::filesystem;

std::string_view to_string(Status s) {
  switch (s) {
    case Status::kCreating:
      return "creating";
    case Status::kCreated:
      return "created";
    case Status::kRunning:
      return "running";
    case Status::kPaused:
      return "paused";
    case Status::kStopped:
      return "stopped";
  }
  return "unknown";
}

namespace {

Json hook_to_json(const Hook& h) {
  Json j{{"path", h.path}, {"args", h.args}, {"env", h.env}};
  if (h.timeout) j["timeout"] = *h.timeout;
  return j;
}

Hook hook_from_json(const Json& j) {
  Hook h;
  h.path = j.at("path").get<std::string>();
  h.args = j.at("args").get<std::vector<std::string>>();
  h.env = j.at("env").get<std::vector<std::string>>();
  if (j.contains("timeout")) h.timeout = j["timeout"].get<int>();
  return h;
}

// Replaces path atomically (write a temp file, rename). No fsync: the state lives under /run,
// which does not survive a reboot anyway, and an fsync per create would cost more than the
// whole container start.
Result<void> replace_file(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno_error(fmt::format("create {}", tmp.string()));
  TRY(sys::write_all(fd.get(), content));
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return errno_error(fmt::format("rename {}", path.string()));
  return {};
}

}  // namespace

Json State::to_json() const {
  Json hooks = Json::array();
  for (const auto& h : poststop) hooks.push_back(hook_to_json(h));
  return Json{{"id", id},
              {"status", std::string(to_string(saved_status))},
              {"pid", pid},
              {"start_time", start_time},
              {"bundle", bundle.string()},
              {"rootfs", rootfs.string()},
              {"created", created},
              {"annotations", annotations},
              {"cgroup", cgroup},
              {"poststop", hooks},
              {"systemd_cgroup", systemd_cgroup}};
}

Result<State> State::from_json(const Json& j) {
  try {
    State s;
    s.id = j.at("id").get<std::string>();
    s.saved_status =
        j.at("status").get<std::string>() == "created" ? Status::kCreated : Status::kCreating;
    s.pid = j.at("pid").get<pid_t>();
    s.start_time = j.at("start_time").get<uint64_t>();
    s.bundle = j.at("bundle").get<std::string>();
    s.rootfs = j.at("rootfs").get<std::string>();
    s.created = j.at("created").get<std::string>();
    s.annotations = j.at("annotations").get<std::map<std::string, std::string>>();
    s.cgroup = j.at("cgroup");
    for (const auto& h : j.at("poststop")) s.poststop.push_back(hook_from_json(h));
    s.systemd_cgroup = j.value("systemd_cgroup", false);
    return s;
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, "corrupt state file: {}", e.what());
  }
}

StateDir::StateDir(fs::path root, std::string id) : dir_(root / id), id_(std::move(id)) {}

Result<void> StateDir::validate_id(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 1024 && id != "." && id != "..";
  for (char c : id)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' ||
                c == '-');
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid container ID \"{}\": use 1-1024 of A-Z a-z 0-9 _ . + -", id);
  return {};
}

Result<void> StateDir::create() const {
  TRY(make_dirs(dir_.parent_path(), 0711));
  if (::mkdir(dir_.c_str(), 0711) != 0) {
    if (errno == EEXIST)
      return make_error(ErrorCode::kAlreadyExists, "container \"{}\" already exists", id_);
    return errno_error(fmt::format("create {}", dir_.string()));
  }
  return {};
}

Result<State> StateDir::load() const {
  auto text = read_file(dir_ / "state.json");
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound)
      return make_error(ErrorCode::kNotFound, "container \"{}\" does not exist", id_);
    return std::unexpected(std::move(text.error()));
  }
  auto j = parse_json(*text);
  if (!j) return std::unexpected(std::move(j.error()).with_context("state of " + id_));
  return State::from_json(*j);
}

Result<void> StateDir::save(const State& s) const {
  return replace_file(dir_ / "state.json", s.to_json().dump());
}

void StateDir::remove() const {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

Status current_status(const State& s, const StateDir& dir) {
  if (s.saved_status == Status::kCreating) {
    // A create that died half-way leaves "creating" behind; it never ran anything.
    if (s.pid == 0) return Status::kCreating;
  }
  auto st = sys::proc_stat(s.pid);
  if (s.pid <= 0 || !st || st->start_time != s.start_time || st->state == 'Z' || st->state == 'X')
    return Status::kStopped;
  if (s.saved_status == Status::kCreating) return Status::kCreating;
  if (::access(dir.fifo().c_str(), F_OK) == 0) return Status::kCreated;
  if (auto cg = Cgroup::from_json(s.cgroup)) {
    if (auto frozen = cg->frozen(); frozen && *frozen) return Status::kPaused;
  }
  return Status::kRunning;
}

Json oci_state(const State& s, Status status) {
  Json j{{"ociVersion", "1.2.0"},
         {"id", s.id},
         {"status", std::string(to_string(status))},
         {"pid", status == Status::kStopped ? 0 : s.pid},
         {"bundle", s.bundle.string()},
         {"rootfs", s.rootfs.string()},
         {"created", s.created},
         {"owner", ""}};
  if (!s.annotations.empty()) j["annotations"] = s.annotations;
  return j;
}

std::vector<std::string> list_ids(const fs::path& root) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec))
    if (entry.is_directory(ec) && fs::exists(entry.path() / "state.json", ec))
      ids.push_back(entry.path().filename().string());
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace vireo::container
