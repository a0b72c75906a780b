#include "supervisor/tick_statements.hpp"

namespace inferq::supervisor {

PgTickStatements::PgTickStatements(const std::string& url)
    : session_(url, "inferq tick", std::chrono::seconds(30), {"inferq_jobs"}) {}

int PgTickStatements::socket() const { return session_.socket(); }

bool PgTickStatements::take_notifications() { return !session_.take_notifications().empty(); }

int PgTickStatements::reap(std::chrono::milliseconds stale_after, const std::vector<std::int64_t>& keep) {
  return db::reap(session_, stale_after, keep);
}

db::ReapAndClaim PgTickStatements::reap_then_claim(std::chrono::milliseconds stale_after,
                                                   const std::vector<std::int64_t>& keep,
                                                   const std::string& queue, std::int64_t worker_id,
                                                   int max_jobs, int default_max_attempts) {
  return db::reap_then_claim(session_, stale_after, keep, queue, worker_id, max_jobs, default_max_attempts);
}

std::optional<db::ClaimedUnit> PgTickStatements::claim(const std::string& queue, std::int64_t worker_id,
                                                       int max_jobs, int default_max_attempts) {
  return db::claim(session_, queue, worker_id, max_jobs, default_max_attempts);
}

std::vector<db::ClaimedJob> PgTickStatements::claim_more(std::int64_t lease_id, const std::string& queue,
                                                         int max_jobs, int default_max_attempts) {
  return db::claim_more(session_, lease_id, queue, max_jobs, default_max_attempts);
}

int PgTickStatements::fail_unclaimable(const std::string& queue, int limit) {
  return db::fail_unclaimable(session_, queue, limit);
}

bool PgTickStatements::has_available_work(const std::string& queue) {
  return db::has_available_work(session_, queue);
}

std::optional<std::string> PgTickStatements::missing_sink(const config::Settings& settings) {
  return supervisor::missing_sink(session_, settings);
}

void PgTickStatements::set_worker_queues(std::int64_t worker_id, const std::vector<std::string>& queues) {
  db::set_worker_queues(session_, worker_id, queues);
}

int PgTickStatements::release(const std::vector<std::int64_t>& leases) {
  return db::release(session_, leases);
}

void PgTickStatements::deregister_worker(std::int64_t worker_id) {
  db::deregister_worker(session_, worker_id);
}

std::optional<std::string> missing_sink(db::Session& session, const config::Settings& settings) {
  for (std::size_t i = 0; i < settings.queues.size(); ++i) {
    const auto& q = settings.queues[i];
    if (q.sink.empty() || db::sink_function_exists(session, q.sink, q.binary_data_output)) continue;
    return settings.source + ": queues[" + std::to_string(i) + "] (queue \"" + q.name +
           "\"): sink: the database has no function " + q.sink + "(" +
           (q.binary_data_output ? "bigint, jsonb, jsonb, bytea" : "bigint, jsonb, jsonb") +
           ") that this role can see (create it, or schema-qualify the name)";
  }
  return std::nullopt;
}

}  // namespace inferq::supervisor
