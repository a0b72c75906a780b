#include "support/migrated_database.hpp"

#include <chrono>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>

#include "db/migrate.hpp"
#include "db/session.hpp"
#include "support/pg_cluster.hpp"
#include "support/spawn.hpp"
#include "support/test_env.hpp"

namespace inferq::test {
std::string migrated_database() {
  const std::string url = PgCluster::shared().create_database();
  db::Session s(url, "test-setup");
  db::migrate(s);
  return url;
}

std::string database_from_dump(const std::string& rel) {
  const std::string url = PgCluster::shared().create_database();
  // A connection of its own: the dump empties search_path for the session.
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const std::string sql = read_file(source_path(rel));
  if (sql.empty()) throw std::runtime_error("cannot read " + source_path(rel));
  tx.exec(sql);
  return url;
}

std::string schema_dump(const std::string& url) {
  TempDir dir("inferq-dump");
  detail::SpawnSpec spec;
  spec.argv = {
      pg_program("pg_dump"), "--schema-only", "--no-owner", "-n", "inferq", "-f", dir.file("dump.sql"), url};
  detail::run_checked(spec, std::chrono::seconds(60));
  std::istringstream in(read_file(dir.file("dump.sql")));
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("\\", 0) == 0 || line.rfind("-- Dumped ", 0) == 0) continue;
    kept += line;
    kept += '\n';
  }
  return kept;
}

}  // namespace inferq::test
