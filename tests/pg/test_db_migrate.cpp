// src/db/migrate: applying the embedded migrations, once, under an advisory
// lock, then every function's one current definition; refusing a database
// newer than this binary; the daemon's check of version and functions.
#include <doctest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "db/error.hpp"
#include "db/migrate.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::db::DbError;
using inferq::db::MigrateReport;
using inferq::db::Session;
using inferq::test::PgCluster;

// The key src/db/migrate.cpp serializes migrations with ("inferq").
constexpr long long kMigrateLockKey = 0x696e66657271LL;

std::string fresh_database() { return PgCluster::shared().create_database(); }

std::vector<std::string> embedded_names() {
  std::vector<std::string> names;
  for (const auto &m : inferq::db::embedded_migrations()) names.push_back(m.name);
  return names;
}

int count(pqxx::connection &conn, const std::string &sql) {
  pqxx::nontransaction tx(conn);
  return tx.exec1(sql)[0].as<int>();
}

bool relation_exists(pqxx::connection &conn, const std::string &name) {
  pqxx::nontransaction tx(conn);
  return tx.exec_params1("SELECT to_regclass($1) IS NOT NULL", name)[0].as<bool>();
}

// Advisory locks held or awaited in the current database.
int advisory_locks(pqxx::connection &conn, bool granted) {
  pqxx::nontransaction tx(conn);
  return tx
      .exec_params1(
          "SELECT count(*) FROM pg_locks l JOIN pg_database d ON "
          "d.oid = l.database"
          " WHERE l.locktype = 'advisory' AND d.datname = "
          "current_database() AND l.granted = $1",
          granted)[0]
      .as<int>();
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

// What the daemon's start-up check says; "" when it would start.
std::string schema_problem(const std::string &url) {
  Session s(url, "test-check");
  return inferq::db::schema_problem(s).value_or("");
}

}  // namespace

TEST_CASE("the embedded migrations start at 0001_core and are in version order") {
  const auto &all = inferq::db::embedded_migrations();
  REQUIRE_FALSE(all.empty());
  CHECK(all.front().version == 1);
  CHECK(all.front().name == "0001_core");
  CHECK(all.front().sql.find("CREATE TABLE inferq.jobs") != std::string::npos);
  for (std::size_t i = 1; i < all.size(); ++i) CHECK(all[i - 1].version < all[i].version);
  CHECK(inferq::db::latest_version() == all.back().version);
}

TEST_CASE("functions are defined once, in their own files, with the privileges last") {
  // A numbered migration may drop a function (a signature change), never
  // define one: its current definition is in migrations/functions/.
  for (const auto &m : inferq::db::embedded_migrations()) {
    const std::string sql = upper(m.sql);
    CHECK_MESSAGE(sql.find("CREATE FUNCTION") == std::string::npos, m.name);
    CHECK_MESSAGE(sql.find("CREATE OR REPLACE FUNCTION") == std::string::npos, m.name);
  }
  const auto &files = inferq::db::embedded_functions();
  REQUIRE(files.size() > 2);
  CHECK(files.back().name == "privileges.sql");
  for (std::size_t i = 0; i + 1 < files.size(); ++i) {
    const std::string &name = files[i].name;  // functions/<function>.sql
    REQUIRE_MESSAGE(name.rfind("functions/", 0) == 0, name);
    const std::string function = name.substr(10, name.size() - 10 - 4);
    // One function per file (its overloads included): the name says where
    // to find it.
    const std::string sql = upper(files[i].sql);
    const std::string create = "CREATE OR REPLACE FUNCTION ";
    const std::string defines = create + "INFERQ." + upper(function) + "(";
    int definitions = 0;
    for (auto at = sql.find(create); at != std::string::npos; at = sql.find(create, at + 1)) {
      CHECK_MESSAGE(sql.compare(at, defines.size(), defines) == 0, name << " defines another function");
      ++definitions;
    }
    CHECK_MESSAGE(definitions > 0, name);
    if (i > 0) CHECK(files[i - 1].name < name);
  }
  CHECK(inferq::db::functions_digest().size() == 64);
}

TEST_CASE("a freshly migrated database's schema is the checked-in migrations/schema.sql") {
  // A change to the schema shows in review as a change to that file. After
  // changing a migration or a function, rewrite it with
  // INFERQ_WRITE_SCHEMA=1 ctest --test-dir build -R test_db_migrate
  const std::string dump = inferq::test::schema_dump(inferq::test::migrated_database());
  const std::string path = inferq::test::source_path("migrations/schema.sql");
  const char *write = std::getenv("INFERQ_WRITE_SCHEMA");
  if (write != nullptr && std::string(write) == "1") {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << dump;
  }
  const std::string checked_in = inferq::test::read_file(path);
  REQUIRE_MESSAGE(!checked_in.empty(), "cannot read " << path);
  CHECK_MESSAGE(checked_in == dump,
                "migrations/schema.sql differs from a fresh database's pg_dump: rewrite it with "
                "INFERQ_WRITE_SCHEMA=1 ctest --test-dir build -R test_db_migrate, and review the diff");
}

TEST_CASE("a database migrated to 0011 before functions had files of their own upgrades to the same schema") {
  // The fixture is a pg_dump of a database that `inferq migrate` of 0011
  // made, when every migration carried its functions' bodies.
  const std::string url = inferq::test::database_from_dump("tests/pg/fixtures/schema_v11.sql");
  CHECK(schema_problem(url).find("the database schema is at version 11") != std::string::npos);
  Session s(url, "test-migrate");
  const MigrateReport report = inferq::db::migrate(s);
  CHECK(report.from_version == 11);
  CHECK(report.to_version == inferq::db::latest_version());
  CHECK(report.functions_applied);
  CHECK(schema_problem(url) == "");
  CHECK(inferq::test::schema_dump(url) == inferq::test::schema_dump(inferq::test::migrated_database()));
}

TEST_CASE(
    "the daemon's check refuses a database whose functions are another build's until migrate mends them") {
  const std::string url = inferq::test::migrated_database();
  CHECK(schema_problem(url) == "");
  pqxx::connection conn(url);
  const auto key_lock_ns = [&] {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT inferq.key_lock_ns()")[0].as<long long>();
  };
  const long long ns = key_lock_ns();
  {
    // What another build's migrate would have left: its own body, its digest.
    pqxx::nontransaction tx(conn);
    tx.exec(
        "CREATE OR REPLACE FUNCTION inferq.key_lock_ns() RETURNS integer"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 7 $$");
    tx.exec("UPDATE inferq.schema_functions SET digest = 'another build'");
  }
  const std::string problem = schema_problem(url);
  CHECK_MESSAGE(problem.find("functions are not this inferq's") != std::string::npos, problem);
  CHECK_MESSAGE(problem.find("run `inferq migrate`") != std::string::npos, problem);

  Session s(url, "test-migrate");
  const MigrateReport report = inferq::db::migrate(s);
  CHECK(report.applied.empty());
  CHECK(report.functions_applied);
  CHECK(schema_problem(url) == "");
  CHECK(key_lock_ns() == ns);  // the built-in body is back

  {
    pqxx::nontransaction tx(conn);
    tx.exec("DELETE FROM inferq.schema_functions");
  }
  CHECK(schema_problem(url).find("stored digest none") != std::string::npos);
  CHECK(inferq::db::migrate(s).functions_applied);
  CHECK(schema_problem(url) == "");
  CHECK_FALSE(inferq::db::migrate(s).functions_applied);  // current: a no-op
}

TEST_CASE("schema_version is 0 on a database inferq never migrated") {
  const std::string url = fresh_database();
  Session s(url, "test-migrate");
  CHECK(inferq::db::schema_version(s) == 0);
  CHECK(schema_problem(url) == "the database schema is at version 0, this inferq needs " +
                                   std::to_string(inferq::db::latest_version()) + ": run `inferq migrate`");
}

TEST_CASE("migrate on an empty database applies 0001_core and records its version") {
  const std::string url = fresh_database();
  Session s(url, "test-migrate");

  const MigrateReport report = inferq::db::migrate(s);

  CHECK(report.from_version == 0);
  CHECK(report.to_version == inferq::db::latest_version());
  CHECK(report.applied == embedded_names());
  REQUIRE_FALSE(report.applied.empty());
  CHECK(report.applied.front() == "0001_core");
  CHECK(report.functions_applied);
  CHECK(inferq::db::schema_version(s) == inferq::db::latest_version());

  pqxx::connection conn(url);
  {
    pqxx::nontransaction tx(conn);
    const auto first = tx.exec1(
        "SELECT version, name FROM inferq.schema_migrations ORDER BY "
        "version LIMIT 1");
    CHECK(first[0].as<int>() == 1);
    CHECK(first[1].as<std::string>() == "0001_core");
  }
  CHECK(count(conn, "SELECT count(*) FROM inferq.schema_migrations") ==
        static_cast<int>(inferq::db::embedded_migrations().size()));
  for (const char *table :
       {"inferq.jobs", "inferq.active_sessions", "inferq.workers", "inferq.jobs_claim_unkeyed"})
    CHECK_MESSAGE(relation_exists(conn, table), table);
  CHECK(count(conn,
              "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON "
              "n.oid = p.pronamespace"
              " WHERE n.nspname = 'inferq' AND p.proname IN"
              " ('enqueue', 'cancel', 'claim', 'heartbeat', 'reap', "
              "'complete', 'release')") == 7);
  CHECK(advisory_locks(conn, true) == 0);  // the lock was given back
}

TEST_CASE("a second migrate is a no-op") {
  const std::string url = fresh_database();
  Session s(url, "test-migrate");
  inferq::db::migrate(s);
  pqxx::connection conn(url);
  const auto applied_at = [&] {
    pqxx::nontransaction tx(conn);
    return tx
        .exec1(
            "SELECT string_agg(version || '@' || applied_at, ',' ORDER BY "
            "version)"
            " FROM inferq.schema_migrations")[0]
        .as<std::string>();
  };
  const std::string before = applied_at();

  const MigrateReport again = inferq::db::migrate(s);
  Session other(url, "test-migrate-2");
  const MigrateReport from_another_session = inferq::db::migrate(other);

  for (const auto &r : {again, from_another_session}) {
    CHECK(r.from_version == inferq::db::latest_version());
    CHECK(r.to_version == inferq::db::latest_version());
    CHECK(r.applied.empty());
    CHECK_FALSE(r.functions_applied);
  }
  CHECK(applied_at() == before);
  CHECK(advisory_locks(conn, true) == 0);
}

TEST_CASE(
    "two sessions migrating a fresh database at once both succeed and "
    "apply each migration once") {
  const std::string url = fresh_database();
  pqxx::connection holder(url);
  // Hold the migration lock so both migrators are provably waiting on it at
  // the same moment, then let them race.
  {
    pqxx::nontransaction tx(holder);
    tx.exec("SELECT pg_advisory_lock(" + std::to_string(kMigrateLockKey) + ")");
  }

  std::mutex mu;
  std::condition_variable cv;
  bool go = false;  // guarded by mu
  MigrateReport reports[2];
  std::exception_ptr errors[2];
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      try {
        Session s(url, "test-migrate-" + std::to_string(i));
        s.connect();
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait_for(lock, std::chrono::seconds(30), [&] { return go; });
        }
        reports[i] = inferq::db::migrate(s);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();

  pqxx::connection observer(url);
  const bool both_waiting = inferq::test::wait_until([&] { return advisory_locks(observer, false) == 2; },
                                                     std::chrono::seconds(10));
  CHECK_MESSAGE(both_waiting, "both migrators should block on the advisory lock");
  Session peek(url, "test-migrate-peek");
  CHECK(inferq::db::schema_version(peek) == 0);  // neither got in while the lock was held
  {
    pqxx::nontransaction tx(holder);
    tx.exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrateLockKey) + ")");
  }
  for (auto &t : threads) t.join();

  for (int i = 0; i < 2; ++i) {
    if (errors[i]) {
      try {
        std::rethrow_exception(errors[i]);
      } catch (const std::exception &e) {
        FAIL("migrator " << i << " failed: " << e.what());
      }
    }
  }
  const std::size_t applied = reports[0].applied.size() + reports[1].applied.size();
  CHECK(applied == inferq::db::embedded_migrations().size());
  CHECK((reports[0].applied.empty() || reports[1].applied.empty()));
  for (const auto &r : reports) CHECK(r.to_version == inferq::db::latest_version());
  CHECK(count(observer, "SELECT count(*) FROM inferq.schema_migrations") ==
        static_cast<int>(inferq::db::embedded_migrations().size()));
  CHECK(advisory_locks(observer, true) == 0);
}

TEST_CASE("a database at a higher version than this binary knows is refused") {
  const std::string url = fresh_database();
  Session s(url, "test-migrate");
  inferq::db::migrate(s);
  const int future = inferq::db::latest_version() + 1;
  pqxx::connection conn(url);
  {
    pqxx::nontransaction tx(conn);
    tx.exec_params(
        "INSERT INTO inferq.schema_migrations (version, name) "
        "VALUES ($1, 'from_the_future')",
        future);
  }
  CHECK(inferq::db::schema_version(s) == future);

  try {
    inferq::db::migrate(s);
    FAIL("migrate accepted a database newer than this binary");
  } catch (const DbError &e) {
    const std::string what = e.what();
    CHECK_FALSE(e.connection_lost());
    CHECK_MESSAGE(what.find("version " + std::to_string(future)) != std::string::npos, what);
    CHECK_MESSAGE(what.find("newer") != std::string::npos, what);
  }
  // The refusal gave the lock back: another session is refused too instead
  // of waiting forever, and the first session is still usable.
  Session other(url, "test-migrate-2");
  CHECK_THROWS_AS(inferq::db::migrate(other), DbError);
  CHECK(advisory_locks(conn, true) == 0);
  CHECK(inferq::db::schema_version(s) == future);
}

TEST_CASE("a migration that fails leaves nothing behind and gives the lock back") {
  const std::string url = fresh_database();
  pqxx::connection conn(url);
  {
    pqxx::nontransaction tx(conn);
    tx.exec("CREATE SCHEMA inferq");
    tx.exec("CREATE TABLE inferq.jobs (squatter int)");
  }
  Session s(url, "test-migrate");

  CHECK_THROWS_AS(inferq::db::migrate(s), DbError);

  CHECK(inferq::db::schema_version(s) == 0);
  CHECK_FALSE(relation_exists(conn, "inferq.workers"));  // 0001 rolled back as a whole
  CHECK(advisory_locks(conn, true) == 0);
  {
    pqxx::nontransaction tx(conn);
    tx.exec("DROP TABLE inferq.jobs");
  }
  const MigrateReport report = inferq::db::migrate(s);  // the same session recovers
  CHECK(report.applied == embedded_names());
}
