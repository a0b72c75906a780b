#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db/outcome.hpp"
#include "db/session.hpp"

// The daemon's statements: register, reap, claim, heartbeat, complete,
// release. Each is one round trip; each blocks on the database and throws
// DbError on failure.
namespace inferq::db {

struct ClaimedJob {
  std::int64_t id = 0;
  std::string payload;         // JSON text
  std::string payload_binary;  // inferq.jobs.payload_binary; empty when NULL
  int attempts = 0;            // including this one
  int max_attempts = 0;
  double wait_seconds = 0;  // from ready (max(created_at, run_at)) to this claim
};

// One work unit: the jobs one lease holds. Keyed units are in id order.
struct ClaimedUnit {
  std::int64_t lease_id = 0;
  std::optional<std::string> work_unit_key;
  std::vector<ClaimedJob> jobs;
  // When the caller took the unit (its clock), for the unit's dispatch stage.
  std::chrono::steady_clock::time_point claimed_at{};
};

// How one job of a unit ended; `retry_ms` is the backoff before a retry.
struct JobFinish {
  std::int64_t job_id = 0;
  bool ok = false;
  std::string result_json;                          // when ok: a JSON value
  ErrorClass error_class = ErrorClass::kTransient;  // when not ok
  std::string message;                              // when not ok
  std::int64_t retry_ms = 0;
  // When ok, for a queue with binary outputs: inferq.jobs.result_binary.
  std::string result_binary;
};

struct UnitFinish {
  std::int64_t lease_id = 0;
  std::vector<JobFinish> jobs;
  // The queue's sink function (config sink), called for each succeeded job
  // in the completion's transaction; a sink that fails fails that job, with
  // retry_ms used when its error is a race. Empty: none.
  std::string sink;
  // The lease is a work-unit key's: writing it lets that key's next jobs be
  // claimed, which no notification announces.
  bool keyed = false;
  // The queue asks for binary outputs: each success writes result_binary
  // (JobFinish::result_binary, empty bytes too) and its sink takes the bytes
  // as a fourth argument.
  bool binary_outputs = false;
  // For metrics: the unit's queue, and when it was handed to the writer.
  std::string queue;
  std::chrono::steady_clock::time_point submitted_at{};
};

struct WorkerIdentity {
  std::string name;  // host:pid, shown in errors and status
  std::string host;
  int pid = 0;
  std::string version;
  std::vector<std::string> queues;
};

// Inserts this daemon's row in inferq.workers; returns its id.
std::int64_t register_worker(Session& s, const WorkerIdentity& who);

// Sets the queues the daemon's row says it serves (a reload), so other
// daemons' unserved-queue checks see what it serves now.
void set_worker_queues(Session& s, std::int64_t worker_id, const std::vector<std::string>& queues);

// Deletes the daemon's row (clean shutdown).
void deregister_worker(Session& s, std::int64_t worker_id);

// Reaps every lease whose heartbeat is older than `stale_after`, except
// `keep` (the caller's own live leases). Returns how many were reaped.
int reap(Session& s, std::chrono::milliseconds stale_after, const std::vector<std::int64_t>& keep);

// Claims one unit of `queue` (see inferq.claim); nullopt when none is due.
std::optional<ClaimedUnit> claim(Session& s, const std::string& queue, std::int64_t worker_id, int max_jobs,
                                 int default_max_attempts);

struct ReapAndClaim {
  int reaped = 0;
  std::optional<ClaimedUnit> unit;
};

// reap() and then claim(), in one statement: one round trip and one commit
// instead of two, for the tick that has a slot free (a woken idle daemon
// starts its job sooner). The claim runs after the reap and sees what it made
// available. An error in either fails both.
ReapAndClaim reap_then_claim(Session& s, std::chrono::milliseconds stale_after,
                             const std::vector<std::int64_t>& keep, const std::string& queue,
                             std::int64_t worker_id, int max_jobs, int default_max_attempts);

// Adds up to `max_jobs` more unkeyed jobs of `queue` to the live unkeyed
// lease `lease_id` (see inferq.claim_more); returns the jobs added, none when
// nothing is claimable or the lease is gone. For units that wait to fill up.
std::vector<ClaimedJob> claim_more(Session& s, std::int64_t lease_id, const std::string& queue, int max_jobs,
                                   int default_max_attempts);

// Makes dead the jobs that the next claims of `queue` would take (up to
// `limit` unkeyed and `limit` keyed) whose payload's JSON text cannot be made
// or is over 16 MiB (see inferq.fail_unclaimable); returns how many. For a
// claim that failed with DbError::resource_limit(): such a job fails every
// claim of its queue until it is gone.
int fail_unclaimable(Session& s, const std::string& queue, int limit);

// Whether `queue` has a job a claim could take now: an unkeyed job that is
// available and due, or a claimable key (inferq.key_heads). Cheap: two index
// probes.
// Used to restart a queue whose executors all exited idle.
bool has_available_work(Session& s, const std::string& queue);

// Renews `leases` and marks the worker seen, in one statement. Returns the
// leases that still exist.
std::vector<std::int64_t> heartbeat(Session& s, std::int64_t worker_id,
                                    const std::vector<std::int64_t>& leases);

// How many jobs of `queue` a completion left in `outcome`: succeeded,
// retried, dead, cancelled, or requeued (a keyed job put back unrun).
struct OutcomeCount {
  std::string queue;
  JobOutcome outcome = JobOutcome::kSucceeded;
  int jobs = 0;
};

// Writes the outcome of whole units, fenced by lease, in one transaction;
// releases their leases. Returns how many jobs were written (fewer than given
// when a lease had been reaped), and, when `outcomes` is given, appends how
// they ended per queue. Idempotent: repeating it writes nothing.
int complete(Session& s, const std::vector<UnitFinish>& units, const std::string& worker_name,
             std::vector<OutcomeCount>* outcomes = nullptr);

// One queue's backlog for inferq_queue_jobs and
// inferq_queue_oldest_available_age_seconds.
struct QueueBacklog {
  std::string queue;
  std::int64_t available = 0;  // including those whose run_at is still ahead
  std::int64_t running = 0;
  double oldest_available_age_seconds = 0;  // of due jobs, from max(created_at, run_at); 0 when none
};

// The queues that have available jobs and that no worker seen within
// `live_within` lists among its queues: jobs nobody will run (a producer's
// typo, a queue whose daemons are all gone), for
// inferq_unserved_queue_jobs. `running` stays 0. Finds the queues by skipping
// through the partial indexes of available jobs (one probe per queue), then
// counts only the unserved ones' jobs.
std::vector<QueueBacklog> sample_unserved(Session& s, std::chrono::milliseconds live_within);

// Counts the available and running jobs of `queues` (one statement over the
// partial indexes of those states, never the finished history).
std::vector<QueueBacklog> sample_backlog(Session& s, const std::vector<std::string>& queues);

// Returns the leases' running jobs to `available` without charging the
// attempt (clean shutdown). Returns how many jobs went back.
int release(Session& s, const std::vector<std::int64_t>& leases);

// Whether `function` exists as fn(bigint, jsonb, jsonb), as a sink must, or
// as fn(bigint, jsonb, jsonb, bytea) for a queue with binary outputs.
bool sink_function_exists(Session& s, const std::string& function, bool binary_outputs = false);

// The JSON document inferq.complete() takes; exposed for tests. A success
// whose result_json is not one JSON value is written as a permanent failure
// saying so, since its text would otherwise become part of the document.
std::string completion_document(const std::vector<UnitFinish>& units);

// About how many bytes `job` takes in completion_document: its ids and keys
// (about 64), its result, its binary result as hex and its message. Callers
// bound a write by it.
std::size_t completion_bytes(const JobFinish& job);

}  // namespace inferq::db
