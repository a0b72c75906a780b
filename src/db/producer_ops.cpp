#include "db/producer_ops.hpp"

#include "db/raw.hpp"

namespace inferq::db {

std::int64_t enqueue(Session& s, const EnqueueRequest& request) {
  std::int64_t id = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const char* key = request.work_unit_key ? request.work_unit_key->c_str() : nullptr;
    const char* unique_key = request.unique_key ? request.unique_key->c_str() : nullptr;
    const auto r = tx.exec_params(
        "SELECT inferq.enqueue($1, $2::jsonb, $3, $4, now(), $5::integer, NULL, $6)", request.queue,
        request.payload_json, key, request.priority,
        request.max_attempts ? std::to_string(*request.max_attempts).c_str() : nullptr, unique_key);
    id = r[0][0].as<std::int64_t>();
  });
  return id;
}

std::optional<JobView> get_job(Session& s, std::int64_t id) {
  std::optional<JobView> job;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = tx.exec_params(
        "SELECT id, queue, state::text, attempts, max_attempts, result::text, last_error"
        " FROM inferq.my_jobs WHERE id = $1",
        id);
    if (r.empty()) return;
    const auto& row = r[0];
    JobView v;
    v.id = row[0].as<std::int64_t>();
    v.queue = row[1].c_str();
    v.state = row[2].c_str();
    v.attempts = row[3].as<int>();
    if (!row[4].is_null()) v.max_attempts = row[4].as<int>();
    if (!row[5].is_null()) v.result_json = row[5].c_str();
    if (!row[6].is_null()) v.last_error = row[6].c_str();
    job = std::move(v);
  });
  return job;
}

bool cancel(Session& s, std::int64_t id) {
  bool ok = false;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    ok = tx.exec_params("SELECT inferq.cancel($1)", id)[0][0].as<bool>();
  });
  return ok;
}

bool is_final_state(const std::string& state) {
  return state == "succeeded" || state == "dead" || state == "cancelled";
}

}  // namespace inferq::db
