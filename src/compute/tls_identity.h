#pragma once
// A key and a self-signed certificate made for one migration: the source's QEMU presents it and
// the destination's QEMU trusts exactly it, so only the vireod that asked for the migration
// (through the authenticated API) can feed the destination a stream.
#include <string>

#include "base/result.h"

namespace vireo::compute {

struct TlsIdentity {
  std::string cert_pem;
  std::string key_pem;
};

// An ECDSA P-256 key and a certificate for it, signed by itself, valid for a day.
[[nodiscard]] Result<TlsIdentity> make_tls_identity(const std::string& common_name);

}  // namespace vireo::compute
