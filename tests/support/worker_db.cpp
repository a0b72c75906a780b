#include "support/worker_db.hpp"

#include "support/migrated_database.hpp"

namespace inferq::test {

MigratedDb::MigratedDb() : url(migrated_database()), conn(url) {}

void MigratedDb::exec(const std::string& sql) {
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

std::string MigratedDb::scalar(const std::string& sql) {
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec1(sql);
  return r[0].is_null() ? "NULL" : r[0].c_str();
}

std::string MigratedDb::error(const std::string& sql) {
  try {
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  } catch (const pqxx::sql_error& e) {
    const std::string what = e.what();
    return what.substr(0, what.find('\n'));
  }
  return "";
}

std::string MigratedDb::state(std::int64_t id) {
  return scalar("SELECT state::text FROM inferq.jobs WHERE id = " + std::to_string(id));
}

int MigratedDb::jobs() { return value<int>("SELECT count(*) FROM inferq.jobs"); }

WorkerDb::WorkerDb(const std::vector<std::string>& queues, const std::string& host, int pid)
    : who{host + ":" + std::to_string(pid), host, pid, "test", queues},
      session(url, "test-daemon"),
      worker(db::register_worker(session, who)) {}

}  // namespace inferq::test
