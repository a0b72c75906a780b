#include "db/maintenance_ops.hpp"

#include <string>

#include "db/raw.hpp"

namespace inferq::db {
namespace {

// Beside migrate's lock ("inferq"), in the same single-key space.
constexpr long long kVacuumLockKey = 0x696e66657271LL + 1;

}  // namespace

std::int64_t dead_job_rows(Session& s) {
  std::int64_t n = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = tx.exec(
        "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_all_tables"
        " WHERE relid = 'inferq.jobs'::regclass");
    if (!r.empty()) n = r[0][0].as<std::int64_t>();
  });
  return n;
}

bool may_vacuum_jobs(Session& s) {
  bool ok = false;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = tx.exec(
        "SELECT pg_has_role(current_user, c.relowner, 'USAGE')"
        "    OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        "  FROM pg_class c WHERE c.oid = 'inferq.jobs'::regclass");
    ok = !r.empty() && r[0][0].as<bool>();
  });
  return ok;
}

bool vacuum_jobs(Session& s) {
  bool ran = false;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const std::string key = std::to_string(kVacuumLockKey);
    if (!tx.exec("SELECT pg_try_advisory_lock(" + key + ")")[0][0].as<bool>()) return;
    try {
      // VACUUM cannot run in a transaction block; a nontransaction sends it
      // as is. The TOAST table holds only large payloads: not worth a pass.
      tx.exec("VACUUM (PROCESS_TOAST FALSE) inferq.jobs");
    } catch (...) {
      if (raw.conn.is_open()) {
        try {
          tx.exec("SELECT pg_advisory_unlock(" + key + ")");
        } catch (...) {
          // The connection is going away; its locks go with it.
        }
      }
      throw;
    }
    tx.exec("SELECT pg_advisory_unlock(" + key + ")");
    ran = true;
  });
  return ran;
}

int prune_jobs(Session& s, const std::string& queue, const std::string& state,
               std::chrono::milliseconds older_than, int max_rows) {
  int n = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = raw.exec_statement(
        tx, "inferq_prune",
        "SELECT inferq.prune($1, $2::inferq.job_state, make_interval(secs => $3::float8 / 1000), $4)", queue,
        state, static_cast<long long>(older_than.count()), max_rows);
    n = r[0][0].as<int>();
  });
  return n;
}

std::vector<FinishedCount> count_finished_jobs(Session& s, const std::vector<std::string>& queues) {
  std::vector<FinishedCount> out;
  if (queues.empty()) return out;
  const std::string list = queue_array_literal(queues);
  s.run([&](Raw& raw) {
    out.clear();
    pqxx::work tx(raw.conn);
    // As the backlog sample: the partial index, in this backend alone.
    tx.exec(kCountingSettings);
    const auto r = raw.exec_statement(tx, "inferq_count_finished",
                                      "SELECT j.queue, j.state::text, count(*) FROM inferq.jobs j"
                                      " WHERE j.queue = ANY ($1::text[])"
                                      "   AND j.state IN ('succeeded', 'dead', 'cancelled')"
                                      " GROUP BY 1, 2",
                                      list);
    tx.commit();
    for (const auto& row : r) out.push_back({row[0].c_str(), row[1].c_str(), row[2].as<std::int64_t>()});
  });
  return out;
}

std::optional<std::pair<int, int>> detect_transaction_pooling(const std::string& url) {
  Session first(url, "inferq pooler check");
  Session second(url, "inferq pooler check");
  const auto backend = [](Session& s) {
    int pid = 0;
    s.run([&](Raw& raw) {
      pqxx::nontransaction tx(raw.conn);
      pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
    });
    return pid;
  };
  const int before = backend(first);
  std::optional<std::pair<int, int>> moved;
  second.run([&](Raw& raw) {
    pqxx::work held(raw.conn);
    held.exec("SELECT pg_backend_pid()");
    const int after = backend(first);
    if (after != before) moved = std::make_pair(before, after);
    held.commit();
  });
  return moved;
}

}  // namespace inferq::db
