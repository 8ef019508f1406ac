#pragma once
// The test guest for the VM tests (scripts/guest-image, cached in .cache/guest; built when
// absent — CI runs it first): a Debian cloud kernel, a busybox initramfs that prints
// VIREO-GUEST-READY on the serial console and offers a shell there, and boot.img, a disk that
// boots the same through SeaBIOS or OVMF.
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "base/subprocess.h"

namespace vireo::testing {

struct Guest {
  std::string kernel, initrd, boot_disk;
};

inline const Guest& guest() {
  static const Guest g = [] {
    namespace fs = std::filesystem;
    const char* src = std::getenv("VIREO_SOURCE_DIR");
    fs::path root = src ? src : ".";
    fs::path dir = root / ".cache" / "guest";
    if (!fs::exists(dir / "vmlinuz") || !fs::exists(dir / "initramfs.cpio.gz") ||
        !fs::exists(dir / "boot.img")) {
      auto r = run_process({(root / "scripts" / "guest-image").string()},
                           {.timeout = std::chrono::seconds(300)});
      if (!r || !r->ok()) ADD_FAILURE() << "scripts/guest-image failed";
    }
    return Guest{(dir / "vmlinuz").string(), (dir / "initramfs.cpio.gz").string(),
                 (dir / "boot.img").string()};
  }();
  return g;
}

}  // namespace vireo::testing
