#include "support/drain.hpp"

namespace inferq::test {

bool backlog_drained(pqxx::connection& c, const std::string& queue) {
  pqxx::work tx(c);
  // The planner takes a sequential scan for the first available job when it
  // reckons most rows are, which reads every finished job ahead of it.
  tx.exec("SET LOCAL enable_seqscan = off");
  const bool drained = tx.exec_params(
                             "SELECT NOT EXISTS (SELECT 1 FROM inferq.jobs WHERE queue = $1"
                             "                     AND state = 'available' AND work_unit_key IS NULL)"
                             "   AND NOT EXISTS (SELECT 1 FROM inferq.jobs WHERE state = 'running')",
                             queue)[0][0]
                           .as<bool>();
  tx.commit();
  return drained;
}

void fill_echo_backlog(pqxx::connection& c, long n) {
  {
    pqxx::work tx(c);
    tx.exec(
        "SELECT inferq.enqueue('echo', jsonb_build_object('i', g, 'text', 'hello world')) "
        "FROM generate_series(1, " +
        std::to_string(n) + ") g");
    tx.commit();
  }
  pqxx::nontransaction nt(c);
  nt.exec("VACUUM ANALYZE inferq.jobs");
  nt.exec("CHECKPOINT");
}

}  // namespace inferq::test
