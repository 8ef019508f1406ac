// vireo pool / vireo vol: storage pools and their volumes (served by vireo-storaged over NBD).
#include <iostream>

#include "base/strings.h"
#include "cli/context.h"

namespace vireo::cli {

namespace {

const std::string kPools = "/1.0/storage-pools";

struct StorageFlags {
  std::string name, type = "dir", path, size, format = "raw", target, source_format = "auto";
};

// Pool and volume names as vireo-storaged accepts them, checked here too so that a name never
// changes the meaning of the URL it is put in.
Result<void> check_name(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid {} name '{}': 1-63 of A-Z a-z 0-9 _ . -, starting with a letter or "
                      "digit",
                      what, name);
  return {};
}

// "POOL/VOL" into its two names.
Result<std::pair<std::string, std::string>> split_volume(const std::string& arg) {
  auto slash = arg.find('/');
  if (slash == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "'{}': expected POOL/VOLUME", arg);
  std::string pool = arg.substr(0, slash), vol = arg.substr(slash + 1);
  TRY(check_name("pool", pool));
  TRY(check_name("volume", vol));
  return std::pair{pool, vol};
}

std::string volume_path(const std::string& pool, const std::string& vol) {
  return kPools + "/" + pool + "/volumes/" + vol;
}

std::string bytes_text(const Json& v) {
  return v.is_number_unsigned() ? format_bytes(v.get<uint64_t>()) : plain(v);
}

Result<Json> request(Context& ctx, const char* method, const std::string& path,
                     const Json* body = nullptr) {
  return TRY(TRY(ctx.client())->request(method, path, body)).body;
}

std::string host_path(const std::string& path) {
  return std::filesystem::absolute(path).lexically_normal().string();
}

void print_pool(Context& ctx, const Json& p) {
  std::vector<std::vector<std::string>> rows = {
      {"name:", plain(p.value("name", Json()))},
      {"type:", plain(p.value("type", Json()))},
      {"path:", plain(p.value("path", Json()))},
      {"status:", plain(p.value("status", Json()))},
      {"capacity:", bytes_text(p.value("capacity", Json()))},
      {"used:", bytes_text(p.value("used", Json()))},
      {"free:", bytes_text(p.value("free", Json()))},
      {"volumes:", plain(p.value("volumes", Json()))}};
  if (p.contains("error")) rows.push_back({"error:", plain(p["error"])});
  for (const auto& w : p.value("warnings", Json::array())) rows.push_back({"warning:", plain(w)});
  print(ctx.format(), p, rows);
}

void print_volume(Context& ctx, const Json& v) {
  std::vector<std::vector<std::string>> rows = {
      {"name:", plain(v.value("name", Json()))},
      {"pool:", plain(v.value("pool", Json()))},
      {"size:", bytes_text(v.value("size", Json()))},
      {"allocated:", bytes_text(v.value("allocated", Json()))},
      {"format:", plain(v.value("format", Json()))},
      {"read-only:", plain(v.value("read_only", Json()))},
      {"origin:", plain(v.value("origin", Json()))},
      {"uri:", plain(v.value("uri", Json()))}};
  print(ctx.format(), v, rows);
}

std::vector<std::string> volume_row(const std::string& pool, const Json& v) {
  return {pool,
          plain(v.value("name", Json())),
          bytes_text(v.value("size", Json())),
          bytes_text(v.value("allocated", Json())),
          plain(v.value("format", Json())),
          v.value("read_only", false) ? "yes" : "no",
          plain(v.value("uri", Json()))};
}

void add_pool_commands(CLI::App& app, Context& ctx, StorageFlags& f) {
  auto* noun = app.add_subcommand("pool", "Manage storage pools (dir or thin)");
  noun->require_subcommand(1);

  auto* create = noun->add_subcommand("create", "Create a storage pool");
  create->add_option("name", f.name)->required();
  create->add_option("--type,-t", f.type, "dir (files) or thin (Vireo thin pool)")
      ->check(CLI::IsMember({"dir", "thin"}))
      ->capture_default_str();
  create->add_option("--path,-p", f.path, "Directory (dir), or pool file or block device (thin)")
      ->required();
  create->add_option("--size,-s", f.size, "Size of a new thin pool file, e.g. 20G");
  create->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(check_name("pool", f.name));
      Json body = {{"name", f.name},
                   {"type", f.type},
                   {"path", std::filesystem::absolute(f.path).lexically_normal().string()}};
      if (!f.size.empty()) body["size"] = f.size;
      TRY(request(ctx, "POST", kPools, &body));
      return {};
    }();
  });

  noun->add_subcommand("ls", "List storage pools")->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json pools = TRY(request(ctx, "GET", kPools));
      std::vector<std::vector<std::string>> rows = {
          {"NAME", "TYPE", "STATUS", "CAPACITY", "USED", "VOLUMES", "PATH"}};
      for (const auto& p : pools)
        rows.push_back({plain(p.value("name", Json())), plain(p.value("type", Json())),
                        plain(p.value("status", Json())), bytes_text(p.value("capacity", Json())),
                        bytes_text(p.value("used", Json())), plain(p.value("volumes", Json())),
                        plain(p.value("path", Json()))});
      print(ctx.format(), pools, rows);
      return {};
    }();
  });

  auto* show = noun->add_subcommand("show", "Show a storage pool");
  show->add_option("name", f.name)->required();
  show->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(check_name("pool", f.name));
      print_pool(ctx, TRY(request(ctx, "GET", kPools + "/" + f.name)));
      return {};
    }();
  });

  auto* rm = noun->add_subcommand("rm", "Delete an empty storage pool");
  rm->add_option("name", f.name)->required();
  rm->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(check_name("pool", f.name));
      TRY(request(ctx, "DELETE", kPools + "/" + f.name));
      return {};
    }();
  });

  auto* check = noun->add_subcommand("check", "Check a pool's metadata and volumes");
  check->add_option("name", f.name)->required();
  check->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(check_name("pool", f.name));
      Json r = TRY(request(ctx, "POST", kPools + "/" + f.name + "/check"));
      std::vector<std::vector<std::string>> rows = {{"clean:", plain(r.value("clean", Json()))},
                                                    {"errors:", plain(r.value("errors", Json()))}};
      for (const auto& m : r.value("messages", Json::array()))
        rows.push_back({"message:", plain(m)});
      print(ctx.format(), r, rows);
      if (!r.value("clean", false))
        return make_error(ErrorCode::kConflict, "pool {}: check found {} error(s)", f.name,
                          plain(r.value("errors", Json())));
      return {};
    }();
  });
}

CLI::App* add_volume_commands(CLI::App& app, Context& ctx, StorageFlags& f) {
  auto* noun = app.add_subcommand("vol", "Manage volumes in storage pools (served over NBD)");
  noun->require_subcommand(1);

  auto* create = noun->add_subcommand("create", "Create a volume: POOL/VOL --size 10G");
  create->add_option("volume", f.name, "POOL/VOL")->required();
  create->add_option("--size,-s", f.size, "Virtual size, e.g. 10G")->required();
  create->add_option("--format", f.format, "raw, or qcow2 (dir pools)")
      ->check(CLI::IsMember({"raw", "qcow2"}))
      ->capture_default_str();
  create->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      auto [pool, vol] = TRY(split_volume(f.name));
      Json body = {{"name", vol}, {"size", f.size}, {"format", f.format}};
      TRY(request(ctx, "POST", kPools + "/" + pool + "/volumes", &body));
      return {};
    }();
  });

  auto* ls = noun->add_subcommand("ls", "List volumes (of one pool, or of all)");
  ls->add_option("pool", f.target);
  ls->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      std::vector<std::string> pools;
      if (!f.target.empty()) {
        TRY(check_name("pool", f.target));
        pools.push_back(f.target);
      } else {
        for (const auto& p : TRY(request(ctx, "GET", kPools)))
          if (p.value("status", "") != "unavailable") pools.push_back(p.value("name", ""));
      }
      Json all = Json::array();
      std::vector<std::vector<std::string>> rows = {
          {"POOL", "NAME", "SIZE", "ALLOCATED", "FORMAT", "READ-ONLY", "URI"}};
      for (const auto& pool : pools) {
        for (auto v : TRY(request(ctx, "GET", kPools + "/" + pool + "/volumes"))) {
          rows.push_back(volume_row(pool, v));
          v["pool"] = pool;
          all.push_back(std::move(v));
        }
      }
      print(ctx.format(), all, rows);
      return {};
    }();
  });

  auto* show = noun->add_subcommand("show", "Show a volume and its NBD URI");
  show->add_option("volume", f.name, "POOL/VOL")->required();
  show->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      auto [pool, vol] = TRY(split_volume(f.name));
      Json v = TRY(request(ctx, "GET", volume_path(pool, vol)));
      v["pool"] = pool;
      print_volume(ctx, v);
      return {};
    }();
  });

  auto* rm = noun->add_subcommand("rm", "Delete a volume");
  rm->add_option("volume", f.name, "POOL/VOL")->required();
  rm->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      auto [pool, vol] = TRY(split_volume(f.name));
      TRY(request(ctx, "DELETE", volume_path(pool, vol)));
      return {};
    }();
  });

  auto* resize = noun->add_subcommand("resize", "Change a volume's size: POOL/VOL SIZE");
  resize->add_option("volume", f.name, "POOL/VOL")->required();
  resize->add_option("size", f.size, "New size, e.g. 20G")->required();
  resize->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      auto [pool, vol] = TRY(split_volume(f.name));
      Json body = {{"size", f.size}};
      TRY(request(ctx, "PUT", volume_path(pool, vol) + "/resize", &body));
      return {};
    }();
  });

  return noun;
}

void add_volume_copy_commands(CLI::App* noun, Context& ctx, StorageFlags& f) {
  for (const char* verb : {"snapshot", "clone"}) {
    bool snap = std::string_view(verb) == "snapshot";
    auto* cmd = noun->add_subcommand(
        verb, snap ? "Take a read-only snapshot: POOL/VOL SNAP" : "Clone a volume: POOL/VOL NEW");
    cmd->add_option("volume", f.name, "POOL/VOL")->required();
    cmd->add_option("new", f.target, snap ? "Snapshot name" : "Name of the clone")->required();
    cmd->callback([&ctx, &f, verb] {
      ctx.outcome = [&]() -> Result<void> {
        auto [pool, vol] = TRY(split_volume(f.name));
        TRY(check_name("volume", f.target));
        Json body = {{"name", f.target}};
        TRY(run_operation(ctx, "POST", volume_path(pool, vol) + "/" + verb, &body));
        return {};
      }();
    });
  }

  auto* import = noun->add_subcommand(
      "import", "Make a volume from a disk image on vireod's host: POOL/VOL FILE (raw or qcow2)");
  import->add_option("volume", f.name, "POOL/VOL (must not exist)")->required();
  import->add_option("file", f.path, "Disk image file")->required();
  import->add_option("--source-format", f.source_format, "Format of FILE (probed when auto)")
      ->check(CLI::IsMember({"auto", "raw", "qcow2"}))
      ->capture_default_str();
  import->add_option("--format", f.format, "Format of the new volume: raw, or qcow2 (dir pools)")
      ->check(CLI::IsMember({"raw", "qcow2"}))
      ->capture_default_str();
  import->callback([&ctx, &f] {
    ctx.outcome = [&]() -> Result<void> {
      auto [pool, vol] = TRY(split_volume(f.name));
  Json body = {{"name", vol},
               {"format", f.format},
               {"source", {{"path", host_path(f.path)}, {"format", f.source_format}}}};
  Json v = TRY(run_operation(ctx, "POST", kPools + "/" + pool + "/volumes", &body));
  v["pool"] = pool;
  print_volume(ctx, v);
  return {};
}
();
}  // namespace
);

auto* exp = noun->add_subcommand(
    "export", "Write a volume to a new disk image file on vireod's host: POOL/VOL FILE");
exp->add_option("volume", f.name, "POOL/VOL")->required();
exp->add_option("file", f.path, "File to create (must not exist)")->required();
exp->add_option("--format", f.format, "raw or qcow2")
    ->check(CLI::IsMember({"raw", "qcow2"}))
    ->capture_default_str();
exp->callback([&ctx, &f] {
  ctx.outcome = [&]() -> Result<void> {
    auto [pool, vol] = TRY(split_volume(f.name));
    Json body = {{"path", host_path(f.path)}, {"format", f.format}};
    Json r = TRY(run_operation(ctx, "POST", volume_path(pool, vol) + "/export", &body));
    print(ctx.format(), r,
          {{"exported:", plain(r.value("file", Json()))},
           {"format:", plain(r.value("format", Json()))},
           {"copied:", bytes_text(r.value("copied", Json()))}});
    return {};
  }();
});
}  // namespace vireo::cli

}  // namespace

void add_storage_commands(CLI::App& app, Context& ctx) {
  static StorageFlags f;
  add_pool_commands(app, ctx, f);
  add_volume_copy_commands(add_volume_commands(app, ctx, f), ctx, f);
}

}  // namespace vireo::cli
