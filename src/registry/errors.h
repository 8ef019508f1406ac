#pragma once
// RegistryError: an error in the terms of the OCI distribution spec (code, HTTP status, JSON
// body). Handlers return RegResult<T>; a vireo::Error from a lower layer converts implicitly
// (kNotFound and friends keep their meaning, anything else is a 500 UNKNOWN).
#include <expected>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vireo::registry {

enum class Code {
  kBlobUnknown,
  kBlobUploadInvalid,
  kBlobUploadUnknown,
  kDigestInvalid,
  kManifestBlobUnknown,
  kManifestInvalid,
  kManifestUnknown,
  kNameInvalid,
  kNameUnknown,
  kSizeInvalid,
  kUnauthorized,
  kDenied,
  kUnsupported,
  kTooManyRequests,
  kRangeInvalid,       // 416, BLOB_UPLOAD_INVALID in the body
  kTooLarge,           // 413, SIZE_INVALID in the body
  kPaginationInvalid,  // 400 PAGINATION_NUMBER_INVALID
  kTagInvalid,
  kMethodUnknown,  // 405 UNSUPPORTED
  kUnknown,        // 500
};

std::string_view code_name(Code code);
int http_status(Code code);

class RegistryError {
 public:
  RegistryError(Code code, std::string message, std::string detail = {})
      : code_(code), message_(std::move(message)), detail_(std::move(detail)) {}
  // From a lower layer: the category picks the spec code.
  RegistryError(const Error& e);  // NOLINT(google-explicit-constructor): TRY converts

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& detail() const { return detail_; }
  // {"errors":[{"code":..., "message":..., "detail":...}]}
  std::string json_body() const;

 private:
  Code code_;
  std::string message_;
  std::string detail_;
};

template <typename T = void>
using RegResult = std::expected<T, RegistryError>;

inline std::unexpected<RegistryError> reg_error(Code code, std::string message,
                                                std::string detail = {}) {
  return std::unexpected<RegistryError>(RegistryError(code, std::move(message), std::move(detail)));
}

}  // namespace vireo::registry

// TRY and TRY_CTX unwrap RegResult values too.
namespace vireo::detail {
template <typename T>
T unwrap(std::expected<T, registry::RegistryError>&& r) {
  return std::move(*r);
}
inline void unwrap(std::expected<void, registry::RegistryError>&&) {}
}  // namespace vireo::detail
