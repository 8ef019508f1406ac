#pragma once
// Result/Error: the error idiom of every Vireo library. A fallible function returns
// Result<T> (std::expected<T, Error>); each layer adds context so that the final message reads
// like "qcow2 /p/v.qcow2: read L2 table at 0x50000: Input/output error".
#include <cerrno>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace vireo {

// What went wrong, in the categories callers act on (the API maps each to one HTTP status).
enum class ErrorCode {
  kInvalidArgument,      // 400: the caller sent something malformed or out of range
  kUnauthorized,         // 401: no or bad credentials
  kPermissionDenied,     // 403
  kNotFound,             // 404
  kMethodNotAllowed,     // 405
  kAlreadyExists,        // 409: name taken
  kConflict,             // 409: state does not allow the action (busy, running, in use)
  kPreconditionFailed,   // 412: ETag mismatch
  kTooLarge,             // 413
  kRangeNotSatisfiable,  // 416
  kCancelled,            // the operation was cancelled
  kTimeout,
  kUnavailable,  // 503: a dependency (device, peer process) is not there
  kIo,           // a system call failed for a reason not listed above
  kInternal,     // a bug or an impossible state
};

std::string_view to_string(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), message_(std::move(message)), errno_(sys_errno) {}

  // An error from a failed system call: "what: strerror(err)", code chosen from errno.
  static Error from_errno(int err, std::string_view what);

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }

  // Prefixes the message with what the caller was doing: "ctx: message".
  Error& add_context(std::string_view ctx);
  Error with_context(std::string_view ctx) &&;

 private:
  ErrorCode code_;
  std::string message_;
  int errno_;
};

template <typename T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}

template <typename... Args>
std::unexpected<Error> make_error(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected<Error>(Error(code, fmt::format(f, std::forward<Args>(args)...)));
}

// The last errno as an error, for wrappers right after a failed call.
inline std::unexpected<Error> errno_error(std::string_view what) {
  return std::unexpected<Error>(Error::from_errno(errno, what));
}

// Adds context to the error of a result, passing a value through untouched.
template <typename T>
Result<T> with_context(Result<T>&& r, std::string_view ctx) {
  if (!r) r.error().add_context(ctx);
  return std::move(r);
}

namespace detail {
template <typename T>
T unwrap(std::expected<T, Error>&& r) {
  return std::move(*r);
}
inline void unwrap(std::expected<void, Error>&&) {}
}  // namespace detail

}  // namespace vireo

// Propagates the error of a Result, or yields its value:  auto fd = TRY(sys::open(path));
#define TRY(expr)                                                                         \
  ({                                                                                      \
    auto&& vireo_try_result_ = (expr);                                                    \
    if (!vireo_try_result_) return std::unexpected(std::move(vireo_try_result_.error())); \
    ::vireo::detail::unwrap(std::move(vireo_try_result_));                                \
  })

// As TRY, adding what the caller was doing to the error.
#define TRY_CTX(expr, ...)                                                              \
  ({                                                                                    \
    auto&& vireo_try_result_ = (expr);                                                  \
    if (!vireo_try_result_)                                                             \
      return std::unexpected(                                                           \
          std::move(vireo_try_result_.error()).with_context(fmt::format(__VA_ARGS__))); \
    ::vireo::detail::unwrap(std::move(vireo_try_result_));                              \
  })
