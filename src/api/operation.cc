#include "api/operation.h"

namespace vireo::api {

std::string_view to_string(OperationStatus s) {
  switch (s) {
    case OperationStatus::kPending:
      return "pending";
    case OperationStatus::kRunning:
      return "running";
    case OperationStatus::kSuccess:
      return "success";
    case OperationStatus::kFailure:
      return "failure";
    case OperationStatus::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

static Result<OperationStatus> status_from_string(std::string_view s) {
  for (auto st : {OperationStatus::kPending, OperationStatus::kRunning, OperationStatus::kSuccess,
                  OperationStatus::kFailure, OperationStatus::kCancelled}) {
    if (to_string(st) == s) return st;
  }
  return make_error(ErrorCode::kInvalidArgument, "unknown operation status '{}'", s);
}

Json to_json(const Operation& op) {
  Json j = {{"id", op.id},
            {"description", op.description},
            {"status", to_string(op.status)},
            {"may_cancel", op.may_cancel},
            {"resources", op.resources.is_null() ? Json::object() : op.resources},
            {"created_at", op.created_at},
            {"updated_at", op.updated_at}};
  if (op.progress_percent >= 0)
    j["progress"] = {{"percent", op.progress_percent}, {"stage", op.progress_stage}};
  if (!op.error.empty()) {
    j["error"] = op.error;
    j["error_code"] = op.error_code;
  }
  if (!op.result.is_null()) j["result"] = op.result;
  return j;
}

Result<Operation> operation_from_json(const Json& j) {
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "operation: not an object");
  try {
    Operation op;
    op.id = j.at("id").get<std::string>();
    op.description = j.value("description", "");
    op.status = TRY(status_from_string(j.at("status").get<std::string>()));
    op.may_cancel = j.value("may_cancel", false);
    if (auto p = j.find("progress"); p != j.end() && p->is_object()) {
      op.progress_percent = p->value("percent", -1);
      op.progress_stage = p->value("stage", "");
    }
    op.error = j.value("error", "");
    op.error_code = j.value("error_code", 0);
    if (auto r = j.find("result"); r != j.end()) op.result = *r;
    op.resources = j.value("resources", Json::object());
    op.created_at = j.value("created_at", "");
    op.updated_at = j.value("updated_at", "");
    return op;
  } catch (const Json::exception& e) {
    return make_error(ErrorCode::kInvalidArgument, "operation: {}", e.what());
  }
}

}  // namespace vireo::api
