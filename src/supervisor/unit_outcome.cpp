#include "supervisor/unit_outcome.hpp"

#include <utility>

namespace inferq::supervisor {
db::UnitFinish unit_finish(const config::QueueSettings& queue, const db::ClaimedUnit& unit) {
  db::UnitFinish finish;
  finish.queue = queue.name;
  finish.lease_id = unit.lease_id;
  finish.keyed = unit.work_unit_key.has_value();
  finish.binary_outputs = queue.binary_data_output;
  return finish;
}

SplitUnit split_by_max_bytes(std::vector<db::ClaimedJob> jobs, std::size_t max_bytes) {
  SplitUnit split;
  split.sent.reserve(jobs.size());
  std::size_t bytes = 0;
  bool full = false;
  for (auto& job : jobs) {
    db::JobFinish f;
    f.job_id = job.id;
    const std::size_t job_bytes = job.payload.size() + job.payload_binary.size();
    if (!full && job_bytes > max_bytes) {
      f.error_class = db::ErrorClass::kPermanent;
      f.message = "payload of " + std::to_string(job_bytes) + " bytes is over batch.max_bytes (" +
                  std::to_string(max_bytes) + ")";
    } else if (full || bytes + job_bytes > max_bytes) {
      full = true;
      f.error_class = db::ErrorClass::kRequeue;
      f.message = "the unit reached batch.max_bytes";
    } else {
      bytes += job_bytes;
      split.sent.push_back(std::move(job));
      continue;
    }
    split.unsent.push_back(std::move(f));
  }
  return split;
}

db::UnitFinish failed_unit(const config::QueueSettings& queue, const db::ClaimedUnit& unit,
                           db::ErrorClass error_class, const std::string& message, const RetryDelay& retry) {
  db::UnitFinish finish = unit_finish(queue, unit);
  finish.jobs.reserve(unit.jobs.size());
  for (const auto& job : unit.jobs) {
    db::JobFinish f;
    f.job_id = job.id;
    f.error_class = error_class;
    f.message = message;
    f.retry_ms = retry(job.attempts);
    finish.jobs.push_back(std::move(f));
  }
  return finish;
}

db::UnitFinish given_back(const config::QueueSettings& queue, const db::ClaimedUnit& unit,
                          const std::string& why) {
  db::UnitFinish finish = unit_finish(queue, unit);
  finish.jobs.reserve(unit.jobs.size());
  for (const auto& job : unit.jobs) {
    db::JobFinish f;
    f.job_id = job.id;
    f.error_class = db::ErrorClass::kRequeue;
    f.message = "claimed ahead, not run: " + why;
    finish.jobs.push_back(std::move(f));
  }
  return finish;
}

std::variant<db::UnitFinish, std::string> answered_unit(const config::QueueSettings& queue,
                                                        const db::ClaimedUnit& unit,
                                                        protocol::UnitResult result,
                                                        const RetryDelay& retry) {
  if (result.jobs.size() != unit.jobs.size()) {
    return "executor returned " + std::to_string(result.jobs.size()) + " result(s) for " +
           std::to_string(unit.jobs.size()) + " job(s)";
  }
  db::UnitFinish finish = unit_finish(queue, unit);
  finish.sink = queue.sink;
  finish.jobs.reserve(unit.jobs.size());
  bool requeue_rest = false;
  for (std::size_t i = 0; i < unit.jobs.size(); ++i) {
    const auto& job = unit.jobs[i];
    auto& out = result.jobs[i];
    if (out.job_id != job.id) return std::string("executor returned results out of order");
    db::JobFinish f;
    f.job_id = job.id;
    if (requeue_rest) {
      f.error_class = db::ErrorClass::kRequeue;
      f.message = "requeued behind an earlier job of its key";
    } else if (out.outcome == protocol::Outcome::kSucceeded) {
      f.ok = true;
      f.result_json = std::move(out.body);
      f.result_binary = std::move(out.body_binary);
      f.retry_ms = retry(job.attempts);  // should its sink lose a race
    } else {
      f.error_class = out.outcome == protocol::Outcome::kPermanent ? db::ErrorClass::kPermanent
                                                                   : db::ErrorClass::kTransient;
      f.message = std::move(out.body);
      f.retry_ms = retry(job.attempts);
      if (unit.work_unit_key && out.outcome == protocol::Outcome::kTransient &&
          job.attempts < job.max_attempts)
        requeue_rest = true;
    }
    finish.jobs.push_back(std::move(f));
  }
  return finish;
}

}  // namespace inferq::supervisor
