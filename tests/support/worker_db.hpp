#pragma once

#include <pqxx/pqxx>

#include <cstdint>
#include <string>
#include <vector>

#include "db/queue_ops.hpp"
#include "db/session.hpp"

namespace inferq::test {

// A fresh migrated database of its own and a connection to it as the
// harness's superuser, which ran the migrations and so owns schema inferq:
// for setting up and reading back what the statements under test did.
struct MigratedDb {
  MigratedDb();

  std::string url;
  pqxx::connection conn;

  void exec(const std::string& sql);
  // The first column of the one row `sql` returns; "NULL" for NULL.
  std::string scalar(const std::string& sql);
  // The first column of the one row `sql` returns, as a T.
  template <typename T>
  T value(const std::string& sql) {
    pqxx::nontransaction tx(conn);
    return tx.exec1(sql)[0].as<T>();
  }
  // The first line of the error `sql` raises ("" when none).
  std::string error(const std::string& sql);
  // The state of job `id`.
  std::string state(std::int64_t id);
  // How many rows inferq.jobs holds.
  int jobs();
};

// For tests of the daemon's statements: a MigratedDb with the daemon's
// Session on it ("test-daemon") and a registered worker (`host`:`pid`,
// serving `queues`).
struct WorkerDb : MigratedDb {
  explicit WorkerDb(const std::vector<std::string>& queues = {"q"}, const std::string& host = "h",
                    int pid = 1);

  db::WorkerIdentity who;
  db::Session session;
  std::int64_t worker = 0;
};

}  // namespace inferq::test
