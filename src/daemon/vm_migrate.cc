// Live migration between two vireods (vireo vm migrate NAME --to TARGET). The source vireod
// drives it as a client of the target's API:
//   1. POST TARGET/1.0/vms/NAME/incoming {"definition", "leases", "volumes"}: the target stores
//      the definition, makes the VM's volumes (empty, same sizes and formats), takes over the
//      guest's DHCP leases and starts QEMU with -incoming defer, listening on a unix socket in
//      its run directory (same host); with volumes it also serves them over NBD. The answer is
//      the migration URI (and the NBD socket);
//   2. the source mirrors each volume disk into the target's (full copy, then every write to
//      both) and migrates the RAM (compute::migrate: pre-copy, downtime limit 300 ms); with the
//      guest stopped, just before the switch-over, the mirrors end in sync;
//   3. POST TARGET/1.0/vms/NAME/incoming/complete: the target stops serving the disks, the
//      guest runs there;
//   4. the source ends its paused QEMU, gives the leases back, forgets the VM and removes the
//      volumes it copied (a move, as Incus does).
// Any failure before 3 aborts the target (DELETE TARGET/1.0/vms/NAME/incoming: its QEMU, volumes
// and leases go) and leaves the guest running on the source. Image-file disks are shared
// storage: both hosts must see the same file.
//
// NICs move with the guest: the definition sent pins the VM's UUID and each NIC's MAC, the
// target plugs TAPs of its own into its networks of the same names (one L2 segment across the
// hosts, such as a VXLAN network, is the user's to provide), and the guest keeps its address;
// QEMU's self-announcement after the switch tells the switches where the MAC went.
//
// Between hosts (a target reached as HOST:PORT) the RAM stream and the disk copy go over mutual
// TLS: the target's QEMU presents the target vireod's own certificate, which the source's QEMU
// checks against the CA the source reached the target's API with (--to-ca) and the host name
// called; the source's QEMU presents a certificate made for this migration, sent with the
// (authenticated) request, and the target's QEMU accepts that one only.
#include <algorithm>

#include "base/file.h"
#include "base/log.h"
#include "base/rollback.h"
#include "base/strings.h"
#include "client/client.h"
#include "compute/migration.h"
#include "compute/qemu_command.h"
#include "compute/tls_identity.h"
#include "daemon/networks.h"
#include "daemon/vm_definition.h"
#include "daemon/vms.h"

namespace vireo::daemon {

namespace {

constexpr const char* kCollection = "vms";
constexpr auto kIncomingTimeout = std::chrono::seconds(60);
constexpr auto kMirrorTimeout = std::chrono::minutes(30);
constexpr const char* kTlsCreds = "vireo-migration-tls";

struct NicPlace {
  size_t index = 0;
  std::string network, mac;
};

std::vector<NicPlace> nic_places(const store::ObjectRow& row) {
  std::vector<NicPlace> out;
  const Json nics = row.spec.value("nics", Json::array());
  for (size_t i = 0; i < nics.size(); ++i)
    out.push_back({i, nics[i]["network"], nic_mac(vm_uuid(row), nics[i], i)});
  return out;
}

// The definition as the target must see it: the same UUID and MACs the guest has here.
Json portable_definition(const store::ObjectRow& row) {
  Json spec = row.spec;
  spec["uuid"] = vm_uuid(row);
  for (const auto& nic : nic_places(row)) spec["nics"][nic.index]["mac"] = nic.mac;
  return spec;
}

// The dynamic DHCP leases the guest's NICs hold here.
Result<Json> guest_leases(NetworkManager* networks, const std::vector<NicPlace>& nics) {
  Json leases = Json::array();
  for (const auto& nic : nics) {
    Json lease = TRY(networks->dynamic_lease(nic.network, nic.mac));
    if (lease.is_null()) continue;
    lease["nic"] = nic.index;
    leases.push_back(lease);
  }
  return leases;
}

// The volume disks of a definition, copied when the VM migrates.
std::vector<IncomingVolume> volume_disks(const Json& spec) {
  std::vector<IncomingVolume> out;
  const Json disks = spec.value("disks", Json::array());
  for (size_t i = 0; i < disks.size(); ++i) {
    if (!disks[i].contains("volume")) continue;
    auto split = split_volume(disks[i]["volume"].get<std::string>());
    if (split) out.push_back({i, split->first, split->second});
  }
  return out;
}

std::vector<std::string> disk_ids(const std::vector<IncomingVolume>& volumes) {
  std::vector<std::string> ids;
  for (const auto& v : volumes) ids.push_back(compute::disk_id(v.disk));
  return ids;
}

// The sizes and formats sent along: [{"disk": N, "size", "format"}], one per volume disk.
Result<std::vector<IncomingVolume>> parse_volumes(const Json& body, const Json& spec) {
  auto volumes = volume_disks(spec);
  const Json sent = body.value("volumes", Json::array());
  if (!sent.is_array() || sent.size() != volumes.size())
    return make_error(ErrorCode::kInvalidArgument,
                      "'volumes' must give the size and format of each of the {} volume disks",
                      volumes.size());
  for (auto& v : volumes) {
    auto it = std::find_if(sent.begin(), sent.end(), [&](const Json& j) {
      return j.is_object() && j.value("disk", Json()) == Json(v.disk);
    });
    if (it == sent.end() || !(*it)["size"].is_number_unsigned() || !(*it)["format"].is_string())
      return make_error(ErrorCode::kInvalidArgument,
                        "'volumes' has no {{\"disk\": {}, \"size\": BYTES, \"format\"}}", v.disk);
    v.size = (*it)["size"];
    v.format = (*it)["format"];
  }
  return volumes;
}

// The request's tuning: "bandwidth" (MiB/s, 1..65536) caps the RAM stream.
Result<compute::MigrationOptions> migration_options(const Json& body) {
  compute::MigrationOptions options;
  if (!body.contains("bandwidth")) return options;
  const Json& mib = body["bandwidth"];
  if (!mib.is_number_unsigned() || mib.get<uint64_t>() < 1 || mib.get<uint64_t>() > 65536)
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'bandwidth' must be MiB/s between 1 and 65536");
  options.max_bandwidth = mib.get<uint64_t>() << 20;
  return options;
}

// "listen": the address by which a source on another host reached this vireod (an IP address
// or a host name); absent for a source on this host.
Result<std::string> parse_listen(const Json& body) {
  if (!body.contains("listen")) return std::string();
  const Json& host = body["listen"];
  if (!host.is_string() || host.get<std::string>().empty() ||
      host.get<std::string>().size() > 253 ||
      host.get<std::string>().find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != std::string::npos)
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'listen' must be this host's address (IP or name)");
  return host.get<std::string>();
}

// "client_cert": the certificate (PEM) the source's QEMU presents; required with "listen" (the
// stream then comes over TCP, encrypted, and only that certificate may send it).
Result<std::string> parse_source_cert(const Json& body, const std::string& listen) {
  if (listen.empty()) return std::string();
  const Json cert = body.value("client_cert", Json());
  if (!cert.is_string() || !cert.get<std::string>().starts_with("-----BEGIN CERTIFICATE-----"))
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'client_cert' must be the source's certificate (PEM) for a migration "
                      "over TCP; the source vireod sends it itself");
  return cert.get<std::string>();
}

// The host part of HOST:PORT or [V6]:PORT.
std::string host_of(const std::string& remote) {
  if (remote.starts_with('[')) return remote.substr(1, remote.find(']') - 1);
  return remote.substr(0, remote.rfind(':'));
}

// The leases sent along: [{"nic": N, "ip", "hostname"?}], checked on the target.
Result<std::vector<std::pair<size_t, Json>>> parse_leases(const Json& body, size_t nic_count) {
  std::vector<std::pair<size_t, Json>> out;
  const Json leases = body.value("leases", Json::array());
  if (!leases.is_array()) return make_error(ErrorCode::kInvalidArgument, "'leases' must be a list");
  for (const auto& l : leases) {
    if (!l.is_object() || !l.contains("nic") || !l["nic"].is_number_unsigned() ||
        l["nic"].get<size_t>() >= nic_count || !l.contains("ip") || !l["ip"].is_string())
      return make_error(
          ErrorCode::kInvalidArgument,
          "each lease must be {{\"nic\": INDEX, \"ip\": ADDRESS}} of a NIC the VM has");
    out.emplace_back(l["nic"].get<size_t>(), l);
  }
  return out;
}

// The result of the operation a target request answered with.
Result<Json> target_operation(client::Client& target, const char* method, const std::string& path,
                              const Json* body) {
  auto reply = TRY(target.request(method, path, body));
  auto op = TRY(api::operation_from_json(reply.body));
  auto done = TRY(target.wait_operation(op.id, kIncomingTimeout));
  if (done.status != api::OperationStatus::kSuccess)
    return make_error(ErrorCode::kUnavailable, "the target: {}",
                      done.error.empty() ? "the operation did not finish" : done.error);
  return done.result;
}

Result<client::ConnectOptions> target_options(const Json& target) {
  if (!target.is_object())
    return make_error(ErrorCode::kInvalidArgument,
                      "field 'target' must be {\"socket\": PATH} or {\"remote\": HOST:PORT, "
                      "\"token\", \"ca\"}");
  client::ConnectOptions o;
  if (target.contains("socket") && target["socket"].is_string()) {
    o.socket_path = target["socket"].get<std::string>();
  } else if (target.contains("remote") && target["remote"].is_string()) {
    o.remote = target["remote"].get<std::string>();
    o.token = target.value("token", "");
    o.server_ca = target.value("ca", "");
  } else {
    return make_error(ErrorCode::kInvalidArgument, "field 'target' needs 'socket' or 'remote'");
  }
  return o;
}

}  // namespace

// Target: the VM's definition stored, its volumes made (empty, the sizes and formats of the
// source's), the guest's DHCP leases taken over, QEMU started waiting for the stream; with
// volumes, QEMU also serves them over NBD for the source's mirrors. Anything failing undoes all.
Result<Json> VmManager::receive_incoming(const std::string& name, const Json& body,
                                         const IncomingPeer& peer) {
  std::lock_guard serial(action_mutex_);
  if (!body.is_object() || !body.contains("definition"))
    return make_error(ErrorCode::kInvalidArgument, "body must be {\"definition\": VM}");
  Json spec = TRY(validate_vm(body["definition"]));
  const Json nics = spec["nics"];
  auto leases = TRY(parse_leases(body, nics.size()));
  auto volumes = TRY(parse_volumes(body, spec));
  for (const auto& nic : nics) {
    if (!networks_) return make_error(ErrorCode::kUnavailable, "networks are not available here");
    TRY_CTX(networks_->require(nic["network"]), "the VM's NIC needs network {} here",
            nic["network"].get<std::string>());
  }
  TRY(store_.insert_object(kCollection, name, spec, "ready"));
  Rollback undo;
  undo.add([this, name] { (void)store_.delete_object(kCollection, name); });
  Json result =
      TRY_CTX(prepare_incoming(name, spec, leases, volumes, peer, undo), "receive VM {}", name);
  undo.commit();
  lifecycle(name, "incoming");
  return result;
}

Result<Json> VmManager::prepare_incoming(const std::string& name, const Json& spec,
                                         const std::vector<std::pair<size_t, Json>>& leases,
                                         const std::vector<IncomingVolume>& volumes,
                                         const IncomingPeer& peer, Rollback& undo) {
  const std::string& listen = peer.listen;
  for (const auto& v : volumes) {
    Json created = TRY(storaged_call({{"op", "vol.create"},
                                      {"pool", v.pool},
                                      {"name", v.volume},
                                      {"size", v.size},
                                      {"format", v.format}}));
    undo.add([this, v] {
      (void)storaged_call({{"op", "vol.rm"}, {"pool", v.pool}, {"name", v.volume}});
    });
  }
  const Json nics = spec["nics"];
  const std::string uuid = vm_uuid(TRY(store_.get_object(kCollection, name)));
  for (const auto& [n, lease] : leases) {
    const std::string network = nics[n]["network"], mac = nic_mac(uuid, nics[n], n);
    TRY(networks_->adopt_lease(network, mac, lease));
    undo.add([this, network, mac] { networks_->release_address(network, mac); });
  }
  TRY(start(name, StartMode::kIncoming));
  undo.add([this, name] { (void)stop(name, true, 0); });
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kUnavailable, "QEMU exited at start");
  // Another host's source reaches this one at the address it called (any free port there);
  // one on this host through unix sockets in the run directory.
  std::string uri = "unix:" + (run_dir(name) / "migration.sock").string();
  compute::MigrationTls tls;
  if (listen.empty()) {
    TRY(compute::start_incoming(process->qmp(), uri));
  } else {
    // A vireod reached over TCP has a certificate (it serves TLS only). It presents it and
    // accepts only the certificate the source sent with its (authenticated) request.
    if (!tls_cert_.empty()) {
      std::string cert = TRY_CTX(read_file(tls_cert_), "this vireod's TLS certificate");
      std::string key = TRY_CTX(read_file(tls_key_), "this vireod's TLS key");
      tls = TRY(migration_tls(
          name, *process,
          {{"server-cert.pem", cert}, {"server-key.pem", key}, {"ca-cert.pem", peer.source_cert}},
          true, ""));
    }
    TRY(compute::start_incoming(process->qmp(), compute::tcp_uri(listen, "0"), tls));
    uri = TRY(compute::incoming_uri(process->qmp()));
  }
  Json result = {{"name", name}, {"uri", uri}, {"tls", !tls.creds.empty()}};
  if (volumes.empty()) return result;
  std::string nbd = (run_dir(name) / "mirror.sock").string();
  if (listen.empty())
    TRY(compute::serve_disks(process->qmp(), nbd, disk_ids(volumes)));
  else
    nbd = TRY(compute::serve_disks_tcp(process->qmp(), listen, disk_ids(volumes), tls));
  result["nbd"] = nbd;
  return result;
}

// Target, once the stream is in: the mirrors' NBD server goes, the guest runs.
Result<Json> VmManager::complete_incoming(const std::string& name) {
  std::lock_guard serial(action_mutex_);
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
  auto row = TRY(store_.get_object(kCollection, name));
  // The guest's state is here now: it runs even if the NBD server lingers.
  if (!volume_disks(row.spec).empty())
    if (auto r = compute::stop_serving_disks(process->qmp(), disk_ids(volume_disks(row.spec))); !r)
      spdlog::warn("vm {}: stop serving the mirrored disks: {}", name, r.error().message());
  TRY(process->resume());
  lifecycle(name, "resumed");
  return Json{{"name", name}};
}

Result<Json> VmManager::abort_incoming(const std::string& name) {
  std::lock_guard serial(action_mutex_);
  // A QEMU that no longer answers (an incoming stream that broke off ends it) is aborted too.
  if (auto process = running(name)) {
    auto status = process->status();
    if (status && *status != "inmigrate")
      return make_error(ErrorCode::kConflict, "VM '{}' is not waiting for a migration", name);
  }
  (void)stop(name, true, 0);
  auto row = TRY(store_.get_object(kCollection, name));
  TRY(remove(row));
  // Its volumes were made for the migration (volume disks are always copied).
  for (const auto& v : volume_disks(row.spec))
    if (auto r = storaged_call({{"op", "vol.rm"}, {"pool", v.pool}, {"name", v.volume}}); !r)
      spdlog::warn("vm {}: remove {}/{}: {}", name, v.pool, v.volume, r.error().message());
  for (const auto& nic : nic_places(row)) networks_->release_address(nic.network, nic.mac);
  TRY(store_.delete_object(kCollection, name));
  return Json{{"name", name}};
}

Result<Json> VmManager::migrate_to(const std::string& name, const Json& target_json,
                                   compute::MigrationOptions options) {
  std::lock_guard serial(action_mutex_);
  auto process = running(name);
  if (!process) return make_error(ErrorCode::kConflict, "VM '{}' is not running", name);
  auto row = TRY(store_.get_object(kCollection, name));
  if (TRY(read_devices(name)) != initial_devices(row))
    return make_error(ErrorCode::kConflict,
                      "VM '{}' has devices plugged or unplugged while it runs; restart it "
                      "(vireo vm restart) so QEMU's devices are its definition's, then migrate",
                      name);
  const auto nics = nic_places(row);
  auto volumes = volume_disks(row.spec);
  Json sizes = Json::array();
  for (auto& v : volumes) {
    Json info = TRY(storaged_call({{"op", "vol.show"}, {"pool", v.pool}, {"name", v.volume}}));
    sizes.push_back({{"disk", v.disk},
                     {"size", info.value("size", 0ull)},
                     {"format", info.value("format", "raw")}});
  }
  Json request = {{"definition", portable_definition(row)},
                  {"leases", TRY(guest_leases(networks_, nics))},
                  {"volumes", sizes}};
  // A target on another host listens for the stream and the disks where we reached it.
  // It accepts the stream from this migration's own certificate only.
  compute::TlsIdentity identity;
  if (target_json.contains("remote")) {
    request["listen"] = host_of(target_json["remote"]);
    identity = TRY(compute::make_tls_identity("vireo-migration-" + name));
    request["client_cert"] = identity.cert_pem;
  }
  auto target = TRY_CTX(client::Client::connect(TRY(target_options(target_json))), "the target");
  const std::string path = "/1.0/vms/" + name;
  Json incoming = TRY(target_operation(*target, "POST", path + "/incoming", &request));
  auto stats = [&]() -> Result<compute::MigrationStats> {
    if (incoming.value("tls", false)) {
      const std::string ca_file = target_json.value("ca", "");
      std::string ca = TRY_CTX(read_file(ca_file), "the target's CA certificate");
      options.tls = TRY(migration_tls(name, *process,
                                      {{"ca-cert.pem", ca},
                                       {"client-cert.pem", identity.cert_pem},
                                       {"client-key.pem", identity.key_pem}},
                                      false, host_of(target_json["remote"])));
    }
    return copy_to(*process, incoming, disk_ids(volumes), options);
  }();
  if (!stats) {
    if (auto r = target_operation(*target, "DELETE", path + "/incoming", nullptr); !r)
      spdlog::warn("vm {}: abort on the target: {}", name, r.error().message());
    return std::unexpected(std::move(stats.error()).with_context("migrate VM " + name));
  }
  TRY_CTX(target_operation(*target, "POST", path + "/incoming/complete", nullptr),
          "migrated VM {} did not resume on the target", name);
  // The guest runs there: end the paused copy here, give its addresses back, forget the VM and
  // the volumes it was copied from (as a move does).
  (void)stop(name, true, 0);
  for (const auto& nic : nics) networks_->release_address(nic.network, nic.mac);
  TRY(remove(row));
  TRY(store_.delete_object(kCollection, name));
  for (const auto& v : volumes)
    if (auto r = storaged_call({{"op", "vol.rm"}, {"pool", v.pool}, {"name", v.volume}}); !r)
      spdlog::warn("vm {}: remove the copied volume {}/{}: {}", name, v.pool, v.volume,
                   r.error().message());
  Json result = {{"name", name},
                 {"total_ms", stats->total_ms},
                 {"downtime_ms", stats->downtime_ms},
                 {"ram_transferred", stats->ram_transferred},
                 {"disks_copied", volumes.size()},
                 {"stream", incoming.value("uri", "")},
                 {"encrypted", !options.tls.creds.empty()}};
  spdlog::info("vm {}: migrated in {} ms, downtime {} ms", name, stats->total_ms,
               stats->downtime_ms);
  lifecycle(name, "migrated", result);
  return result;
}

// The RAM, and the volume disks through NBD mirrors into the target's QEMU: in sync before the
// RAM migration starts, ended with the guest stopped just before the target takes over.
Result<compute::MigrationStats> VmManager::copy_to(compute::VmProcess& process,
                                                   const Json& incoming,
                                                   const std::vector<std::string>& disks,
                                                   compute::MigrationOptions options) {
  if (!disks.empty()) {
    const std::string nbd = incoming.value("nbd", "");
    if (nbd.empty()) return make_error(ErrorCode::kUnavailable, "the target serves no disks");
    TRY(compute::mirror_disks(process.qmp(), nbd, disks, kMirrorTimeout, options.stop,
                              options.tls));
    options.before_switchover = [&] { return compute::finish_mirrors(process.qmp(), disks); };
  }
  auto stats = compute::migrate(process.qmp(), incoming.value("uri", ""), options);
  if (!stats && !disks.empty()) (void)compute::finish_mirrors(process.qmp(), disks);
  return stats;
}

// The credentials' files go to a private directory, QEMU reads them once, the directory goes.
Result<compute::MigrationTls> VmManager::migration_tls(const std::string& name,
                                                       compute::VmProcess& process,
                                                       const TlsFiles& files, bool destination,
                                                       const std::string& hostname) {
  const auto dir = run_dir(name) / "migration-tls";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  TRY(make_dirs(dir, 0700));
  Result<void> added = {};
  for (const auto& [file, pem] : files)
    if (added) added = write_file_atomic(dir / file, pem, 0600);
  if (added) added = compute::add_tls_creds(process.qmp(), kTlsCreds, dir.string(), destination);
  std::filesystem::remove_all(dir, ec);
  if (!added) return std::unexpected(added.error());
  return compute::MigrationTls{kTlsCreds, hostname};
}

void VmManager::add_migration_routes(server::Router& router) {
  auto start_op = [this](const std::string& what, const std::string& name,
                         std::function<Result<Json>()> work) {
    return server::accepted(operations_.start(
        fmt::format("{} VM {}", what, name), Json{{"vms", {"/1.0/vms/" + name}}},
        server::Cancellable::kNo, [work](server::OperationContext&) { return work(); }));
  };
  router.add_sync(
      server::Method::kPost, "/1.0/vms/{name}/migrate",
      [this](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        TRY(store_.get_object(kCollection, name));
        Json body = TRY(req.json_body());
        if (!body.is_object() || !body.contains("target"))
          return make_error(ErrorCode::kInvalidArgument,
                            "body must be {\"target\": {\"socket\": PATH} or "
                            "{\"remote\": HOST:PORT, ...}}");
        TRY(target_options(body["target"]));
        compute::MigrationOptions options = TRY(migration_options(body));
        // Cancellable: the guest then keeps running here.
        return server::accepted(operations_.start(
            fmt::format("migrate VM {}", name), Json{{"vms", {"/1.0/vms/" + name}}},
            server::Cancellable::kYes,
            [this, name, target = body["target"], options](server::OperationContext& ctx) mutable {
              options.stop = ctx.stop_token();
              return migrate_to(name, target, options);
            }));
      });
  router.add_sync(
      server::Method::kPost, "/1.0/vms/{name}/incoming",
      [this, start_op](server::Request& req) -> Result<server::Response> {
        const std::string name = req.params["name"];
        TRY(validate_name(name, "VM"));
        if (store_.get_object(kCollection, name))
          return make_error(ErrorCode::kAlreadyExists, "a VM named '{}' exists here already", name);
        Json body = TRY(req.json_body());
        // Where the stream comes from, and who may send it, is settled before
        // anything starts.
        IncomingPeer peer;
        peer.listen = TRY(parse_listen(body));
        peer.source_cert = TRY(parse_source_cert(body, peer.listen));
        return start_op("receive", name,
                        [this, name, body, peer] { return receive_incoming(name, body, peer); });
      });
  // The target's last steps, on a VM it is receiving.
  using Step = Result<Json> (VmManager::*)(const std::string&);
  auto on_incoming = [this, &router, start_op](server::Method method, const std::string& path,
                                               const char* what, Step step) {
    router.add_sync(method, path,
                    [this, start_op, what, step](server::Request& req) -> Result<server::Response> {
                      const std::string name = req.params["name"];
                      TRY(store_.get_object(kCollection, name));
                      return start_op(what, name,
                                      [this, name, step] { return (this->*step)(name); });
                    });
  };
  on_incoming(server::Method::kPost, "/1.0/vms/{name}/incoming/complete",
              "complete the migration of", &VmManager::complete_incoming);
  on_incoming(server::Method::kDelete, "/1.0/vms/{name}/incoming", "abort the migration of",
              &VmManager::abort_incoming);
}

}  // namespace vireo::daemon
