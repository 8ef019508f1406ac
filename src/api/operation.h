#pragma once
// The JSON form of an operation (/1.0/operations/{id}), shared by server and client.
#include <string>

#include "base/json.h"
#include "base/result.h"

namespace vireo::api {

enum class OperationStatus { kPending, kRunning, kSuccess, kFailure, kCancelled };

std::string_view to_string(OperationStatus s);

struct Operation {
  std::string id;
  std::string description;
  OperationStatus status = OperationStatus::kPending;
  int progress_percent = -1;  // -1: the action does not report progress
  std::string progress_stage;
  bool may_cancel = false;
  std::string error;   // one line, set on failure
  int error_code = 0;  // HTTP status the error maps to, set on failure
  Json result;         // what the action produced, on success
  Json resources;      // {"profiles": ["/1.0/profiles/web"], ...}
  std::string created_at;
  std::string updated_at;

  bool done() const {
    return status == OperationStatus::kSuccess || status == OperationStatus::kFailure ||
           status == OperationStatus::kCancelled;
  }
};

Json to_json(const Operation& op);
[[nodiscard]] Result<Operation> operation_from_json(const Json& j);

}  // namespace vireo::api
