#pragma once

#include <string>

namespace inferq::test {

// A fresh database in the shared cluster (PgCluster::shared()) with every
// migration applied through db::migrate; returns its URL.
std::string migrated_database();

// A fresh database in the shared cluster holding what the pg_dump file at
// source_path(rel) restores (a frozen older schema, say); returns its URL.
std::string database_from_dump(const std::string& rel);

// `pg_dump --schema-only --no-owner -n inferq` of the database, less what
// differs between two dumps of the same schema: comment lines naming the
// versions ("-- Dumped from ...") and psql meta-commands (pg_dump 15.14 and
// later write `\restrict` with a random key).
std::string schema_dump(const std::string& url);

}  // namespace inferq::test
