// The out-of-line part of vireo::Error (base/result.h) for the monitor, built without fmt and
// without strerror's message catalogue lookup: with them the static vireo-monitor maps in
// locale and formatting code that pushes a running monitor's RSS past 1 MiB. Messages read as
// those of base/result.cc. Only vireo-monitor links this; everything else links vireo_base.
#include <cerrno>
#include <cstring>

#include "base/result.h"

namespace vireo {

namespace {

ErrorCode code_for_errno(int err) {
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
      return ErrorCode::kInvalidArgument;
    case ENOSPC:
      return ErrorCode::kTooLarge;
    default:
      return ErrorCode::kIo;
  }
}

}  // namespace

Error Error::from_errno(int err, std::string_view what) {
  const char* text = ::strerrordesc_np(err);
  std::string message(what);
  message += ": ";
  message += text ? text : "error " + std::to_string(err);
  return Error(code_for_errno(err), std::move(message), err);
}

Error& Error::add_context(std::string_view ctx) {
  if (!ctx.empty()) message_ = std::string(ctx) + ": " + message_;
  return *this;
}

Error Error::with_context(std::string_view ctx) && {
  add_context(ctx);
  return std::move(*this);
}

}  // namespace vireo
