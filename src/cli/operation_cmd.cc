#include "cli/context.h"
#include "cli/progress.h"

namespace vireo::cli {

namespace {

std::vector<std::string> operation_row(const api::Operation& op) {
  std::string progress = op.progress_percent >= 0 ? fmt::format("{}%", op.progress_percent) : "";
  return {op.id, op.description, std::string(api::to_string(op.status)), progress, op.created_at};
}

void print_operation(Context& ctx, const api::Operation& op) {
  std::vector<std::vector<std::string>> rows = {{"id:", op.id},
                                                {"description:", op.description},
                                                {"status:", std::string(api::to_string(op.status))},
                                                {"created:", op.created_at},
                                                {"updated:", op.updated_at}};
  if (op.progress_percent >= 0)
    rows.push_back({"progress:", fmt::format("{}% {}", op.progress_percent, op.progress_stage)});
  if (!op.error.empty()) rows.push_back({"error:", op.error});
  if (!op.result.is_null()) rows.push_back({"result:", dump_json(op.result)});
  print(ctx.format(), api::to_json(op), rows);
}

}  // namespace

// Follows an operation to its end with a progress bar; a failed or cancelled operation is an
// error carrying the operation's own message.
Result<api::Operation> follow_with_progress(Context& ctx, const std::string& id) {
  auto* c = TRY(ctx.client());
  ProgressBar bar;
  auto op = TRY(c->follow_operation(id, [&](const api::Operation& o) { bar.update(o); }));
  bar.finish();
  if (op.status == api::OperationStatus::kFailure)
    return make_error(ErrorCode::kIo, "operation {} failed: {}", op.id, op.error);
  if (op.status == api::OperationStatus::kCancelled)
    return make_error(ErrorCode::kCancelled, "operation {} was cancelled", op.id);
  return op;
}

Result<Json> run_operation(Context& ctx, const char* method, const std::string& path,
                           const Json* body) {
  auto reply = TRY(TRY(ctx.client())->request(method, path, body));
  auto op = TRY(api::operation_from_json(reply.body));
  return TRY(follow_with_progress(ctx, op.id)).result;
}

void add_operation_commands(CLI::App& app, Context& ctx) {
  auto* noun = app.add_subcommand("operation", "List, inspect, wait for and cancel operations");
  noun->alias("op");
  noun->require_subcommand(1);

  noun->add_subcommand("ls", "List operations")->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      auto ops = TRY(TRY(ctx.client())->operations());
      Json all = Json::array();
      std::vector<std::vector<std::string>> rows = {
          {"ID", "DESCRIPTION", "STATUS", "PROGRESS", "CREATED"}};
      for (const auto& op : ops) {
        all.push_back(api::to_json(op));
        rows.push_back(operation_row(op));
      }
      print(ctx.format(), all, rows);
      return {};
    }();
  });

  static std::string id;
  auto* show = noun->add_subcommand("show", "Show one operation");
  show->add_option("id", id, "Operation ID")->required();
  show->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      print_operation(ctx, TRY(TRY(ctx.client())->operation(id)));
      return {};
    }();
  });

  static int timeout = 0;
  auto* wait =
      noun->add_subcommand("wait", "Wait for an operation to finish (progress on a terminal)");
  wait->add_option("id", id, "Operation ID")->required();
  wait->add_option("--timeout", timeout, "Give up after this many seconds (0: no limit)");
  wait->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      if (timeout > 0) {
        auto op = TRY(TRY(ctx.client())->wait_operation(id, std::chrono::seconds(timeout)));
        if (!op.done())
          return make_error(ErrorCode::kTimeout, "operation {} still {} after {} s", id,
                            api::to_string(op.status), timeout);
        print_operation(ctx, op);
        if (op.status != api::OperationStatus::kSuccess)
          return make_error(ErrorCode::kIo, "operation {} {}: {}", id, api::to_string(op.status),
                            op.error);
        return {};
      }
      print_operation(ctx, TRY(follow_with_progress(ctx, id)));
      return {};
    }();
  });

  auto* cancel = noun->add_subcommand("cancel", "Cancel a running operation");
  cancel->add_option("id", id, "Operation ID")->required();
  cancel->callback([&ctx] {
    ctx.outcome = [&]() -> Result<void> {
      TRY(TRY(ctx.client())->cancel_operation(id));
      return {};
    }();
  });
}

}  // namespace vireo::cli
