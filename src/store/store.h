#pragma once
// Store: the host's single source of truth, an SQLite database in WAL mode under the state
// root. Every change is one transaction, so a crash (even kill -9) leaves the old or the new
// state. The schema is versioned in code (migrations.cc) and upgraded on open.
//
// Thread-safe: one connection guarded by a mutex; every public call is atomic.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"

struct sqlite3;

namespace vireo::store {

// One user-visible object of any kind (profile, vm, container, network, ...). The kind's own
// fields live in spec; status is the lifecycle marker the generic machinery uses ("creating"
// while a create is half-done, "ready" after).
struct ObjectRow {
  std::string kind;
  std::string name;
  int64_t revision = 0;  // bumped by every update; the source of the ETag
  Json spec;
  std::string status;
  std::string created_at;
  std::string updated_at;
};

struct TokenRow {
  std::string name;
  std::string created_at;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::filesystem::path& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version();

  // Objects. Errors: kAlreadyExists on a taken name, kNotFound, kPreconditionFailed when
  // expected_revision is given and differs.
  Result<ObjectRow> insert_object(const std::string& kind, const std::string& name,
                                  const Json& spec, const std::string& status);
  Result<ObjectRow> get_object(const std::string& kind, const std::string& name);
  Result<std::vector<ObjectRow>> list_objects(const std::string& kind);
  Result<ObjectRow> update_object(const std::string& kind, const std::string& name,
                                  const Json& spec, const std::string& status,
                                  std::optional<int64_t> expected_revision);
  Result<void> delete_object(const std::string& kind, const std::string& name,
                             std::optional<int64_t> expected_revision = std::nullopt);

  // API tokens, kept as SHA-256 hashes: a stolen database does not reveal usable tokens.
  Result<void> add_token(const std::string& name, const std::string& token_hash);
  Result<bool> token_hash_known(const std::string& token_hash);
  Result<std::vector<TokenRow>> list_tokens();
  Result<void> delete_token(const std::string& name);

  // Client certificates trusted for TLS, by SHA-256 fingerprint of the DER form.
  Result<void> add_trusted_certificate(const std::string& name, const std::string& fingerprint);
  Result<bool> certificate_trusted(const std::string& fingerprint);

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Result<void> migrate();
  Result<void> exec(const char* sql);

  std::mutex mu_;
  sqlite3* db_;
};

// The schema steps, index i upgrades version i to i+1. Exposed for the migration tests.
const std::vector<const char*>& migrations();

}  // namespace vireo::store
