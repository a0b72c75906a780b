#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "config/settings.hpp"
#include "db/queue_ops.hpp"
#include "protocol/messages.hpp"

// How a unit's outcome is built, as pure functions of what the supervisor
// holds: the queue, the claimed unit, the executor's answer. Nothing here
// touches a clock, the database or a process, so unit tests cover every
// outcome (test_supervisor_unit_outcome); the supervisor only submits what
// they return to the completion writer.
namespace inferq::supervisor {

// The backoff, in ms, before a job's retry, given its attempts so far.
using RetryDelay = std::function<std::int64_t(int attempts)>;

// The finish of `unit`'s lease (of `queue`), with no job outcomes yet.
db::UnitFinish unit_finish(const config::QueueSettings& queue, const db::ClaimedUnit& unit);

// A unit's jobs split by batch.max_bytes (one frame carries the unit, and the
// protocol refuses a frame over 1 GiB): the jobs to send, and the outcomes of
// the others. A job bigger than the bound fails alone (permanent); once the
// bound is reached the rest go back unrun (requeue, attempt refunded) in id
// order, so a key's order holds.
struct SplitUnit {
  std::vector<db::ClaimedJob> sent;
  std::vector<db::JobFinish> unsent;
};
SplitUnit split_by_max_bytes(std::vector<db::ClaimedJob> jobs, std::size_t max_bytes);

// Every job of `unit` ended as `error_class` with `message` (a deadline, a
// crash, a requeue).
db::UnitFinish failed_unit(const config::QueueSettings& queue, const db::ClaimedUnit& unit,
                           db::ErrorClass error_class, const std::string& message, const RetryDelay& retry);

// `unit` (claimed ahead, never sent) given back: every job requeued.
db::UnitFinish given_back(const config::QueueSettings& queue, const db::ClaimedUnit& unit,
                          const std::string& why);

// The executor's answer for `unit` as its finish (the answer's bodies moved
// into it, not copied: a result may be hundreds of MiB), or, when the answer breaks
// the protocol (another job count, jobs out of order), what was wrong. Once a
// job of a key will be retried, the jobs after it go back unfinished
// (requeue) to run after it.
std::variant<db::UnitFinish, std::string> answered_unit(const config::QueueSettings& queue,
                                                        const db::ClaimedUnit& unit,
                                                        protocol::UnitResult result, const RetryDelay& retry);

}  // namespace inferq::supervisor
