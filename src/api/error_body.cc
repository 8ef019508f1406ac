#include "api/error_body.h"

namespace vireo::api {

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnauthorized:
      return 401;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kMethodNotAllowed:
      return 405;
    case ErrorCode::kAlreadyExists:
      return 409;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kPreconditionFailed:
      return 412;
    case ErrorCode::kTooLarge:
      return 413;
    case ErrorCode::kRangeNotSatisfiable:
      return 416;
    case ErrorCode::kCancelled:
      return 409;
    case ErrorCode::kTimeout:
      return 504;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kIo:
      return 500;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

ErrorCode error_code_for_status(int status) {
  switch (status) {
    case 400:
      return ErrorCode::kInvalidArgument;
    case 401:
      return ErrorCode::kUnauthorized;
    case 403:
      return ErrorCode::kPermissionDenied;
    case 404:
      return ErrorCode::kNotFound;
    case 405:
      return ErrorCode::kMethodNotAllowed;
    case 409:
      return ErrorCode::kConflict;
    case 412:
      return ErrorCode::kPreconditionFailed;
    case 413:
      return ErrorCode::kTooLarge;
    case 416:
      return ErrorCode::kRangeNotSatisfiable;
    case 503:
      return ErrorCode::kUnavailable;
    case 504:
      return ErrorCode::kTimeout;
    default:
      return ErrorCode::kInternal;
  }
}

Json error_body(const Error& e) {
  return {{"error", e.message()}, {"code", http_status(e.code())}};
}

Error error_from_body(int status, const Json& body) {
  if (body.is_object() && body.contains("error") && body["error"].is_string())
    return Error(error_code_for_status(status), body["error"].get<std::string>());
  return Error(error_code_for_status(status), fmt::format("server answered HTTP {}", status));
}

}  // namespace vireo::api
