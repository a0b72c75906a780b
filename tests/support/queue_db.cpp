#include "support/queue_db.hpp"

#include <algorithm>

namespace inferq::test {

Job keyed(const std::string& key, int priority) {
  Job j;
  j.key = key;
  j.priority = priority;
  return j;
}

Job with_priority(int priority) {
  Job j;
  j.priority = priority;
  return j;
}

QueueDb::QueueDb() : WorkerDb({"q"}, "host-a", 101) {}

std::int64_t QueueDb::add(const Job& job) {
  pqxx::nontransaction tx(conn);
  const std::string max_attempts = job.max_attempts ? std::to_string(*job.max_attempts) : "";
  return tx
      .exec_params1(
          "SELECT inferq.enqueue($1, '{\"n\": 1}', $2, $3, now() + make_interval(secs => $4), $5::integer)",
          job.queue, job.key ? job.key->c_str() : nullptr, job.priority, job.run_in_seconds,
          job.max_attempts ? max_attempts.c_str() : nullptr)[0]
      .as<std::int64_t>();
}

std::optional<db::ClaimedUnit> QueueDb::claim(int max_jobs, const std::string& queue,
                                              int default_max_attempts) {
  return db::claim(session, queue, worker, max_jobs, default_max_attempts);
}

int QueueDb::complete(const std::vector<db::UnitFinish>& units) {
  return db::complete(session, units, who.name);
}

std::optional<std::string> QueueDb::field(std::int64_t id, const std::string& expression) {
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec_params1("SELECT (" + expression + ")::text FROM inferq.jobs WHERE id = $1", id);
  if (r[0].is_null()) return std::nullopt;
  return r[0].as<std::string>();
}

int QueueDb::attempts(std::int64_t id) { return std::stoi(*field(id, "attempts")); }

int QueueDb::error_count(std::int64_t id) { return std::stoi(*field(id, "jsonb_array_length(errors)")); }

bool QueueDb::flag(std::int64_t id, const std::string& condition) { return *field(id, condition) == "true"; }

int QueueDb::leases() { return value<int>("SELECT count(*) FROM inferq.active_sessions"); }

void QueueDb::make_due(std::int64_t id) {
  pqxx::nontransaction tx(conn);
  tx.exec_params("UPDATE inferq.jobs SET run_at = now() WHERE id = $1", id);
  tx.exec_params(
      "SELECT inferq.refresh_key_head(queue, work_unit_key) FROM inferq.jobs"
      " WHERE id = $1 AND work_unit_key IS NOT NULL",
      id);
}

bool QueueDb::cancel(std::int64_t id) {
  pqxx::nontransaction tx(conn);
  return tx.exec_params1("SELECT inferq.cancel($1)", id)[0].as<bool>();
}

void QueueDb::age_lease(std::int64_t lease, const std::string& by) {
  pqxx::nontransaction tx(conn);
  tx.exec_params("UPDATE inferq.active_sessions SET heartbeat_at = heartbeat_at - $2::interval WHERE id = $1",
                 lease, by);
}

std::vector<std::int64_t> ids_of(const db::ClaimedUnit& unit) {
  std::vector<std::int64_t> ids;
  for (const auto& j : unit.jobs) ids.push_back(j.id);
  return ids;
}

std::vector<std::int64_t> sorted_ids(const db::ClaimedUnit& unit) {
  auto ids = ids_of(unit);
  std::sort(ids.begin(), ids.end());
  return ids;
}

db::JobFinish succeeded(std::int64_t id, const std::string& result) {
  db::JobFinish f;
  f.job_id = id;
  f.ok = true;
  f.result_json = result;
  return f;
}

db::JobFinish failed(std::int64_t id, db::ErrorClass error_class, const std::string& message,
                     std::int64_t retry_ms) {
  db::JobFinish f;
  f.job_id = id;
  f.error_class = error_class;
  f.message = message;
  f.retry_ms = retry_ms;
  return f;
}

db::UnitFinish finish_all(const db::ClaimedUnit& unit,
                          const std::function<db::JobFinish(std::int64_t)>& outcome) {
  db::UnitFinish u;
  u.lease_id = unit.lease_id;
  for (const auto& j : unit.jobs) u.jobs.push_back(outcome(j.id));
  return u;
}

}  // namespace inferq::test
