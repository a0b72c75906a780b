#pragma once

#include <string>
#include <vector>

#include "db/session.hpp"

namespace inferq::db {

struct Migration {
  int version;
  std::string name;  // file name without .sql, e.g. "0001_core"
  std::string sql;
};

// The migrations built into this binary, in version order.
const std::vector<Migration>& embedded_migrations();

// The newest version this binary knows.
int latest_version();

// The version the database is at; 0 when inferq was never migrated there.
// Throws DbError.
int schema_version(Session& session);

struct MigrateReport {
  int from_version = 0;
  int to_version = 0;
  std::vector<std::string> applied;  // names, in the order applied
};

// Applies the missing migrations in order, each in its own transaction, under
// an advisory lock so concurrent callers apply each one once. Running it
// again is a no-op. A database newer than this binary is an error. Throws
// DbError.
MigrateReport migrate(Session& session);

}  // namespace inferq::db
