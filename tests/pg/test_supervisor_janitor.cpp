// The janitor thread against a real PostgreSQL: it vacuums once dead rows
// reach its threshold, and does not vacuum again and again while a
// transaction keeps those rows from being removed.
#include "supervisor/janitor.hpp"

#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "support/migrated_database.hpp"

namespace {

using namespace std::chrono_literals;

struct Db {
  std::string url = inferq::test::migrated_database();
  pqxx::connection conn{url};
  void exec(const std::string& sql) {
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  }
  // Dead row versions, as this connection's updates counted them: flushed
  // to the shared statistics at once rather than within a second or ten.
  void make_dead_rows(int n) {
    exec("UPDATE inferq.jobs SET priority = priority + 1 WHERE id IN (SELECT id FROM inferq.jobs LIMIT " +
         std::to_string(n) + ")");
    exec("SELECT pg_stat_force_next_flush()");
    exec("SELECT 1");
  }
  std::int64_t vacuums() {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT pg_stat_clear_snapshot()");
    return tx.exec1("SELECT vacuum_count FROM pg_stat_all_tables WHERE relid = 'inferq.jobs'::regclass")[0]
        .as<std::int64_t>();
  }
  // Waits up to `within` for the vacuum count to exceed `than`.
  bool vacuumed_beyond(std::int64_t than, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (vacuums() <= than) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }
};

}  // namespace

TEST_CASE("vacuum_due counts only the dead rows that came after the last VACUUM") {
  using inferq::supervisor::vacuum_due;
  CHECK(vacuum_due(1000, 0, 1000));
  CHECK_FALSE(vacuum_due(999, 0, 1000));
  CHECK_FALSE(vacuum_due(1500, 1000, 1000));  // 1,000 of them it could not remove
  CHECK(vacuum_due(2000, 1000, 1000));
  CHECK(vacuum_due(1000, 5000, 1000) == false);  // fewer than left: counted afresh by the caller
}

TEST_CASE("while a transaction holds dead rows back, the janitor vacuums once, not every interval") {
  Db db;
  db.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 3000)");
  // A transaction whose snapshot still sees the rows about to die: no VACUUM
  // may remove them until it ends.
  pqxx::connection holder(db.url);
  pqxx::transaction<pqxx::repeatable_read> snapshot(holder);
  snapshot.exec("SELECT count(*) FROM inferq.jobs");
  db.make_dead_rows(2000);

  inferq::supervisor::Janitor janitor(db.url, 1000, 50ms);
  const auto before = db.vacuums();
  janitor.start();
  REQUIRE(db.vacuumed_beyond(before, 10s));
  const auto first = db.vacuums();
  // Forty intervals on: dead rows still over the threshold, none removable.
  std::this_thread::sleep_for(2s);
  CHECK(db.vacuums() == first);

  // Once the transaction ends and more rows die, it vacuums again.
  snapshot.commit();
  db.make_dead_rows(1000);
  CHECK(db.vacuumed_beyond(first, 10s));
  janitor.stop();
}
