#include "store/statement.h"

namespace vireo::store {

Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  ErrorCode code = ErrorCode::kIo;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) code = ErrorCode::kAlreadyExists;
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) code = ErrorCode::kConflict;
  return Error(code, fmt::format("{}: {}", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

Result<Statement> Statement::prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db, rc, "prepare statement"));
  return Statement(db, stmt);
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(sqlite_error(db_, rc, "execute statement"));
}

Result<void> Statement::run() {
  while (TRY(step())) {
  }
  return {};
}

std::string Statement::text(int column) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, column))) : "";
}

int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

}  // namespace vireo::store
