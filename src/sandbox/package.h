#pragma once
// Self-contained app packages (.vapp): one gzip'd tar holding manifest.json and a files/ tree.
// The tree holds the program and every shared library it loads (its ELF closure, found by the
// dynamic loader), the loader itself, and the data files asked for, at the paths the app will see
// them; the sandbox lays the tree over the host, so the app runs where its libraries are not
// installed. The manifest lists each file with its sha256 and is itself covered by a digest;
// a package is verified entry by entry before anything in it runs.
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "sandbox/sandbox.h"

namespace vireo::sandbox {

struct PackOptions {
  std::string name;
  std::vector<std::string> command;   // argv; argv[0] found on PATH
  std::vector<std::string> includes;  // files or folders under the redirected system paths
  std::string output;                 // default NAME.vapp
  Profile profile = Profile::kDefault;
  std::optional<NetMode> net;
  std::vector<std::string> env;
};

struct PackResult {
  std::string path, digest;
  size_t files = 0;
  uint64_t bytes = 0;
};

[[nodiscard]] Result<PackResult> pack_app(const PackOptions& options);

struct Package {
  std::string name, digest;
  std::vector<std::string> command;  // as the app runs it inside the sandbox
  std::string files_dir;             // the verified, unpacked files/ tree
  Profile profile = Profile::kDefault;
  std::optional<NetMode> net;
  std::vector<std::string> env;
};

// Verifies the package and unpacks it once into the user's cache (keyed by digest).
[[nodiscard]] Result<Package> open_package(const std::string& file);

// The manifest's digest: sha256 over its canonical form without the "digest" member.
std::string manifest_digest(const Json& manifest);
// Checks a manifest's shape; every path relative, normalized and under a redirected root.
[[nodiscard]] Result<void> validate_manifest(const Json& manifest);

}  // namespace vireo::sandbox
