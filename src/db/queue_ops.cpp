#include "db/queue_ops.hpp"

#include <algorithm>

#include "db/error.hpp"
#include "db/raw.hpp"
#include "util/json_check.hpp"
#include "util/json_text.hpp"

namespace inferq::db {

std::int64_t register_worker(Session& s, const WorkerIdentity& who) {
  std::int64_t id = 0;
  s.run([&](Raw& raw) {
    const std::string queues = queue_array_literal(who.queues);
    pqxx::nontransaction tx(raw.conn);
    const auto r = tx.exec_params(
        "INSERT INTO inferq.workers (name, host, pid, version, queues)"
        " VALUES ($1, $2, $3, $4, $5::text[]) RETURNING id",
        who.name, who.host, who.pid, who.version, queues);
    id = r[0][0].as<std::int64_t>();
  });
  return id;
}

void set_worker_queues(Session& s, std::int64_t worker_id, const std::vector<std::string>& queues) {
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    tx.exec_params("UPDATE inferq.workers SET queues = $2::text[] WHERE id = $1", worker_id,
                   queue_array_literal(queues));
  });
}

void deregister_worker(Session& s, std::int64_t worker_id) {
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    tx.exec_params("DELETE FROM inferq.workers WHERE id = $1", worker_id);
  });
}

namespace {

// Shared by reap/claim and reap_then_claim: stale_after in ms as $1, keep as $2.
constexpr const char* kReapCall = "inferq.reap(make_interval(secs => $1::float8 / 1000), $2::bigint[])";
// inferq.claim's columns, in the order unit_from_rows reads them.
constexpr const char* kClaimColumns =
    "lease_id, job_id, payload, attempts, max_attempts, work_unit_key, wait_seconds, payload_binary";

// A bytea column's bytes; empty for NULL.
void assign_bytes(std::string& out, const pqxx::field& f) {
  if (f.is_null()) return;
  const pqxx::binarystring bytes(f);
  out.assign(bytes.get(), bytes.size());
}

}  // namespace

int reap(Session& s, std::chrono::milliseconds stale_after, const std::vector<std::int64_t>& keep) {
  int n = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = raw.exec_statement(tx, "inferq_reap", std::string("SELECT ") + kReapCall,
                                      static_cast<long long>(stale_after.count()), int_array_literal(keep));
    n = r[0][0].as<int>();
  });
  return n;
}

namespace {

// The unit in rows of inferq.claim's columns (lease_id, job_id, payload,
// attempts, max_attempts, work_unit_key, wait_seconds, payload_binary) from column `first`
// on; nullopt when there are none (a LEFT JOIN's row of NULLs included).
std::optional<ClaimedUnit> unit_from_rows(const pqxx::result& r, int first) {
  if (r.empty() || r[0][first].is_null()) return std::nullopt;
  ClaimedUnit unit;
  unit.lease_id = r[0][first].as<std::int64_t>();
  if (!r[0][first + 5].is_null()) unit.work_unit_key = r[0][first + 5].c_str();
  unit.jobs.reserve(r.size());
  for (const auto& row : r) {
    ClaimedJob job;
    job.id = row[first + 1].as<std::int64_t>();
    job.payload.assign(row[first + 2].c_str(), row[first + 2].size());
    job.attempts = row[first + 3].as<int>();
    job.max_attempts = row[first + 4].as<int>();
    job.wait_seconds = row[first + 6].is_null() ? 0.0 : row[first + 6].as<double>();
    assign_bytes(job.payload_binary, row[first + 7]);
    unit.jobs.push_back(std::move(job));
  }
  if (unit.work_unit_key) {
    // A key's jobs must run in id order; UPDATE ... RETURNING does not sort.
    std::sort(unit.jobs.begin(), unit.jobs.end(),
              [](const ClaimedJob& a, const ClaimedJob& b) { return a.id < b.id; });
  }
  return unit;
}

}  // namespace

std::optional<ClaimedUnit> claim(Session& s, const std::string& queue, std::int64_t worker_id, int max_jobs,
                                 int default_max_attempts) {
  std::optional<ClaimedUnit> unit;
  s.run([&](Raw& raw) {
    // Every column from the function itself: a join to inferq.jobs here would
    // read this statement's older snapshot and miss jobs committed while the
    // function ran, which it claimed all the same (migration 0005).
    pqxx::nontransaction tx(raw.conn);
    unit = unit_from_rows(
        raw.exec_statement(tx, "inferq_claim",
                           std::string("SELECT ") + kClaimColumns + " FROM inferq.claim($1, $2, $3, $4)",
                           queue, worker_id, max_jobs, default_max_attempts),
        0);
  });
  return unit;
}

ReapAndClaim reap_then_claim(Session& s, std::chrono::milliseconds stale_after,
                             const std::vector<std::int64_t>& keep, const std::string& queue,
                             std::int64_t worker_id, int max_jobs, int default_max_attempts) {
  ReapAndClaim out;
  s.run([&](Raw& raw) {
    // The claim refers to r, so it is called per row of r (a nested loop),
    // after the reap; a plain join could run the function scan first.
    pqxx::nontransaction tx(raw.conn);
    const auto r = raw.exec_statement(
        tx, "inferq_reap_then_claim",
        std::string("WITH r AS MATERIALIZED (SELECT ") + kReapCall + " AS reaped) SELECT r.reaped, " +
            kClaimColumns + " FROM r LEFT JOIN LATERAL inferq.claim($3, $4, $5, $6 + 0 * r.reaped) c ON true",
        static_cast<long long>(stale_after.count()), int_array_literal(keep), queue, worker_id, max_jobs,
        default_max_attempts);
    out.reaped = r[0][0].as<int>();
    out.unit = unit_from_rows(r, 1);
  });
  return out;
}

std::vector<ClaimedJob> claim_more(Session& s, std::int64_t lease_id, const std::string& queue, int max_jobs,
                                   int default_max_attempts) {
  std::vector<ClaimedJob> jobs;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r =
        raw.exec_statement(tx, "inferq_claim_more",
                           "SELECT job_id, payload, attempts, max_attempts, wait_seconds, payload_binary"
                           " FROM inferq.claim_more($1, $2, $3, $4)",
                           lease_id, queue, max_jobs, default_max_attempts);
    jobs.reserve(r.size());
    for (const auto& row : r) {
      ClaimedJob job;
      job.id = row[0].as<std::int64_t>();
      job.payload.assign(row[1].c_str(), row[1].size());
      job.attempts = row[2].as<int>();
      job.max_attempts = row[3].as<int>();
      job.wait_seconds = row[4].is_null() ? 0.0 : row[4].as<double>();
      assign_bytes(job.payload_binary, row[5]);
      jobs.push_back(std::move(job));
    }
  });
  return jobs;
}

int fail_unclaimable(Session& s, const std::string& queue, int limit) {
  int n = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    n = raw.exec_statement(tx, "inferq_fail_unclaimable", "SELECT inferq.fail_unclaimable($1, $2)", queue,
                           limit)[0][0]
            .as<int>();
  });
  return n;
}

bool has_available_work(Session& s, const std::string& queue) {
  bool found = false;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    found = raw.exec_statement(
                   tx, "inferq_has_available_work",
                   "SELECT EXISTS (SELECT 1 FROM inferq.jobs WHERE queue = $1 AND state = 'available'"
                   "               AND work_unit_key IS NULL AND run_at <= now())"
                   "    OR EXISTS (SELECT 1 FROM inferq.key_heads WHERE queue = $1 AND run_at <= now())",
                   queue)[0][0]
                .as<bool>();
  });
  return found;
}

std::vector<std::int64_t> heartbeat(Session& s, std::int64_t worker_id,
                                    const std::vector<std::int64_t>& leases) {
  std::vector<std::int64_t> alive;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r =
        raw.exec_statement(tx, "inferq_heartbeat", "SELECT * FROM inferq.heartbeat($1, $2::bigint[])",
                           worker_id, int_array_literal(leases));
    alive.reserve(r.size());
    for (const auto& row : r) alive.push_back(row[0].as<std::int64_t>());
  });
  return alive;
}

namespace {

// Lowercase hex, as decode(..., 'hex') reads it.
void append_hex(std::string& out, const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const std::size_t at = out.size();
  out.resize(at + 2 * bytes.size());
  char* p = out.data() + at;
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    *p++ = kDigits[b >> 4];
    *p++ = kDigits[b & 15];
  }
}

}  // namespace

std::size_t completion_bytes(const JobFinish& job) {
  return 64 + job.result_json.size() + 2 * job.result_binary.size() + job.message.size();
}

std::string completion_document(const std::vector<UnitFinish>& units) {
  std::string doc;
  std::size_t estimate = 2;
  for (const auto& u : units)
    for (const auto& j : u.jobs) estimate += completion_bytes(j);
  doc.reserve(estimate);
  doc += '[';
  bool first = true;
  for (const auto& u : units) {
    for (const auto& j : u.jobs) {
      if (!first) doc += ',';
      first = false;
      doc += "{\"lease\":";
      doc += std::to_string(u.lease_id);
      doc += ",\"id\":";
      doc += std::to_string(j.job_id);
      // Pasted as is below: anything but one JSON value could add keys to
      // this element (another "id", a fake failure), so it fails the job.
      const bool injects = j.ok && !j.result_json.empty() && !util::is_one_json_value(j.result_json);
      if (j.ok && !injects) {
        doc += ",\"ok\":true,\"result\":";
        doc += j.result_json.empty() ? "null" : j.result_json;
        if (u.binary_outputs) {
          // inferq.complete_outcomes decodes it into result_binary.
          doc += ",\"rb\":\"";
          append_hex(doc, j.result_binary);
          doc += '"';
        }
        if (!u.sink.empty()) {
          doc += ",\"sink\":";
          util::append_json_string(doc, u.sink);
          doc += ",\"retry_ms\":";
          doc += std::to_string(j.retry_ms);
        }
      } else {
        doc += ",\"ok\":false,\"class\":";
        util::append_json_string(doc, to_string(injects ? ErrorClass::kPermanent : j.error_class));
        doc += ",\"message\":";
        util::append_json_string(doc, injects ? "the executor's result is not one JSON value (" +
                                                    std::to_string(j.result_json.size()) + " bytes)"
                                              : j.message);
        doc += ",\"retry_ms\":";
        doc += std::to_string(j.retry_ms);
      }
      doc += '}';
    }
  }
  doc += ']';
  return doc;
}

bool sink_function_exists(Session& s, const std::string& function, bool binary_outputs) {
  bool found = false;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    found = tx.exec_params("SELECT to_regprocedure($1 || $2) IS NOT NULL", function,
                           binary_outputs ? "(bigint, jsonb, jsonb, bytea)" : "(bigint, jsonb, jsonb)")[0][0]
                .as<bool>();
  });
  return found;
}

int complete(Session& s, const std::vector<UnitFinish>& units, const std::string& worker_name,
             std::vector<OutcomeCount>* outcomes) {
  if (units.empty()) return 0;
  int n = 0;
  const std::string doc = completion_document(units);
  std::vector<OutcomeCount> counts;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    const auto r = raw.exec_statement(
        tx, "inferq_complete", "SELECT queue, outcome, jobs FROM inferq.complete_outcomes($1::jsonb, $2)",
        doc, worker_name);
    n = 0;
    counts.clear();
    for (const auto& row : r) {
      const int jobs = row[2].as<int>();
      n += jobs;
      // The schema check keeps the SQL's spellings ones this build knows.
      if (const auto outcome = job_outcome_from(row[1].c_str()))
        counts.push_back({row[0].c_str(), *outcome, jobs});
    }
  });
  if (outcomes) outcomes->insert(outcomes->end(), counts.begin(), counts.end());
  return n;
}

std::vector<QueueBacklog> sample_backlog(Session& s, const std::vector<std::string>& queues) {
  std::vector<QueueBacklog> out;
  out.reserve(queues.size());
  for (const auto& q : queues) out.push_back({q, 0, 0, 0});
  if (queues.empty()) return out;
  const std::string list = queue_array_literal(queues);
  s.run([&](Raw& raw) {
    // The planner would read most of those rows with a parallel sequential
    // scan (most rows are available, it reckons from a fresh backlog): that
    // reads the whole history too. The partial indexes read only the
    // backlog, in this backend alone, as kSampleDutyFactor assumes.
    pqxx::work tx(raw.conn);
    tx.exec(kCountingSettings);
    // Three branches, one per partial index (available unkeyed, available
    // keyed, running), so the history of finished jobs is never read.
    const auto r = raw.exec_statement(
        tx, "inferq_sample_backlog",
        "SELECT x.queue, sum(x.available)::bigint, sum(x.running)::bigint,"
        " coalesce(extract(epoch FROM clock_timestamp() - min(x.ready)), 0)::float8"
        " FROM (SELECT j.queue, 1 AS available, 0 AS running,"
        "         CASE WHEN j.run_at <= now() THEN greatest(j.created_at, j.run_at) END AS ready"
        "         FROM inferq.jobs j"
        "        WHERE j.queue = ANY ($1::text[]) AND j.state = 'available' AND j.work_unit_key IS NULL"
        "       UNION ALL"
        "       SELECT j.queue, 1, 0, CASE WHEN j.run_at <= now() THEN greatest(j.created_at, j.run_at) END"
        "         FROM inferq.jobs j"
        "        WHERE j.queue = ANY ($1::text[]) AND j.state = 'available' AND j.work_unit_key IS NOT NULL"
        "       UNION ALL"
        "       SELECT j.queue, 0, 1, NULL FROM inferq.jobs j"
        "        WHERE j.queue = ANY ($1::text[]) AND j.state = 'running') x"
        " GROUP BY x.queue",
        list);
    tx.commit();
    for (const auto& row : r) {
      for (auto& b : out) {
        if (b.queue != row[0].c_str()) continue;
        b.available = row[1].as<std::int64_t>();
        b.running = row[2].as<std::int64_t>();
        b.oldest_available_age_seconds = std::max(0.0, row[3].as<double>());
      }
    }
  });
  return out;
}

std::vector<QueueBacklog> sample_unserved(Session& s, std::chrono::milliseconds live_within) {
  std::vector<QueueBacklog> out;
  s.run([&](Raw& raw) {
    pqxx::work tx(raw.conn);
    tx.exec(kCountingSettings);  // its estimate passed jit_above_cost: 344 ms of JIT a call
    // Two loose index scans (the next queue name after the last one found):
    // one probe per queue with available jobs, whatever their number.
    const auto r = raw.exec_statement(
        tx, "inferq_sample_unserved",
        "WITH RECURSIVE unkeyed(queue) AS ("
        "   (SELECT queue FROM inferq.jobs WHERE state = 'available' AND work_unit_key IS NULL"
        "     ORDER BY queue LIMIT 1)"
        "   UNION ALL"
        "   SELECT (SELECT j.queue FROM inferq.jobs j"
        "            WHERE j.state = 'available' AND j.work_unit_key IS NULL AND j.queue > u.queue"
        "            ORDER BY j.queue LIMIT 1)"
        "     FROM unkeyed u WHERE u.queue IS NOT NULL),"
        " keyed(queue) AS ("
        "   (SELECT queue FROM inferq.jobs WHERE state = 'available' AND work_unit_key IS NOT NULL"
        "     ORDER BY queue LIMIT 1)"
        "   UNION ALL"
        "   SELECT (SELECT j.queue FROM inferq.jobs j"
        "            WHERE j.state = 'available' AND j.work_unit_key IS NOT NULL AND j.queue > k.queue"
        "            ORDER BY j.queue LIMIT 1)"
        "     FROM keyed k WHERE k.queue IS NOT NULL),"
        " served AS (SELECT DISTINCT unnest(w.queues) AS queue FROM inferq.workers w"
        "             WHERE w.last_seen_at > clock_timestamp() - make_interval(secs => $1::float8 / 1000)),"
        " unserved AS (SELECT queue FROM unkeyed WHERE queue IS NOT NULL"
        "              UNION SELECT queue FROM keyed WHERE queue IS NOT NULL"
        "              EXCEPT SELECT queue FROM served)"
        " SELECT u.queue, a.n,"
        "        coalesce(extract(epoch FROM clock_timestamp() - a.ready), 0)::float8"
        "   FROM unserved u,"
        "        LATERAL (SELECT count(*) AS n,"
        "                        min(greatest(j.created_at, j.run_at)) FILTER (WHERE j.run_at <= now()) AS "
        "ready"
        "                   FROM inferq.jobs j WHERE j.queue = u.queue AND j.state = 'available') a"
        "  ORDER BY 1",
        static_cast<long long>(live_within.count()));
    tx.commit();
    out.clear();
    for (const auto& row : r)
      out.push_back({row[0].c_str(), row[1].as<std::int64_t>(), 0, std::max(0.0, row[2].as<double>())});
  });
  return out;
}

int release(Session& s, const std::vector<std::int64_t>& leases) {
  if (leases.empty()) return 0;
  int n = 0;
  s.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    n = tx.exec_params("SELECT inferq.release($1::bigint[])", int_array_literal(leases))[0][0].as<int>();
  });
  return n;
}

}  // namespace inferq::db
