#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

// A test-only audit of inferq.jobs: a trigger in the test database records
// job writes into public.job_audit, so tests read order, overlap and
// duplicates from what PostgreSQL saw rather than from timing in the test.
// Being in the same database, it is exactly as durable as what it records.
namespace inferq::test {

// Installs public.job_audit and its trigger on inferq.jobs in the (migrated)
// database at `url`. One row per UPDATE of a job that changes its state or
// leaves it in a final state (succeeded, dead, cancelled; a final -> final
// rewrite counts too), in the order PostgreSQL made them:
//   seq        bigserial, the order of the writes
//   at         timestamptz, clock_timestamp() of the write
//   job_id     bigint
//   key        text, the job's work_unit_key
//   old_state  text
//   new_state  text
//   lease_id   bigint, the lease the job runs under (claims) or ran under
//   worker_id  bigint, for a claim (-> running) the daemon whose lease it is
//   attempts   integer, after the write
//   result     jsonb, after the write
// State changes are the rows WHERE old_state <> new_state; every write into
// a final state is WHERE new_state IN ('succeeded', 'dead', 'cancelled').
void install_job_audit(const std::string& url);

// A fresh migrated database on the shared cluster with install_job_audit();
// returns its URL.
std::string fresh_audited_database();

// A work unit as the audit saw it: claimed by one statement, ended when its
// last job left `running`.
struct AuditUnit {
  std::int64_t lease = 0;
  std::optional<std::string> key;
  std::optional<std::int64_t> worker;  // the claiming daemon's inferq.workers id
  std::vector<std::int64_t> jobs;      // in id order
  std::int64_t claim_seq = 0;
  std::int64_t end_seq = -1;  // -1: some job is still running (or never ended)
};

// The state changes of public.job_audit, by unit and by job.
struct JobAudit {
  std::map<std::int64_t, AuditUnit> units;  // by lease
  std::map<std::int64_t, int> finals;       // job -> transitions into a final state
  std::map<std::int64_t, int> claims;       // job -> transitions into running
  std::map<std::string, std::vector<std::int64_t>>
      jobs_by_key;  // every keyed job, id order (from inferq.jobs)
};

// Reads the state changes recorded by install_job_audit() at `url`.
JobAudit read_job_audit(const std::string& url);

// What is wrong with the order of keyed units, one line per problem: per key
// the units, in claim order, must each have ended, must not overlap (each
// ends before the next is claimed) and must together take the key's jobs in
// id order, each once. When `handoffs` is given, it is set to how many
// consecutive units of a key different daemons (workers) ran.
std::vector<std::string> key_order_problems(const JobAudit& audit, int* handoffs = nullptr);

// The first `n` of `lines`, one a line, and how many more there were: for
// failure messages.
std::string first_lines(const std::vector<std::string>& lines, std::size_t n = 10);

}  // namespace inferq::test
