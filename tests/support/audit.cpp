#include "support/audit.hpp"

#include <pqxx/pqxx>

#include <algorithm>

#include "support/daemon.hpp"

namespace inferq::test {
namespace {

constexpr const char* kAuditSql = R"sql(
CREATE TABLE public.job_audit (
  seq       bigserial   PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  job_id    bigint      NOT NULL,
  key       text,
  old_state text        NOT NULL,
  new_state text        NOT NULL,
  lease_id  bigint,
  worker_id bigint,
  attempts  integer     NOT NULL,
  result    jsonb
);
CREATE FUNCTION public.audit_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.job_audit (job_id, key, old_state, new_state, lease_id, worker_id, attempts, result)
  VALUES (NEW.id, NEW.work_unit_key, OLD.state::text, NEW.state::text, coalesce(NEW.lease_id, OLD.lease_id),
          (SELECT s.worker_id FROM inferq.active_sessions s WHERE s.id = NEW.lease_id), NEW.attempts, NEW.result);
  RETURN NULL;
END
$$;
CREATE TRIGGER jobs_audit AFTER UPDATE ON inferq.jobs FOR EACH ROW
  WHEN (OLD.state IS DISTINCT FROM NEW.state OR NEW.state::text IN ('succeeded', 'dead', 'cancelled'))
  EXECUTE FUNCTION public.audit_job();
)sql";

bool is_final(const std::string& state) {
  return state == "succeeded" || state == "dead" || state == "cancelled";
}

}  // namespace

void install_job_audit(const std::string& url) { exec_sql(url, kAuditSql); }

std::string fresh_audited_database() {
  const std::string url = fresh_inferq_database();
  install_job_audit(url);
  return url;
}

JobAudit read_job_audit(const std::string& url) {
  JobAudit a;
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  for (const auto& r : tx.exec("SELECT seq, job_id, key, old_state, new_state, lease_id, worker_id"
                               " FROM public.job_audit WHERE old_state <> new_state ORDER BY seq")) {
    const auto seq = r[0].as<std::int64_t>();
    const auto job = r[1].as<std::int64_t>();
    const std::string from = r[3].c_str();
    const std::string to = r[4].c_str();
    const auto lease = r[5].is_null() ? std::int64_t{-1} : r[5].as<std::int64_t>();
    if (to == "running") {
      AuditUnit& u = a.units[lease];
      if (u.jobs.empty()) {
        u.lease = lease;
        u.claim_seq = seq;
        if (!r[2].is_null()) u.key = r[2].c_str();
        if (!r[6].is_null()) u.worker = r[6].as<std::int64_t>();
      }
      u.jobs.push_back(job);
      ++a.claims[job];
    }
    if (from == "running") a.units[lease].end_seq = std::max(a.units[lease].end_seq, seq);
    if (is_final(to)) ++a.finals[job];
  }
  for (auto& [lease, u] : a.units) std::sort(u.jobs.begin(), u.jobs.end());
  for (const auto& r : tx.exec("SELECT work_unit_key, id FROM inferq.jobs WHERE work_unit_key IS NOT NULL"
                               " ORDER BY id")) {
    a.jobs_by_key[r[0].c_str()].push_back(r[1].as<std::int64_t>());
  }
  return a;
}

std::vector<std::string> key_order_problems(const JobAudit& audit, int* handoffs) {
  std::vector<std::string> problems;
  std::map<std::string, std::vector<const AuditUnit*>> by_key;
  for (const auto& [lease, u] : audit.units) {
    if (u.key) by_key[*u.key].push_back(&u);
  }
  int changes = 0;
  for (const auto& [key, ids] : audit.jobs_by_key) {
    auto& units = by_key[key];
    std::sort(units.begin(), units.end(),
              [](const AuditUnit* x, const AuditUnit* y) { return x->claim_seq < y->claim_seq; });
    std::vector<std::int64_t> taken;
    for (std::size_t i = 0; i < units.size(); ++i) {
      const AuditUnit& u = *units[i];
      if (u.end_seq < 0)
        problems.push_back("key " + key + ": unit " + std::to_string(u.lease) + " never ended");
      if (i > 0) {
        const AuditUnit& prev = *units[i - 1];
        if (prev.end_seq > u.claim_seq) {
          problems.push_back("key " + key + ": unit " + std::to_string(u.lease) + " was claimed (seq " +
                             std::to_string(u.claim_seq) + ") while unit " + std::to_string(prev.lease) +
                             " was live (ended at seq " + std::to_string(prev.end_seq) + ")");
        }
        changes += prev.worker != u.worker;
      }
      taken.insert(taken.end(), u.jobs.begin(), u.jobs.end());
    }
    if (taken != ids) {
      std::string got;
      for (const auto id : taken) got += " " + std::to_string(id);
      problems.push_back("key " + key + ": units took the jobs in this order:" + got);
    }
  }
  if (handoffs) *handoffs = changes;
  return problems;
}

std::string first_lines(const std::vector<std::string>& lines, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < lines.size() && i < n; ++i) out += lines[i] + "\n";
  if (lines.size() > n) out += "... and " + std::to_string(lines.size() - n) + " more\n";
  return out;
}

}  // namespace inferq::test
