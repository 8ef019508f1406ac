#include "store/store.h"

#include <sqlite3.h>

#include "base/time.h"
#include "store/statement.h"

namespace vireo::store {

namespace {

constexpr const char* kObjectColumns = "kind, name, revision, spec, status, created_at, updated_at";

ObjectRow read_object(const Statement& st) {
  ObjectRow row{st.text(0), st.text(1), st.integer(2), Json::parse(st.text(3), nullptr, false),
                st.text(4), st.text(5), st.text(6)};
  return row;
}

// Commits on success, rolls back when destroyed uncommitted.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Result<void> begin() {
    TRY(exec("BEGIN IMMEDIATE"));
    open_ = true;
    return {};
  }
  Result<void> commit() {
    TRY(exec("COMMIT"));
    open_ = false;
    return {};
  }

 private:
  Result<void> exec(const char* sql) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db_, rc, sql));
    return {};
  }
  sqlite3* db_;
  bool open_ = false;
};

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sqlite_error(db, rc, fmt::format("open database {}", path.string()));
    sqlite3_close(db);
    return std::unexpected(e);
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  // FULL: a committed transaction survives power loss too, not only a killed process.
  TRY_CTX(store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON"),
          "database {}", path.string());
  TRY_CTX(store->migrate(), "database {}", path.string());
  return store;
}

Store::~Store() {
  sqlite3_close(db_);
}

Result<void> Store::exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(sqlite_error(db_, rc, "execute"));
  return {};
}

int Store::schema_version() {
  std::lock_guard lock(mu_);
  auto st = Statement::prepare(db_, "PRAGMA user_version");
  if (!st || !st->step().value_or(false)) return -1;
  return static_cast<int>(st->integer(0));
}

Result<void> Store::migrate() {
  auto st = TRY(Statement::prepare(db_, "PRAGMA user_version"));
  TRY(st.step());
  const int current = static_cast<int>(st.integer(0));
  const auto& steps = migrations();
  const int latest = static_cast<int>(steps.size());
  if (current > latest)
    return make_error(
        ErrorCode::kConflict,
        "schema version {} is newer than this vireod understands ({}); upgrade vireod", current,
        latest);
  for (int v = current; v < latest; ++v) {
    Transaction tx(db_);
    TRY(tx.begin());
    TRY_CTX(exec(steps[static_cast<size_t>(v)]), "migrate schema to version {}", v + 1);
    TRY(exec(fmt::format("PRAGMA user_version = {}", v + 1).c_str()));
    TRY(tx.commit());
  }
  return {};
}

Result<ObjectRow> Store::insert_object(const std::string& kind, const std::string& name,
                                       const Json& spec, const std::string& status) {
  std::lock_guard lock(mu_);
  const std::string now = now_timestamp();
  auto st = TRY(Statement::prepare(
      db_,
      "INSERT INTO objects (kind, name, revision, spec, status, created_at, updated_at) "
      "VALUES (?, ?, 1, ?, ?, ?, ?)"));
  st.bind(1, kind).bind(2, name).bind(3, dump_json(spec)).bind(4, status).bind(5, now).bind(6, now);
  if (auto r = st.run(); !r) {
    if (r.error().code() == ErrorCode::kAlreadyExists)
      return make_error(ErrorCode::kAlreadyExists, "{} '{}' already exists", kind, name);
    return std::unexpected(r.error());
  }
  return ObjectRow{kind, name, 1, spec, status, now, now};
}

Result<ObjectRow> Store::get_object(const std::string& kind, const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(
      db_, fmt::format("SELECT {} FROM objects WHERE kind = ? AND name = ?", kObjectColumns)));
  st.bind(1, kind).bind(2, name);
  if (!TRY(st.step())) return make_error(ErrorCode::kNotFound, "{} '{}' not found", kind, name);
  return read_object(st);
}

Result<std::vector<ObjectRow>> Store::list_objects(const std::string& kind) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(
      db_, fmt::format("SELECT {} FROM objects WHERE kind = ? ORDER BY name", kObjectColumns)));
  st.bind(1, kind);
  std::vector<ObjectRow> rows;
  while (TRY(st.step())) rows.push_back(read_object(st));
  return rows;
}

Result<ObjectRow> Store::update_object(const std::string& kind, const std::string& name,
                                       const Json& spec, const std::string& status,
                                       std::optional<int64_t> expected_revision) {
  std::lock_guard lock(mu_);
  Transaction tx(db_);
  TRY(tx.begin());
  auto get = TRY(Statement::prepare(
      db_, fmt::format("SELECT {} FROM objects WHERE kind = ? AND name = ?", kObjectColumns)));
  get.bind(1, kind).bind(2, name);
  if (!TRY(get.step())) return make_error(ErrorCode::kNotFound, "{} '{}' not found", kind, name);
  ObjectRow row = read_object(get);
  if (expected_revision && *expected_revision != row.revision)
    return make_error(ErrorCode::kPreconditionFailed,
                      "{} '{}' was changed by someone else; fetch it again and retry", kind, name);
  row.revision += 1;
  row.spec = spec;
  row.status = status;
  row.updated_at = now_timestamp();
  auto put = TRY(
      Statement::prepare(db_,
                         "UPDATE objects SET revision = ?, spec = ?, status = ?, updated_at = ? "
                         "WHERE kind = ? AND name = ?"));
  put.bind(1, row.revision).bind(2, dump_json(spec)).bind(3, status).bind(4, row.updated_at);
  put.bind(5, kind).bind(6, name);
  TRY(put.run());
  TRY(tx.commit());
  return row;
}

Result<void> Store::delete_object(const std::string& kind, const std::string& name,
                                  std::optional<int64_t> expected_revision) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(
      db_, "DELETE FROM objects WHERE kind = ? AND name = ? AND (? < 0 OR revision = ?)"));
  const int64_t rev = expected_revision.value_or(-1);
  st.bind(1, kind).bind(2, name).bind(3, rev).bind(4, rev);
  TRY(st.run());
  if (sqlite3_changes(db_) == 1) return {};
  auto exists = TRY(Statement::prepare(db_, "SELECT 1 FROM objects WHERE kind = ? AND name = ?"));
  exists.bind(1, kind).bind(2, name);
  if (TRY(exists.step()))
    return make_error(ErrorCode::kPreconditionFailed,
                      "{} '{}' was changed by someone else; fetch it again and retry", kind, name);
  return make_error(ErrorCode::kNotFound, "{} '{}' not found", kind, name);
}

Result<void> Store::add_token(const std::string& name, const std::string& token_hash) {
  std::lock_guard lock(mu_);
  auto st =
      TRY(Statement::prepare(db_, "INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)"));
  st.bind(1, name).bind(2, token_hash).bind(3, now_timestamp());
  if (auto r = st.run(); !r) {
    if (r.error().code() == ErrorCode::kAlreadyExists)
      return make_error(ErrorCode::kAlreadyExists, "token '{}' already exists", name);
    return r;
  }
  return {};
}

Result<bool> Store::token_hash_known(const std::string& token_hash) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(db_, "SELECT 1 FROM tokens WHERE hash = ?"));
  st.bind(1, token_hash);
  return TRY(st.step());
}

Result<std::vector<TokenRow>> Store::list_tokens() {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(db_, "SELECT name, created_at FROM tokens ORDER BY name"));
  std::vector<TokenRow> rows;
  while (TRY(st.step())) rows.push_back({st.text(0), st.text(1)});
  return rows;
}

Result<void> Store::delete_token(const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(db_, "DELETE FROM tokens WHERE name = ?"));
  st.bind(1, name);
  TRY(st.run());
  if (sqlite3_changes(db_) == 0)
    return make_error(ErrorCode::kNotFound, "token '{}' not found", name);
  return {};
}

Result<void> Store::add_trusted_certificate(const std::string& name,
                                            const std::string& fingerprint) {
  std::lock_guard lock(mu_);
  auto st = TRY(Statement::prepare(
      db_,
      "INSERT OR REPLACE INTO trusted_certificates (fingerprint, name, created_at) "
      "VALUES (?, ?, ?)"));
  st.bind(1, fingerprint).bind(2, name).bind(3, now_timestamp());
  return st.run();
}

Result<bool> Store::certificate_trusted(const std::string& fingerprint) {
  std::lock_guard lock(mu_);
  auto st =
      TRY(Statement::prepare(db_, "SELECT 1 FROM trusted_certificates WHERE fingerprint = ?"));
  st.bind(1, fingerprint);
  return TRY(st.step());
}

}  // namespace vireo::store
