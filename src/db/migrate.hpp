#pragma once

#include <optional>
#include <string>
#include <vector>

#include "db/session.hpp"

namespace inferq::db {

struct Migration {
  int version;
  std::string name;  // file name without .sql, e.g. "0001_core"
  std::string sql;
};

// A file of SQL that every migrate applies, idempotently: one function's
// current definition, or the privileges (last).
struct SqlFile {
  std::string name;  // relative to migrations/, e.g. "functions/claim.sql"
  std::string sql;
};

// The migrations built into this binary, in version order.
const std::vector<Migration>& embedded_migrations();

// migrations/functions/*.sql by name, then privileges.sql.
const std::vector<SqlFile>& embedded_functions();

// SHA-256 (hex) of embedded_functions(), names included.
const std::string& functions_digest();

// The newest version this binary knows.
int latest_version();

// The version the database is at; 0 when inferq was never migrated there.
// Throws DbError.
int schema_version(Session& session);

// Why this binary cannot serve the database, or nothing when it can: the
// schema is at another version, or its functions are not the ones built in
// (functions_digest). Throws DbError when the database cannot be read.
std::optional<std::string> schema_problem(Session& session);

struct MigrateReport {
  int from_version = 0;
  int to_version = 0;
  std::vector<std::string> applied;  // migration names, in the order applied
  bool functions_applied = false;    // the function files were (re)applied
};

// Applies the missing migrations in order, then every function file and the
// privileges, all in one transaction, under a transaction-level advisory
// lock so concurrent callers apply each migration once (through a
// transaction pooler too). The functions are skipped when no
// migration was missing and the stored digest is this binary's: running it
// again is a no-op. A database newer than this binary is an error. Throws
// DbError.
MigrateReport migrate(Session& session);

}  // namespace inferq::db
