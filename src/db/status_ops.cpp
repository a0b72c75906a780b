#include "db/status_ops.hpp"

#include "db/migrate.hpp"
#include "db/raw.hpp"

namespace inferq::db {

StatusReport read_status(Session& s, std::chrono::milliseconds live_within) {
  StatusReport report;
  report.schema_version = schema_version(s);
  if (report.schema_version == 0) return report;
  s.run([&](Raw& raw) {
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(raw.conn);
    std::map<std::string, QueueStatus> queues;
    for (const auto& row : tx.exec("SELECT queue, state::text, count(*) FROM inferq.jobs GROUP BY 1, 2")) {
      auto& q = queues[row[0].c_str()];
      q.queue = row[0].c_str();
      q.jobs_by_state[row[1].c_str()] = row[2].as<std::int64_t>();
    }
    for (const auto& row :
         tx.exec("SELECT queue, extract(epoch FROM now() - min(greatest(created_at, run_at)))::float8"
                 " FROM inferq.jobs WHERE state = 'available' AND run_at <= now() GROUP BY 1")) {
      queues[row[0].c_str()].oldest_available_age_seconds = row[1].as<double>();
    }
    for (auto& [name, q] : queues) {
      for (const char* state : {"available", "running", "succeeded", "dead", "cancelled"})
        q.jobs_by_state.emplace(state, 0);
      report.queues.push_back(std::move(q));
    }
    for (const auto& row :
         tx.exec("SELECT s.id, s.queue, s.work_unit_key, coalesce(w.name, '#' || s.worker_id::text),"
                 " (SELECT count(*) FROM inferq.jobs j WHERE j.lease_id = s.id AND j.state = 'running'),"
                 " extract(epoch FROM clock_timestamp() - s.claimed_at)::float8,"
                 " extract(epoch FROM clock_timestamp() - s.heartbeat_at)::float8"
                 " FROM inferq.active_sessions s LEFT JOIN inferq.workers w ON w.id = s.worker_id"
                 " ORDER BY s.id")) {
      LeaseStatus l;
      l.lease_id = row[0].as<std::int64_t>();
      l.queue = row[1].c_str();
      if (!row[2].is_null()) l.work_unit_key = row[2].c_str();
      l.worker = row[3].c_str();
      l.jobs = row[4].as<std::int64_t>();
      l.age_seconds = row[5].as<double>();
      l.heartbeat_age_seconds = row[6].as<double>();
      report.leases.push_back(std::move(l));
    }
    for (const auto& row : tx.exec_params(
             "SELECT id, name, version, extract(epoch FROM clock_timestamp() - started_at)::float8,"
             " extract(epoch FROM clock_timestamp() - last_seen_at)::float8"
             " FROM inferq.workers"
             " WHERE last_seen_at >= clock_timestamp() - make_interval(secs => $1::float8 / 1000)"
             " ORDER BY id",
             static_cast<long long>(live_within.count()))) {
      WorkerStatus w;
      w.id = row[0].as<std::int64_t>();
      w.name = row[1].c_str();
      w.version = row[2].c_str();
      w.up_seconds = row[3].as<double>();
      w.last_seen_seconds = row[4].as<double>();
      report.workers.push_back(std::move(w));
    }
  });
  return report;
}

}  // namespace inferq::db
