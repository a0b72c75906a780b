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
