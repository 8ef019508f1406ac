#include "store/store.h"

namespace vireo::store {

// Append only: a released step is never edited, a change is a new step.
const std::vector<const char*>& migrations() {
  static const std::vector<const char*> kSteps = {
      // 1: objects of every kind, API tokens, trusted client certificates
      R"sql(
        CREATE TABLE objects (
          kind TEXT NOT NULL,
          name TEXT NOT NULL,
          revision INTEGER NOT NULL,
          spec TEXT NOT NULL,
          status TEXT NOT NULL,
          created_at TEXT NOT NULL,
          updated_at TEXT NOT NULL,
          PRIMARY KEY (kind, name)
        );
        CREATE TABLE tokens (
          name TEXT PRIMARY KEY,
          hash TEXT NOT NULL UNIQUE,
          created_at TEXT NOT NULL
        );
        CREATE TABLE trusted_certificates (
          fingerprint TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          created_at TEXT NOT NULL
        );
      )sql",
  };
  return kSteps;
}

}  // namespace vireo::store
