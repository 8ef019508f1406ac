// Fuzz target: what `vireo app run FILE.vapp` reads from an untrusted package — the archive
// (libarchive), its manifest (JSON, validation, digest) and the verified unpacking — on the
// same input, taken once as the manifest text and once as the whole package file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

#include "base/log.h"
#include "sandbox/package.h"
#include "storage/fuzz/fuzz.h"

using namespace vireo;
using namespace vireo::sandbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool ready = [] {
    spdlog::set_level(spdlog::level::off);
    static char cache[] = "/tmp/vireo-vapp-fuzz-XXXXXX";
    ::setenv("VIREO_APP_CACHE", ::mkdtemp(cache), 1);
    return true;
  }();
  (void)ready;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto j = parse_json(text); j && validate_manifest(*j)) (void)manifest_digest(*j);
  int fd = ::memfd_create("vapp", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (::write(fd, data, size) == static_cast<ssize_t>(size))
    (void)open_package("/proc/self/fd/" + std::to_string(fd));
  ::close(fd);
  return 0;
}

std::vector<std::string> vireo_fuzz_seeds() {
  Json m = {{"vireo_app", 1},
            {"name", "seed"},
            {"command", {"/usr/lib/vireo-apps/seed/bin/seed"}},
            {"env", Json::array()},
            {"profile", "default"},
            {"net", "host"},
            {"files", {{{"path", "usr/lib/vireo-apps/seed/bin/seed"},
                        {"sha256", std::string(64, 'a')},
                        {"mode", 493}}}}};
  m["digest"] = manifest_digest(m);
  return {m.dump(), "{}", "[]", "{\"vireo_app\": 1, \"files\": [{\"path\": \"../x\"}]}"};
}
