// Fuzz target: the JSON parsers of the image store (manifest, index, config, descriptor kind)
// the reference and digest parsers, and what the registry client parses from a server's
// headers (WWW-Authenticate challenges, Location URLs), on the same input.
#include <string_view>

#include "base/log.h"
#include "image/manifest.h"
#include "image/media_types.h"
#include "image/reference.h"
#include "image/remote/http_client.h"
#include "image/remote/session.h"
#include "image/remote/www_authenticate.h"
#include "storage/fuzz/fuzz.h"

using namespace vireo;
using namespace vireo::image;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool quiet = (spdlog::set_level(spdlog::level::off), true);
  (void)quiet;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)detect_kind(text);
  (void)parse_manifest(text);
  if (auto index = parse_index(text)) (void)select_platform(*index);
  (void)parse_config(text);
  (void)Reference::parse(text);
  (void)Digest::parse(text);
  (void)remote::parse_www_authenticate(text);
  (void)remote::RemoteRef::parse(text);
  if (auto url = remote::Url::parse(text)) (void)url->resolve(text);
  static const remote::Url base = *remote::Url::parse("http://127.0.0.1:5000/v2/");
  (void)base.resolve(text);
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  std::string d = "sha256:" + std::string(64, 'a');
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", media::kOciManifest},
                   {"config", {{"mediaType", media::kOciConfig}, {"digest", d}, {"size", 2}}},
                   {"layers", {{{"mediaType", media::kOciLayerGzip}, {"digest", d}, {"size", 3}}}}};
  Json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", media::kOciManifest},
                   {"digest", d},
                   {"size", 1},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  Json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config", {{"Env", {"A=b"}}, {"Cmd", {"sh"}}, {"User", "1:2"}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {d}}}}};
  return {manifest.dump(), index.dump(), config.dump(), "busybox:1.36@" + d,
          "registry.example:5000/a/b:c",
          R"(Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull")",
          R"(Basic realm="x", Bearer realm=http://t/x,error="invalid_token")",
          "https://[::1]:5000/v2/a/blobs/uploads/u?_state=x"};
}
