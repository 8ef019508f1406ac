#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "base/file.h"
#include "base/ids.h"
#include "base/subprocess.h"
#include "cli/context.h"

namespace vireo::cli {

namespace {

constexpr const char* kCollection = "profiles";

// "key=value" pairs into a JSON object of strings.
Result<Json> parse_pairs(const std::vector<std::string>& pairs) {
  Json out = Json::object();
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error(ErrorCode::kInvalidArgument, "usage: expected KEY=VALUE, got '{}'", p);
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

void print_profile(Context& ctx, const Json& p) {
  std::vector<std::vector<std::string>> rows = {
      {"name:", plain(p["name"])}, {"description:", plain(p.value("description", Json()))}};
  const Json config = p.value("config", Json::object());
  const Json devices = p.value("devices", Json::object());
  for (auto it = config.begin(); it != config.end(); ++it)
    rows.push_back({"config." + it.key() + ":", plain(*it)});
  for (auto it = devices.begin(); it != devices.end(); ++it)
    rows.push_back({"device " + it.key() + ":", dump_json(*it)});
  print(ctx.format(), p, rows);
}

}  // namespace

void add_profile_commands(CLI::App& app, Context& ctx) {
  auto* noun = app.add_subcommand("profile", "Manage profiles: shared configuration for instances");
  noun->require_subcommand(1);
  static std::string name, description;
  static std::vector<std::string> config;

  noun->add_subcommand("ls", "List profiles")->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      auto items = TRY(TRY(ctx.client())->list(kCollection));
      std::vector<std::vector<std::string>> rows = {{"NAME", "DESCRIPTION", "CONFIG", "DEVICES"}};
      for (const auto& p : items) {
        const size_t config_keys = p.contains("config") ? p["config"].size() : 0;
        const size_t devices = p.contains("devices") ? p["devices"].size() : 0;
        rows.push_back({plain(p["name"]), plain(p.value("description", Json())),
                        std::to_string(config_keys), std::to_string(devices)});
      }
      print(ctx.format(), Json(items), rows);
      return {};
    }();
  });

  auto* show = noun->add_subcommand("show", "Show a profile");
  show->add_option("name", name)->required();
  show->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      print_profile(ctx, TRY(TRY(ctx.client())->get(kCollection, name)).data);
      return {};
    }();
  });

  auto* create = noun->add_subcommand("create", "Create a profile");
  create->add_option("name", name)->required();
  create->add_option("--description,-d", description);
  create->add_option("--config,-c", config, "KEY=VALUE (repeatable)");
  create->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json body = {
          {"name", name}, {"description", description}, {"config", TRY(parse_pairs(config))}};
      TRY(TRY(ctx.client())->create(kCollection, body));
      return {};
    }();
  });

  static std::vector<std::string> pairs;
  auto* set = noun->add_subcommand("set", "Set config keys of a profile (KEY= removes one)");
  set->add_option("name", name)->required();
  set->add_option("pairs", pairs, "KEY=VALUE...")->required();
  set->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      Json changes = TRY(parse_pairs(pairs));
      for (auto it = changes.begin(); it != changes.end(); ++it)
        if (it->get_ref<const std::string&>().empty()) *it = nullptr;  // merge patch: null deletes
      TRY(TRY(ctx.client())->patch(kCollection, name, Json{{"config", changes}}));
      return {};
    }();
  });

  auto* edit = noun->add_subcommand("edit", "Edit a profile as JSON in $EDITOR");
  edit->add_option("name", name)->required();
  edit->callback([&ctx] { ctx.outcome = edit_in_editor(ctx, kCollection, name); });

  auto* rm = noun->add_subcommand("rm", "Delete a profile");
  rm->add_option("name", name)->required();
  rm->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> { return TRY(ctx.client())->remove(kCollection, name); }();
  });
}

}  // namespace vireo::cli
