#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "db/session.hpp"

// What a producer (the CLI's `enqueue`) does: enqueue through the SQL API,
// read a job back, cancel. Each call blocks on the database and throws DbError.
namespace inferq::db {

struct EnqueueRequest {
  std::string queue;
  std::string payload_json;
  std::optional<std::string> work_unit_key;
  // While a live job of the queue has this key, enqueue returns its id and
  // inserts nothing (migration 0013).
  std::optional<std::string> unique_key;
  int priority = 0;
  std::optional<int> max_attempts;
};

// Calls inferq.enqueue(); returns the new job id (or, with a unique_key that
// a live job holds, that job's). A rejected job throws
// DbError carrying the function's message.
std::int64_t enqueue(Session& s, const EnqueueRequest& request);

struct JobView {
  std::int64_t id = 0;
  std::string queue;
  std::string state;  // available, running, succeeded, dead, cancelled
  int attempts = 0;
  std::optional<int> max_attempts;
  std::optional<std::string> result_json;
  std::optional<std::string> last_error;
};

// The job's current row, through inferq.my_jobs (so a producer role may read
// it: the jobs this login role enqueued); nullopt if there is none, or it was
// enqueued by another role.
std::optional<JobView> get_job(Session& s, std::int64_t id);

// inferq.cancel(): true when the job was available or running.
bool cancel(Session& s, std::int64_t id);

// True for succeeded, dead and cancelled.
bool is_final_state(const std::string& state);

}  // namespace inferq::db
