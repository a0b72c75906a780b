#pragma once

#include <pqxx/pqxx>

#include <cstdint>
#include <string>
#include <vector>

#include "db/session.hpp"

namespace inferq::test {

// For tests of the daemon's statements: a fresh migrated database, the
// daemon's Session on it with a registered worker ("h:1", serving
// `queues`), and an owner connection for setting up and reading back.
struct WorkerDb {
  explicit WorkerDb(const std::vector<std::string>& queues = {"q"});

  std::string url;
  db::Session session;
  pqxx::connection conn;
  std::int64_t worker = 0;

  void exec(const std::string& sql);
  // The first column of the one row `sql` returns; "NULL" for NULL.
  std::string scalar(const std::string& sql);
  // The first line of the error `sql` raises ("" when none).
  std::string error(const std::string& sql);
};

}  // namespace inferq::test
