// Fuzz target: the registry's parsers of client input — manifests (with each supported media
// type), request paths (names, references) and digests. Built with -DVIREO_FUZZ=ON;
// scripts/fuzz-registry runs it.
#include <string>
#include <string_view>
#include <vector>

#include "registry/digest.h"
#include "registry/manifest.h"
#include "registry/names.h"
#include "registry/routes.h"
#include "storage/fuzz/fuzz.h"

using namespace vireo::registry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (std::string_view type :
       {kOciManifest, kOciIndex, kDockerManifest, kDockerList, std::string_view()}) {
    auto m = parse_manifest(in, type);
    if (m) {
      for (const auto& d : m->blobs) (void)descriptor_json(d);
      if (m->subject) (void)descriptor_json(*m->subject);
    }
  }
  std::string line(in.substr(0, 4096));
  if (auto r = parse_route(line)) {
    (void)validate_tag(r->ref);
    (void)parse_digest(r->ref);
  }
  (void)percent_decode_query(line);
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  std::string d = digest_of("x").str();
  std::string desc =
      R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":")" + d + R"(","size":1})";
  return {
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" +
          desc + R"(,"layers":[)" + desc + "," + desc + R"(],"subject":)" + desc +
          R"(,"annotations":{"a":"b"}})",
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
          desc + "]}",
      "/v2/a/b/c/blobs/uploads/0123",
      "/v2/a/manifests/" + d,
      "/v2/x/tags/list",
  };
}
