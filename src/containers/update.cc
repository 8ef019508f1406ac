// Engine::update: new resource limits for a container, live and saved.
#include <poll.h>

#include <sys/socket.h>
#include <algorithm>

#include "base/file.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "containers/engine.h"
#include "containers/engine_impl.h"
#include "containers/rootless.h"
#include "monitor/frames.h"

namespace vireo::containers {

namespace {

constexpr int64_t kMinMemory = 6 << 20;  // as Docker: less cannot start a process

Result<int64_t> positive_int(const Json& v, const std::string& field) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    return make_error(ErrorCode::kInvalidArgument, "field '{}' must be a positive integer", field);
  return v.get<int64_t>();
}

// Sends the monitor the new published ports over its attach socket and reads its answer.
Result<void> publish_live(Engine& engine, const std::string& id, const std::string& specs) {
  Fd fd = TRY(engine.attach(id, std::chrono::seconds(5)));
  const std::string frame = monitor::make_frame(monitor::FrameType::kPublish, specs);
  if (::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(frame.size()))
    return errno_error("send the ports to the container's monitor");
  // Output frames of the container may come first: skip them until the result.
  std::string in;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    while (in.size() >= monitor::kFrameHeader) {
      const uint32_t len = monitor::frame_length(in);
      if (in.size() < monitor::kFrameHeader + len) break;
      if (static_cast<monitor::FrameType>(in[0]) == monitor::FrameType::kResult) {
        std::string error = in.substr(monitor::kFrameHeader, len);
        if (error.empty()) return {};
        return make_error(ErrorCode::kConflict, "{}", error);
      }
      in.erase(0, monitor::kFrameHeader + len);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return make_error(ErrorCode::kTimeout, "the container's monitor did not answer");
    char buf[4096];
    ssize_t got = ::recv(fd.get(), buf, sizeof buf, 0);
    if (got <= 0)
      return make_error(ErrorCode::kConflict, "the container exited while its ports changed");
    in.append(buf, static_cast<size_t>(got));
  }
}

}  // namespace

Result<UpdateRequest> parse_update_request(const Json& body) {
  if (!body.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "body must be {\"memory\"?, \"cpus\"?, \"pids_limit\"?, \"ports\"?}");
  UpdateRequest u;
  for (const auto& [k, v] : body.items()) {
    if (k == "memory") {
      u.memory = TRY(positive_int(v, k));
      if (*u.memory < kMinMemory)
        return make_error(ErrorCode::kInvalidArgument, "memory {} is below the minimum of 6 MiB",
                          format_bytes(static_cast<uint64_t>(*u.memory)));
    } else if (k == "cpus") {
      if (!v.is_number() || v.get<double>() <= 0)
        return make_error(ErrorCode::kInvalidArgument, "field 'cpus' must be a positive number");
      u.cpus = v.get<double>();
    } else if (k == "pids_limit") {
      u.pids_limit = TRY(positive_int(v, k));
    } else if (k == "ports") {
      u.ports = TRY(parse_ports(v));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown field '{}'", k);
    }
  }
  if (!u.memory && !u.cpus && !u.pids_limit && !u.ports)
    return make_error(ErrorCode::kInvalidArgument,
                      "nothing to update: give memory, cpus, pids_limit or ports");
  return u;
}

Result<Container> Engine::update(const std::string& name, const UpdateRequest& u) {
  auto r = TRY(impl_->find(name));
  std::lock_guard action(r->action);
  CreateRequest req;
  bool running = false;
  std::string id;
  {
    std::lock_guard lock(impl_->mu);
    req = r->req;
    running = r->c.state == State::kRunning;
    id = r->c.id;
  }
  if (u.memory) req.memory = u.memory;
  if (u.cpus) req.cpus = u.cpus;
  if (u.pids_limit) req.pids_limit = u.pids_limit;
  if (u.memory || u.cpus || u.pids_limit) TRY(check_rootless(req));  // a delegated cgroup
  if (u.ports) {
    req.ports = *u.ports;
    TRY(check_network_request(req));
    {
      std::lock_guard lock(impl_->mu);
      TRY(impl_->check_ports_free(req, r.get()));
    }
    // The forwards of the new set first (those already there stay), then the monitor's
    // listeners; a failure undoes the new forwards and leaves everything as it was.
    std::vector<PublishedPort> added, dropped;
    auto has = [](const std::vector<PublishedPort>& set, const PublishedPort& p) {
      return std::find(set.begin(), set.end(), p) != set.end();
    };
    for (const auto& p : req.ports)
      if (!has(r->req.ports, p)) added.push_back(p);
    for (const auto& p : r->req.ports)
      if (!has(req.ports, p)) dropped.push_back(p);
    Container snapshot;
    {
      std::lock_guard lock(impl_->mu);
      snapshot = r->c;
    }
    impl_->unforward_ports(dropped);
    Rollback undo;
    undo.add([this, &r, dropped] {
      Rollback ignored;
      (void)impl_->forward_ports(r->c, dropped, ignored);
      ignored.commit();
    });
    TRY(impl_->forward_ports(snapshot, added, undo));
    if (running) {
      std::string specs;
      for (const auto& p : req.ports) specs += monitor_publish_spec(p, r->c.network->ip) + "\n";
      TRY_CTX(publish_live(*this, id, specs), "ports of container {}", r->c.name);
    }
    undo.commit();
  }
  const bool limits = u.memory || u.cpus || u.pids_limit;
  Json resources = resources_json(req);
  if (running && limits) {
    auto p = run_process(
        {impl_->o.runtime, "--root", impl_->runtime_root.string(), "update", "-r", "-", id},
        {.input = resources.dump(), .timeout = std::chrono::seconds(10)});
    if (!p) return std::unexpected(p.error());
    if (!p->ok())
      return make_error(ErrorCode::kConflict, "update container {}: {}", r->c.name,
                        std::string(trim(p->err)));
  }
  // The bundle's config.json too: the next start runs with the new limits.
  auto config_path = r->dir / "bundle" / "config.json";
  Json config = TRY(parse_json(TRY(read_file(config_path))));
  if (limits)
    for (const auto& [k, v] : resources.items()) config["linux"]["resources"][k] = v;
  TRY(write_file_atomic(config_path, config.dump(2) + "\n", 0600));
  TRY(write_file_atomic(r->dir / "spec.json", to_json(req).dump(2) + "\n", 0600));
  std::lock_guard lock(impl_->mu);
  r->req = req;
  r->c.config = to_json(req);
  return r->c;
}

}  // namespace vireo::containers
