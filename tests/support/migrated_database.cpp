#include "support/migrated_database.hpp"

#include "db/migrate.hpp"
#include "db/session.hpp"
#include "support/pg_cluster.hpp"

namespace inferq::test {

std::string migrated_database() {
  const std::string url = PgCluster::shared().create_database();
  db::Session s(url, "test-setup");
  db::migrate(s);
  return url;
}

}  // namespace inferq::test
