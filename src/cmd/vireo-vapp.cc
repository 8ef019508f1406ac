// vireo-vapp: reads and writes app packages for `vireo app`, in a process of its own, so an
// untrusted archive is parsed away from the CLI (and libarchive stays out of its start-up).
//   vireo-vapp pack --name APP [--include PATH]... [-o FILE] [--profile P] [--net N] [-e K=V]... --
//   CMD... vireo-vapp open FILE      verifies, unpacks into the cache, prints the package as JSON
#include <cstdio>

#include <CLI/CLI.hpp>

#include "base/json.h"
#include "base/strings.h"
#include "sandbox/package.h"

namespace sb = vireo::sandbox;

namespace {

int fail(const vireo::Error& e) {
  std::fprintf(stderr, "%s\n", e.message().c_str());
  return 1;
}

int open_command(const std::string& file) {
  auto p = sb::open_package(file);
  if (!p) return fail(p.error());
  vireo::Json j = {{"name", p->name},
                   {"digest", p->digest},
                   {"command", p->command},
                   {"files_dir", p->files_dir},
                   {"profile", p->profile == sb::Profile::kStrict ? "strict" : "default"},
                   {"net", p->net == sb::NetMode::kNone ? "none" : "host"},
                   {"env", p->env}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int pack_command(sb::PackOptions o, const std::string& profile, const std::string& net) {
  o.profile = profile == "strict" ? sb::Profile::kStrict : sb::Profile::kDefault;
  if (net == "none") o.net = sb::NetMode::kNone;
  auto r = sb::pack_app(o);
  if (!r) return fail(r.error());
  std::printf("%s: %zu files, %s, %s\n", r->path.c_str(), r->files,
              vireo::format_bytes(r->bytes).c_str(), r->digest.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vireo-vapp: app packages for vireo app"};
  app.require_subcommand(1);
  sb::PackOptions o;
  std::string profile = "default", net, file;
  auto* pack = app.add_subcommand("pack", "Pack CMD with its libraries into one file");
  pack->add_option("--name", o.name, "The app's name")->required();
  pack->add_option("--include", o.includes, "Also pack this file or folder");
  pack->add_option("-o,--output", o.output, "The package file (default NAME.vapp)");
  pack->add_option("--profile", profile)->check(CLI::IsMember({"default", "strict"}));
  pack->add_option("--net", net)->check(CLI::IsMember({"host", "none"}));
  pack->add_option("-e,--env", o.env, "KEY=VALUE for the app's environment");
  pack->add_option("command", o.command, "-- CMD [ARGS]")->required();
  auto* open = app.add_subcommand("open", "Verify and unpack a package; print it as JSON");
  open->add_option("file", file)->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*pack) return pack_command(o, profile, net);
  return open_command(file);
}
