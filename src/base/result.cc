#include "base/result.h"

#include <cstring>

namespace vireo {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kUnauthorized:
      return "unauthorized";
    case ErrorCode::kPermissionDenied:
      return "permission denied";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kMethodNotAllowed:
      return "method not allowed";
    case ErrorCode::kAlreadyExists:
      return "already exists";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kPreconditionFailed:
      return "precondition failed";
    case ErrorCode::kTooLarge:
      return "too large";
    case ErrorCode::kRangeNotSatisfiable:
      return "range not satisfiable";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kIo:
      return "i/o error";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "unknown";
}

static ErrorCode code_for_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ESRCH:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case EACCES:
    case EPERM:
      return ErrorCode::kPermissionDenied;
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
    case EXDEV:
      return ErrorCode::kInvalidArgument;
    case EBUSY:
    case ENOTEMPTY:
      return ErrorCode::kConflict;
    case ETIMEDOUT:
      return ErrorCode::kTimeout;
    case ECANCELED:
      return ErrorCode::kCancelled;
    case EFBIG:
    case E2BIG:
    case ENOSPC:
      return ErrorCode::kTooLarge;
    default:
      return ErrorCode::kIo;
  }
}

Error Error::from_errno(int err, std::string_view what) {
  return Error(code_for_errno(err), fmt::format("{}: {}", what, std::strerror(err)), err);
}

Error& Error::add_context(std::string_view ctx) {
  if (!ctx.empty()) message_ = fmt::format("{}: {}", ctx, message_);
  return *this;
}

Error Error::with_context(std::string_view ctx) && {
  add_context(ctx);
  return std::move(*this);
}

}  // namespace vireo
