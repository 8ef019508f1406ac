// VM snapshots: POST/GET /1.0/vms/{name}/snapshots, POST .../snapshots/{snap}/restore, DELETE
// .../snapshots/{snap}. A snapshot saves every writable disk of the definition: a volume disk as
// a read-only snapshot volume in its pool (thin: O(1), dir: a reflink or sparse copy), an
// image-file disk as a reflink or sparse copy in the snapshot's directory. On a running VM the
// guest is paused (QMP stop drains and flushes every block device) while the disks are saved,
// so the snapshot is crash-consistent. Everything runs under action_mutex_, like start and stop.
#include "daemon/vm_snapshots.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "base/time.h"
#include "compute/migration.h"
#include "daemon/vm_definition.h"
#include "daemon/vms.h"
#include "storage/storaged_client.h"

namespace vireo::daemon {

namespace {

namespace fs = std::filesystem;
constexpr const char* kCollection = "vms";

// Copies the file at from to the new file to (mode 0600): a reflink when the file system can,
// else the data segments only, so sparse images stay sparse.
Result<void> copy_file_sparse(const fs::path& from, const fs::path& to) {
  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return errno_error("open " + from.string());
  Fd out(::open(to.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
  if (!out) return errno_error("create " + to.string());
  auto fail = [&](Error e) -> Result<void> {
    ::unlink(to.c_str());
    return std::unexpected(std::move(e).with_context("copy " + from.string()));
  };
  if (::ioctl(out.get(), FICLONE, in.get()) == 0) return {};
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return fail(errno_error("stat").error());
  if (::ftruncate(out.get(), st.st_size) != 0) return fail(errno_error("truncate").error());
  std::vector<char> buf(1 << 20);
  for (off_t pos = 0; pos < st.st_size;) {
    off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return fail(errno_error("seek data").error());
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return fail(errno_error("seek hole").error());
    for (off_t at = data; at < hole;) {
      ssize_t n = ::pread(in.get(), buf.data(), size_t(std::min<off_t>(hole - at, buf.size())), at);
      if (n <= 0)
        return fail(n < 0 ? errno_error("read").error() : Error(ErrorCode::kIo, "short read"));
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::pwrite(out.get(), buf.data() + done, size_t(n - done), at + done);
        if (w < 0) return fail(errno_error("write").error());
        done += w;
      }
      at += n;
    }
    pos = hole;
  }
  if (::fsync(out.get()) != 0) return fail(errno_error("fsync").error());
  return {};
}

// Replaces target with a copy of from: the copy is made next to target first, then one rename
// switches, so target is never half-restored.
Result<void> restore_file(const fs::path& from, const fs::path& target) {
  const fs::path tmp = target.parent_path() / ("." + target.filename().string() + ".vireo-restore");
  ::unlink(tmp.c_str());
  TRY(copy_file_sparse(from, tmp));
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0) ::chmod(tmp.c_str(), st.st_mode & 07777);
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    auto e = errno_error("rename over " + target.string());
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

constexpr const char* kStateFdName = "vireo-state";
constexpr const char* kStateFile = "memory.state";
constexpr auto kStateTimeout = std::chrono::minutes(10);
constexpr auto kStatePoll = std::chrono::milliseconds(20);

// Saves the paused guest's RAM and device state into file: a migration to an fd handed over
// with getfd (QEMU 7.2 has no file: URI and the sandbox forbids exec:). QEMU is left in
// "postmigrate", its disks flushed and inactive until "cont". Returns the state's size.
Result<uint64_t> save_state(compute::QmpClient& qmp, const fs::path& file) {
  Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return errno_error("create " + file.string());
  TRY(qmp.execute_with_fd("getfd", Json{{"fdname", kStateFdName}}, fd.get()));
  TRY_CTX(compute::migrate(qmp, fmt::format("fd:{}", kStateFdName), {.timeout = kStateTimeout}),
          "save the VM state");
  if (::fsync(fd.get()) != 0) return errno_error("fsync " + file.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("stat " + file.string());
  return uint64_t(st.st_size);
}

// Loads a state saved by save_state into a QEMU started with -incoming defer and waits until
// it is in; the guest stays paused.
Result<void> load_state(compute::QmpClient& qmp, const fs::path& file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + file.string());
  TRY(qmp.execute_with_fd("getfd", Json{{"fdname", kStateFdName}}, fd.get()));
  TRY(compute::start_incoming(qmp, fmt::format("fd:{}", kStateFdName)));
  const auto deadline = std::chrono::steady_clock::now() + kStateTimeout;
  for (;;) {
    // The incoming side has no stats worth an event handler: poll as compute::migrate does.
    auto stats = compute::parse_query_migrate(TRY(qmp.execute("query-migrate")));
    if (stats.status == "completed") return {};
    if (stats.status == "failed" || stats.status == "cancelled")
      return make_error(ErrorCode::kIo, "load the VM state: {}{}", stats.status,
                        stats.error.empty() ? "" : ": " + stats.error);
    if (std::chrono::steady_clock::now() > deadline)
      return make_error(ErrorCode::kTimeout, "load the VM state: still '{}' after {} minutes",
                        stats.status, kStateTimeout.count());
    std::this_thread::sleep_for(kStatePoll);
  }
}

int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

}  // namespace

Result<std::string> snapshot_volume_name(const std::string& volume, const std::string& snapshot) {
  std::string name = volume + ".vmsnap." + snapshot;
  if (name.size() > 63)
    return make_error(ErrorCode::kInvalidArgument,
                      "snapshot name '{}' is too long for volume '{}': its storage snapshot '{}' "
                      "would pass the 63-character limit of volume names",
                      snapshot, volume, name);
  return name;
}

Result<Json> VmManager::storaged_call(const Json& request) {
  if (!storage_) return make_error(ErrorCode::kUnavailable, "storage is not available");
  auto client = TRY(storage::StoragedClient::connect(storage_paths(root_).control));
  auto reply = client.call(request);
  if (!reply)
    return std::unexpected(
        std::move(reply.error()).with_context(request.value("op", std::string("storage"))));
  reply->erase("ok");
  return reply;
}

Result<Json> VmManager::create_snapshot(const std::string& name, const std::string& snap,
                                        bool memory) {
  std::lock_guard serial(action_mutex_);
  auto row = TRY(store_.get_object(kCollection, name));
  TRY(validate_name(snap, "snapshot"));
  const fs::path dir = run_dir(name) / "snapshots" / snap;
  if (fs::exists(dir))
    return make_error(ErrorCode::kAlreadyExists, "VM '{}' has a snapshot '{}'", name, snap);
  auto process = running(name);
  if (memory && !process)
    return make_error(ErrorCode::kConflict,
                      "VM '{}' is not running: a snapshot with memory state needs a running VM",
                      name);
  // The saved state fits only a QEMU with the same devices: the one the definition gives.
  if (memory && read_devices(name).value_or(Json()) != initial_devices(row))
    return make_error(ErrorCode::kConflict,
                      "VM '{}' has devices hot-plugged or unplugged since it started: restart it "
                      "before a snapshot with memory state",
                      name);
  // Plan and check everything before the guest pauses.
  Json disks = Json::array();
  const Json defined = row.spec.value("disks", Json::array());
  for (size_t i = 0; i < defined.size(); ++i) {
    const Json& d = defined[i];
    if (d.value("readonly", false)) continue;  // its content cannot change
    Json entry = {{"index", i}};
    if (d.contains("volume")) {
      auto [pool, vol] = TRY(split_volume(d["volume"].get<std::string>()));
      std::string snap_vol = TRY(snapshot_volume_name(vol, snap));
      TRY_CTX(storaged_call({{"op", "vol.show"}, {"pool", pool}, {"name", vol}}), "disk {}", i);
      if (storaged_call({{"op", "vol.show"}, {"pool", pool}, {"name", snap_vol}}))
        return make_error(ErrorCode::kAlreadyExists,
                          "volume {}/{} exists: it is where snapshot '{}' of disk {} would go",
                          pool, snap_vol, snap, i);
      entry["volume"] = pool + "/" + vol;
      entry["snapshot"] = pool + "/" + snap_vol;
    } else {
      entry["path"] = d.value("path", "");
      entry["format"] = d.value("format", "raw");
      entry["file"] = fmt::format("disk{}.{}", i, d.value("format", "raw"));
    }
    disks.push_back(std::move(entry));
  }
  TRY(make_dirs(dir, 0700));
  Rollback undo;
  undo.add([dir] {
    std::error_code ec;
    fs::remove_all(dir, ec);
  });
  std::string status = "stopped";
  if (process) status = TRY(process->status()) == "running" ? "running" : "paused";
  const auto t0 = std::chrono::steady_clock::now();
  if (status == "running") {
    TRY(process->pause());
    undo.add([process] { (void)process->resume(); });
  }
  uint64_t state_bytes = 0;
  if (memory) state_bytes = TRY(save_state(process->qmp(), dir / kStateFile));
  for (const Json& disk : disks) {
    if (disk.contains("volume")) {
      auto [pool, vol] = TRY(split_volume(disk["volume"].get<std::string>()));
      auto [snap_pool, snap_vol] = TRY(split_volume(disk["snapshot"].get<std::string>()));
      TRY_CTX(storaged_call(
                  {{"op", "vol.snapshot"}, {"pool", pool}, {"name", vol}, {"snapshot", snap_vol}}),
              "snapshot of disk {}", disk["index"].get<size_t>());
      undo.add([this, snap_pool, snap_vol] {
        (void)storaged_call({{"op", "vol.rm"}, {"pool", snap_pool}, {"name", snap_vol}});
      });
    } else {
      TRY_CTX(
          copy_file_sparse(disk["path"].get<std::string>(), dir / disk["file"].get<std::string>()),
          "snapshot of disk {}", disk["index"].get<size_t>());
    }
  }
  int64_t pause_ms = 0;
  if (status == "running" || memory) {
    TRY(process->resume());  // after a save, "cont" also takes the disks back
    pause_ms = ms_since(t0);
    // A VM the user had paused is paused again (it ran for the time of one QMP round trip).
    if (status == "paused") TRY(process->pause());
  }
  Json meta = {{"name", snap},     {"created_at", now_timestamp()},
               {"memory", memory}, {"status", status},
               {"disks", disks},   {"pause_ms", pause_ms}};
  if (memory) {
    meta["memory_bytes"] = state_bytes;
    meta["definition"] = row.spec;  // a restore needs the same devices
  }
  TRY(write_file_atomic(dir / "meta.json", meta.dump(2) + "\n", 0600));
  undo.commit();
  spdlog::info("vm {}: snapshot {} taken ({} disks, guest paused {} ms)", name, snap, disks.size(),
               pause_ms);
  lifecycle(name, "snapshot-created", Json{{"snapshot", snap}});
  return meta;
}

Result<Json> VmManager::list_snapshots(const std::string& name) {
  TRY(store_.get_object(kCollection, name));
  Json list = Json::array();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir(name) / "snapshots", ec)) {
    auto text = read_file(entry.path() / "meta.json");
    if (!text) continue;  // one being taken, or what a crash left
    auto meta = parse_json(*text);
    if (meta && meta->is_object()) list.push_back(*meta);
  }
  std::sort(list.begin(), list.end(), [](const Json& a, const Json& b) {
    return a.value("created_at", "") < b.value("created_at", "");
  });
  return list;
}

namespace {

Result<Json> read_meta(const fs::path& dir, const std::string& vm, const std::string& snap) {
  TRY(validate_name(snap, "snapshot"));
  auto text = read_file(dir / "meta.json");
  if (!text) return make_error(ErrorCode::kNotFound, "VM '{}' has no snapshot '{}'", vm, snap);
  auto meta = parse_json(*text);
  if (!meta || !meta->is_object() || !(*meta)["disks"].is_array())
    return make_error(ErrorCode::kInternal, "snapshot '{}' of VM '{}': unreadable {}", snap, vm,
                      (dir / "meta.json").string());
  return *meta;
}

}  // namespace

Result<Json> VmManager::restore_snapshot(const std::string& name, const std::string& snap) {
  std::lock_guard serial(action_mutex_);
  TRY(store_.get_object(kCollection, name));
  const fs::path dir = run_dir(name) / "snapshots" / snap;
  Json meta = TRY(read_meta(dir, name, snap));
  // Everything the restore needs must be there before anything changes.
  for (const Json& disk : meta["disks"]) {
    if (disk.contains("volume")) {
      auto [pool, vol] = TRY(split_volume(disk["volume"].get<std::string>()));
      auto [snap_pool, snap_vol] = TRY(split_volume(disk["snapshot"].get<std::string>()));
      TRY_CTX(storaged_call({{"op", "vol.show"}, {"pool", pool}, {"name", vol}}),
              "snapshot '{}': disk volume {}/{}", snap, pool, vol);
      TRY_CTX(storaged_call({{"op", "vol.show"}, {"pool", snap_pool}, {"name", snap_vol}}),
              "snapshot '{}': its volume {}/{}", snap, snap_pool, snap_vol);
    } else if (!fs::exists(dir / disk.value("file", ""))) {
      return make_error(ErrorCode::kNotFound, "snapshot '{}': {} is missing", snap,
                        (dir / disk.value("file", "")).string());
    }
  }
  const bool memory = meta.value("memory", false);
  if (memory) {
    auto row = TRY(store_.get_object(kCollection, name));
    if (!fs::exists(dir / kStateFile))
      return make_error(ErrorCode::kNotFound, "snapshot '{}': {} is missing", snap,
                        (dir / kStateFile).string());
    if (meta.value("definition", Json()) != row.spec)
      return make_error(ErrorCode::kConflict,
                        "VM '{}' was changed since snapshot '{}': its saved memory state needs "
                        "the devices it was taken with",
                        name, snap);
  }
  bool was_running = false;
  if (running(name)) {
    TRY(stop(name, true, 0));
    was_running = true;
  }
  // Image files first: each copy is made beside its disk and renamed over it.
  for (const Json& disk : meta["disks"])
    if (!disk.contains("volume"))
      TRY_CTX(restore_file(dir / disk["file"].get<std::string>(), disk["path"].get<std::string>()),
              "restore disk {}", disk.value("index", 0));
  for (const Json& disk : meta["disks"]) {
    if (!disk.contains("volume")) continue;
    auto [pool, vol] = TRY(split_volume(disk["volume"].get<std::string>()));
    auto [snap_pool, snap_vol] = TRY(split_volume(disk["snapshot"].get<std::string>()));
    TRY_CTX(storaged_call(
                {{"op", "vol.restore"}, {"pool", pool}, {"name", vol}, {"snapshot", snap_vol}}),
            "restore disk {}", disk.value("index", 0));
  }
  if (memory) {
    TRY_CTX(start(name, StartMode::kIncoming), "restore snapshot '{}'", snap);
    auto process = running(name);
    Result<void> loaded = process ? load_state(process->qmp(), dir / kStateFile)
                                  : make_error(ErrorCode::kUnavailable, "QEMU exited");
    if (loaded && meta.value("status", "") == "running") loaded = process->resume();
    if (!loaded) {
      (void)stop(name, true, 0);
      return std::unexpected(
          std::move(loaded.error()).with_context(fmt::format("restore snapshot '{}'", snap)));
    }
  }
  spdlog::info("vm {}: restored snapshot {}", name, snap);
  lifecycle(name, "snapshot-restored", Json{{"snapshot", snap}});
  return Json{{"name", name}, {"snapshot", snap}, {"stopped", was_running}, {"memory", memory}};
}

Result<Json> VmManager::remove_snapshot(const std::string& name, const std::string& snap) {
  std::lock_guard serial(action_mutex_);
  TRY(store_.get_object(kCollection, name));
  const fs::path dir = run_dir(name) / "snapshots" / snap;
  Json meta = TRY(read_meta(dir, name, snap));
  for (const Json& disk : meta["disks"]) {
    if (!disk.contains("snapshot")) continue;
    auto [pool, vol] = TRY(split_volume(disk["snapshot"].get<std::string>()));
    auto r = storaged_call({{"op", "vol.rm"}, {"pool", pool}, {"name", vol}});
    if (!r && r.error().code() != ErrorCode::kNotFound)
      return std::unexpected(std::move(r.error()).with_context("snapshot '" + snap + "'"));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return make_error(ErrorCode::kIo, "remove {}: {}", dir.string(), ec.message());
  lifecycle(name, "snapshot-deleted", Json{{"snapshot", snap}});
  return Json{{"name", name}, {"snapshot", snap}};
}

// For vm rm: the snapshot volumes go (the files go with the run directory).
Result<void> VmManager::remove_all_snapshots(const std::string& name) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir(name) / "snapshots", ec)) {
    auto text = read_file(entry.path() / "meta.json");
    auto meta = text ? parse_json(*text) : Result<Json>(Json());
    if (!meta || !meta->is_object() || !(*meta)["disks"].is_array()) continue;
    for (const Json& disk : (*meta)["disks"]) {
      if (!disk.contains("snapshot") || !disk["snapshot"].is_string()) continue;
      auto pv = split_volume(disk["snapshot"].get<std::string>());
      if (!pv) continue;
      auto r = storaged_call({{"op", "vol.rm"}, {"pool", pv->first}, {"name", pv->second}});
      if (!r && r.error().code() != ErrorCode::kNotFound)
        return std::unexpected(std::move(r.error()).with_context(
            fmt::format("snapshot volume {}", disk["snapshot"].get<std::string>())));
    }
  }
  return {};
}

void VmManager::add_snapshot_routes(server::Router& router) {
  using server::Method;
  using server::Request;
  using server::Response;
  const std::string base = "/1.0/vms/{name}/snapshots";
  router.add_sync(Method::kGet, base, [this](Request& req) -> Result<Response> {
    return Response::json(TRY(list_snapshots(req.params["name"])));
  });
  router.add_sync(Method::kPost, base, [this](Request& req) -> Result<Response> {
    const std::string name = req.params["name"];
    TRY(store_.get_object(kCollection, name));
    Json body = TRY(req.json_body());
    if (!body.is_object() || !body.contains("name") || !body["name"].is_string() ||
        (body.contains("memory") && !body["memory"].is_boolean()))
      return make_error(ErrorCode::kInvalidArgument,
                        "body must be {\"name\": SNAPSHOT, \"memory\": true|false}");
    const std::string snap = body["name"];
    TRY(validate_name(snap, "snapshot"));
    const bool memory = body.value("memory", false);
    auto op = operations_.start(fmt::format("snapshot VM {} as {}", name, snap),
                                Json{{"vms", {"/1.0/vms/" + name}}}, server::Cancellable::kNo,
                                [this, name, snap, memory](server::OperationContext&) {
                                  return create_snapshot(name, snap, memory);
                                });
    return server::accepted(op);
  });
  router.add_sync(
      Method::kPost, base + "/{snap}/restore", [this](Request& req) -> Result<Response> {
        const std::string name = req.params["name"], snap = req.params["snap"];
        TRY(store_.get_object(kCollection, name));
        TRY(read_meta(run_dir(name) / "snapshots" / snap, name, snap));
        auto op = operations_.start(
            fmt::format("restore VM {} to snapshot {}", name, snap),
            Json{{"vms", {"/1.0/vms/" + name}}}, server::Cancellable::kNo,
            [this, name, snap](server::OperationContext&) { return restore_snapshot(name, snap); });
        return server::accepted(op);
      });
  router.add_sync(Method::kDelete, base + "/{snap}", [this](Request& req) -> Result<Response> {
    const std::string name = req.params["name"], snap = req.params["snap"];
    TRY(store_.get_object(kCollection, name));
    TRY(read_meta(run_dir(name) / "snapshots" / snap, name, snap));
    auto op = operations_.start(
        fmt::format("delete snapshot {} of VM {}", snap, name), Json{{"vms", {"/1.0/vms/" + name}}},
        server::Cancellable::kNo,
        [this, name, snap](server::OperationContext&) { return remove_snapshot(name, snap); });
    return server::accepted(op);
  });
}

}  // namespace vireo::daemon
