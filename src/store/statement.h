#pragma once
// Statement: RAII over sqlite3_stmt with binding by position and typed column reads.
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vireo::store {

class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, std::string_view sql);
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, int64_t value);

  // Steps once: true when a row is available, false when done.
  Result<bool> step();
  // Steps to completion, for statements that return no rows.
  Result<void> run();

  std::string text(int column) const;
  int64_t integer(int column) const;

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// An SQLite result code as an Error; constraint violations become kAlreadyExists.
Error sqlite_error(sqlite3* db, int rc, std::string_view what);

}  // namespace vireo::store
