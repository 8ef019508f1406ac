#include "registry/errors.h"

#include "base/json.h"

namespace vireo::registry {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kBlobUnknown:
      return "BLOB_UNKNOWN";
    case Code::kBlobUploadInvalid:
      return "BLOB_UPLOAD_INVALID";
    case Code::kBlobUploadUnknown:
      return "BLOB_UPLOAD_UNKNOWN";
    case Code::kDigestInvalid:
      return "DIGEST_INVALID";
    case Code::kManifestBlobUnknown:
      return "MANIFEST_BLOB_UNKNOWN";
    case Code::kManifestInvalid:
      return "MANIFEST_INVALID";
    case Code::kManifestUnknown:
      return "MANIFEST_UNKNOWN";
    case Code::kNameInvalid:
      return "NAME_INVALID";
    case Code::kNameUnknown:
      return "NAME_UNKNOWN";
    case Code::kSizeInvalid:
      return "SIZE_INVALID";
    case Code::kUnauthorized:
      return "UNAUTHORIZED";
    case Code::kDenied:
      return "DENIED";
    case Code::kUnsupported:
      return "UNSUPPORTED";
    case Code::kTooManyRequests:
      return "TOOMANYREQUESTS";
    case Code::kRangeInvalid:
      return "BLOB_UPLOAD_INVALID";
    case Code::kTooLarge:
      return "SIZE_INVALID";
    case Code::kPaginationInvalid:
      return "PAGINATION_NUMBER_INVALID";
    case Code::kTagInvalid:
      return "TAG_INVALID";
    case Code::kMethodUnknown:
      return "UNSUPPORTED";
    case Code::kUnknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

int http_status(Code code) {
  switch (code) {
    case Code::kBlobUnknown:
    case Code::kBlobUploadUnknown:
    case Code::kManifestUnknown:
    case Code::kNameUnknown:
      return 404;
    case Code::kUnauthorized:
      return 401;
    case Code::kDenied:
      return 403;
    case Code::kTooManyRequests:
      return 429;
    case Code::kRangeInvalid:
      return 416;
    case Code::kTooLarge:
      return 413;
    case Code::kMethodUnknown:
      return 405;
    case Code::kUnknown:
      return 500;
    default:
      return 400;
  }
}

static Code code_for(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidArgument:
      return Code::kUnsupported;
    case ErrorCode::kUnauthorized:
      return Code::kUnauthorized;
    case ErrorCode::kPermissionDenied:
      return Code::kDenied;
    case ErrorCode::kNotFound:
      return Code::kBlobUnknown;
    case ErrorCode::kTooLarge:
      return Code::kTooLarge;
    case ErrorCode::kRangeNotSatisfiable:
      return Code::kRangeInvalid;
    default:
      return Code::kUnknown;
  }
}

RegistryError::RegistryError(const Error& e) : code_(code_for(e.code())), message_(e.message()) {}

std::string RegistryError::json_body() const {
  Json err = {{"code", code_name(code_)}, {"message", message_}};
  err["detail"] = detail_.empty() ? Json(nullptr) : Json(detail_);
  return dump_json(Json{{"errors", Json::array({err})}});
}

}  // namespace vireo::registry
