// The harness's PostgreSQL cluster: databases, crash restart, killed backends.
#include <doctest.h>

#include <pqxx/pqxx>

#include <filesystem>
#include <string>

#include "support/pg_cluster.hpp"

namespace {

using inferq::test::PgCluster;

int count_rows(const std::string& url, const std::string& table) {
  pqxx::connection conn(url);
  pqxx::work txn(conn);
  return txn.exec1("SELECT count(*) FROM " + table)[0].as<int>();
}

}  // namespace

TEST_CASE("the shared cluster hands out separate empty databases") {
  PgCluster& pg = PgCluster::shared();
  CHECK(&pg == &PgCluster::shared());
  REQUIRE(pg.running());

  const std::string a = pg.create_database();
  const std::string b = pg.create_database();
  CHECK(a != b);
  CHECK(a.rfind("postgresql://inferq@127.0.0.1:" + std::to_string(pg.port()) + "/", 0) == 0);

  {
    pqxx::connection conn(a);
    pqxx::work txn(conn);
    txn.exec("CREATE TABLE t (x int)");
    txn.exec("INSERT INTO t VALUES (1), (2)");
    txn.commit();
  }
  CHECK(count_rows(a, "t") == 2);

  pqxx::connection conn_b(b);
  pqxx::work txn_b(conn_b);
  CHECK(txn_b.exec1("SELECT current_database()")[0].as<std::string>() == PgCluster::database_name(b));
  CHECK(txn_b.exec1("SELECT count(*) FROM pg_tables WHERE tablename = 't'")[0].as<int>() == 0);
  CHECK(txn_b.exec1("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0].as<bool>());
}

TEST_CASE("the unix socket reaches the same database") {
  PgCluster& pg = PgCluster::shared();
  const std::string url = pg.create_database();
  const std::string name = PgCluster::database_name(url);
  pqxx::connection conn(pg.socket_url(name));
  pqxx::work txn(conn);
  CHECK(txn.exec1("SELECT current_database()")[0].as<std::string>() == name);
  // A unix-socket connection has no client address.
  CHECK(txn.exec1("SELECT inet_client_addr() IS NULL")[0].as<bool>());
}

TEST_CASE("restart_immediate keeps committed rows and cuts open connections") {
  PgCluster& pg = PgCluster::shared();
  const std::string url = pg.create_database();
  pqxx::connection survivor(url);
  {
    pqxx::work txn(survivor);
    txn.exec("CREATE TABLE t (x int)");
    txn.exec("INSERT INTO t SELECT generate_series(1, 1000)");
    txn.commit();
  }
  const int port = pg.port();
  const pid_t before = pg.server_pid();

  pg.restart_immediate();

  CHECK(pg.running());
  CHECK(pg.port() == port);
  CHECK(pg.server_pid() != before);
  CHECK_THROWS(pqxx::work(survivor).exec("SELECT 1"));
  CHECK(count_rows(url, "t") == 1000);
  const std::string log = pg.log_tail(1000);
  INFO(log);
  CHECK(log.find("automatic recovery in progress") != std::string::npos);
  CHECK(log.find("not yet accepting connections") == std::string::npos);  // the harness waits quietly
}

TEST_CASE("kill_backends ends the sessions of one database only") {
  PgCluster& pg = PgCluster::shared();
  const std::string a = pg.create_database();
  const std::string b = pg.create_database();
  pqxx::connection a1(a);
  pqxx::connection a2(a);
  pqxx::connection b1(b);

  CHECK(pg.kill_backends(PgCluster::database_name(a)) == 2);

  CHECK_THROWS(pqxx::work(a1).exec("SELECT 1"));
  CHECK_THROWS(pqxx::work(a2).exec("SELECT 1"));
  pqxx::work txn(b1);
  CHECK(txn.exec1("SELECT 1")[0].as<int>() == 1);
  CHECK(pg.kill_backends("no_such_database") == 0);
}

TEST_CASE("a private cluster stops, starts again and removes its directory") {
  std::string dir;
  {
    PgCluster pg;
    dir = pg.directory();
    CHECK(std::filesystem::exists(pg.data_dir() + "/PG_VERSION"));
    CHECK_FALSE(pg.running());
    CHECK_THROWS_AS(pg.url("postgres"), std::logic_error);

    pg.start();
    pg.start();  // a no-op
    const std::string url = pg.create_database();
    CHECK(count_rows(url, "pg_class") > 0);
    CHECK(pg.port() != PgCluster::shared().port());

    pg.stop();
    pg.stop();
    CHECK_FALSE(pg.running());
    CHECK_THROWS(pqxx::connection(url));

    pg.start();
    CHECK(count_rows(url, "pg_class") > 0);
  }
  CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("database_name reads both URL forms") {
  CHECK(PgCluster::database_name("postgresql://inferq@127.0.0.1:5432/jobs") == "jobs");
  CHECK(PgCluster::database_name("postgresql://inferq@/jobs?host=/tmp/x/run&port=5432") == "jobs");
}
