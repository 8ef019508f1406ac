#pragma once
// Every API error body is {"error": "one clear line", "code": HTTP status}. This is the one
// mapping from ErrorCode to HTTP status, used by the server and (in reverse) by the client.
#include "base/json.h"
#include "base/result.h"

namespace vireo::api {

int http_status(ErrorCode code);
ErrorCode error_code_for_status(int status);
Json error_body(const Error& e);
// An error body received from the server as an Error (falls back to the status line).
Error error_from_body(int status, const Json& body);

}  // namespace vireo::api
