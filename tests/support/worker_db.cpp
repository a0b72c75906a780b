#include "support/worker_db.hpp"

#include "db/queue_ops.hpp"
#include "support/migrated_database.hpp"

namespace inferq::test {

WorkerDb::WorkerDb(const std::vector<std::string>& queues)
    : url(migrated_database()), session(url, "test-daemon"), conn(url) {
  db::WorkerIdentity who{"h:1", "h", 1, "test", queues};
  worker = db::register_worker(session, who);
}

void WorkerDb::exec(const std::string& sql) {
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

std::string WorkerDb::scalar(const std::string& sql) {
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec1(sql);
  return r[0].is_null() ? "NULL" : r[0].c_str();
}

std::string WorkerDb::error(const std::string& sql) {
  try {
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  } catch (const pqxx::sql_error& e) {
    const std::string what = e.what();
    return what.substr(0, what.find('\n'));
  }
  return "";
}

}  // namespace inferq::test
