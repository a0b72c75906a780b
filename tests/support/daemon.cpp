#include "support/daemon.hpp"

#include <signal.h>

#include <pqxx/pqxx>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "support/pg_cluster.hpp"
#include "support/spawn.hpp"

namespace inferq::test {
namespace {

// A YAML double-quoted scalar: safe for URLs and paths with any character.
std::string yaml_quoted(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::size_t count_occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size()))
    ++n;
  return n;
}

// The `M` of "worker NAME running N queue(s) with M executor slot(s)", or
// nullopt while the line is not in the log.
std::optional<int> announced_slots(const std::string& log) {
  const auto running = log.find(" queue(s) with ");
  if (running == std::string::npos) return std::nullopt;
  const auto start = running + std::string(" queue(s) with ").size();
  const auto end = log.find(" executor slot(s)", start);
  if (end == std::string::npos) return std::nullopt;
  try {
    return std::stoi(log.substr(start, end - start));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

JobRow read_job_row(const pqxx::row& row) {
  JobRow j;
  j.id = row[0].as<std::int64_t>();
  j.queue = row[1].c_str();
  if (!row[2].is_null()) j.key = row[2].c_str();
  j.state = row[3].c_str();
  j.attempts = row[4].as<int>();
  if (!row[5].is_null()) j.max_attempts = row[5].as<int>();
  if (!row[6].is_null()) j.result = row[6].c_str();
  if (!row[7].is_null()) j.last_error = row[7].c_str();
  j.errors = row[8].c_str();
  if (!row[9].is_null()) j.started_epoch = row[9].as<double>();
  if (!row[10].is_null()) j.finished_epoch = row[10].as<double>();
  return j;
}

constexpr const char* kJobColumns =
    "SELECT id, queue, work_unit_key, state::text, attempts, max_attempts, result::text, last_error,"
    " errors::text, extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8"
    " FROM inferq.jobs";

}  // namespace

std::string DaemonConfig::yaml() const {
  std::ostringstream o;
  o << "database:\n"
    << "  url: " << yaml_quoted(database_url) << "\n"
    << "  transaction_pooling: " << (transaction_pooling ? "true" : "false") << "\n"
    << "worker:\n"
    << "  poll_interval: " << poll_interval << "\n"
    << "  heartbeat_interval: " << heartbeat_interval << "\n"
    << "  stale_after: " << stale_after << "\n"
    << "  shutdown_grace: " << shutdown_grace << "\n"
    << "  executor_path: " << yaml_quoted(executor_path.empty() ? bin_path("inferq-executor") : executor_path)
    << "\n"
    << "metrics:\n"
    << "  listen: " << yaml_quoted(metrics_listen) << "\n"
    << "logging:\n"
    << "  level: " << log_level << "\n"
    << "  format: " << log_format << "\n";
  if (queues.empty()) {
    o << "queues: []\n";
    return o.str();
  }
  o << "queues:\n";
  for (const auto& q : queues) {
    o << "  - name: " << yaml_quoted(q.name) << "\n";
    if (q.model.empty()) {
      o << "    handler: " << yaml_quoted(q.handler) << "\n";
    } else {
      o << "    model: " << yaml_quoted(q.model) << "\n";
    }
    o << "    instances: " << q.instances << "\n"
      << "    batch:\n"
      << "      max_jobs: " << q.max_jobs << "\n";
    if (!q.max_wait.empty()) o << "      max_wait: " << q.max_wait << "\n";
    if (q.max_bytes > 0) o << "      max_bytes: " << q.max_bytes << "\n";
    std::istringstream extra(q.extra_yaml);
    for (std::string line; std::getline(extra, line);) o << "    " << line << "\n";
    o << "    deadline: " << q.deadline << "\n"
      << "    retry:\n"
      << "      max_attempts: " << q.max_attempts << "\n"
      << "      backoff: " << q.backoff << "\n"
      << "      max_backoff: " << q.max_backoff << "\n";
  }
  return o.str();
}

TestQueue test_queue(const std::string& name, const std::string& handler, int instances, int max_jobs,
                     const std::string& deadline) {
  TestQueue q;
  q.name = name;
  q.handler = handler;
  q.instances = instances;
  q.max_jobs = max_jobs;
  q.deadline = deadline;
  return q;
}

DaemonConfig daemon_config(const std::string& url, std::vector<TestQueue> queues) {
  DaemonConfig c;
  c.database_url = url;
  c.queues = std::move(queues);
  return c;
}

void migrate_with_cli(const std::string& url) {
  detail::SpawnSpec spec;
  spec.argv = {bin_path("inferq"), "migrate"};
  // The environment names the database whatever /etc/inferq/inferq.yaml says.
  spec.env = {{"INFERQ_DATABASE_URL", url}};
  detail::run_checked(spec, std::chrono::seconds(60));
}

std::string fresh_inferq_database() {
  const std::string url = PgCluster::shared().create_database();
  migrate_with_cli(url);
  return url;
}

Daemon::Daemon(const DaemonConfig& config, const std::string& name)
    : dir_("inferq-" + name),
      process_(
          [&] {
            const std::string path = dir_.file("inferq.yaml");
            std::ofstream out(path);
            out << config.yaml();
            out.close();
            if (!out) throw std::runtime_error("cannot write " + path);
            return std::vector<std::string>{bin_path("inferq"), "run", "--config", path};
          }(),
          // INFERQ_DATABASE_URL would override database.url: make it agree.
          {{"INFERQ_DATABASE_URL", config.database_url}}, dir_.file(name + ".log")),
      counts_ready_lines_(config.log_level == "debug" || config.log_level == "trace") {}

void Daemon::reload_with(const std::string& yaml_text) {
  const std::string path = config_path();
  const std::string tmp = path + ".new";
  {
    std::ofstream out(tmp);
    out << yaml_text;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot replace " + path);
  if (::kill(pid(), SIGHUP) != 0) throw std::runtime_error("cannot signal the daemon");
}

bool Daemon::wait_ready(std::chrono::milliseconds timeout) {
  bool exited = false;
  const bool done = wait_until(
      [&] {
        if (!process_.running()) {
          exited = true;  // stop waiting: it will not become ready
          return true;
        }
        const std::string text = log();
        const auto slots = announced_slots(text);
        if (!slots) return false;
        // "<queue>#<i> (pid P) ready (<handler>)", logged at debug level.
        return !counts_ready_lines_ ||
               count_occurrences(text, ") ready (") >= static_cast<std::size_t>(*slots);
      },
      timeout, std::chrono::milliseconds(20));
  return done && !exited;
}

std::optional<std::string> Daemon::metrics_address(std::chrono::milliseconds timeout) {
  static const std::string kMarker = "metrics listening on http://";
  std::optional<std::string> address;
  wait_until(
      [&] {
        const std::string text = log();
        const auto at = text.find(kMarker);
        if (at == std::string::npos) return !process_.running();
        const auto start = at + kMarker.size();
        const auto end = text.find(' ', start);
        if (end == std::string::npos) return false;
        address = text.substr(start, end - start);
        return true;
      },
      timeout, std::chrono::milliseconds(20));
  return address;
}

std::size_t Daemon::count_log(const std::string& needle) const { return count_occurrences(log(), needle); }

std::vector<pid_t> Daemon::executor_pids() const {
  const std::string text = log();
  std::vector<pid_t> pids;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto ready = line.find(") ready (");
    const auto open = line.rfind("(pid ", ready);
    if (ready == std::string::npos || open == std::string::npos) continue;
    try {
      pids.push_back(static_cast<pid_t>(std::stol(line.substr(open + 5, ready - open - 5))));
    } catch (const std::exception&) {
      // Not a line of the supervisor's form.
    }
  }
  return pids;
}

std::optional<int> Daemon::terminate(std::chrono::milliseconds timeout) {
  process_.send_signal(SIGTERM);
  return process_.wait_exit(timeout);
}

std::int64_t enqueue(const std::string& url, const std::string& queue, const std::string& payload_json,
                     const std::optional<std::string>& key, int priority, std::optional<int> max_attempts) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  const std::string attempts = max_attempts ? std::to_string(*max_attempts) : std::string();
  const auto r =
      tx.exec_params("SELECT inferq.enqueue($1, $2::jsonb, $3, $4, now(), $5::integer)", queue, payload_json,
                     key ? key->c_str() : nullptr, priority, max_attempts ? attempts.c_str() : nullptr);
  tx.commit();
  return r[0][0].as<std::int64_t>();
}

std::vector<std::int64_t> enqueue_many(const std::string& url, const std::string& queue,
                                       const std::vector<std::string>& payloads,
                                       const std::optional<std::string>& key) {
  if (payloads.empty()) return {};
  std::string array = "[";
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    if (i) array += ",";
    array += payloads[i];
  }
  array += "]";
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  const auto r = tx.exec_params(
      "SELECT t.n, inferq.enqueue($1, t.p, $2)"
      "  FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS t(p, n) ORDER BY t.n",
      queue, key ? key->c_str() : nullptr, array);
  tx.commit();
  std::vector<std::int64_t> ids(payloads.size());
  for (const auto& row : r) ids.at(row[0].as<std::size_t>() - 1) = row[1].as<std::int64_t>();
  return ids;
}

std::optional<JobRow> job(const std::string& url, std::int64_t id) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec_params(std::string(kJobColumns) + " WHERE id = $1", id);
  if (r.empty()) return std::nullopt;
  return read_job_row(r[0]);
}

std::vector<JobRow> jobs(const std::string& url, const std::string& where_sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec(std::string(kJobColumns) + " WHERE (" + where_sql + ") ORDER BY id");
  std::vector<JobRow> out;
  out.reserve(r.size());
  for (const auto& row : r) out.push_back(read_job_row(row));
  return out;
}

std::map<std::string, std::int64_t> state_counts(const std::string& url) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec("SELECT state::text, count(*) FROM inferq.jobs GROUP BY 1");
  std::map<std::string, std::int64_t> counts;
  for (const auto& row : r) counts[row[0].c_str()] = row[1].as<std::int64_t>();
  return counts;
}

std::int64_t scalar(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec(sql);
  if (r.size() != 1 || r.columns() != 1 || r[0][0].is_null()) {
    throw std::runtime_error("scalar: expected one non-null value from: " + sql);
  }
  return r[0][0].as<std::int64_t>();
}

bool wait_all_final(const std::string& url, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        return scalar(url,
                      "SELECT count(*) FROM inferq.jobs WHERE state NOT IN ('succeeded', 'dead', "
                      "'cancelled')") == 0;
      },
      timeout, std::chrono::milliseconds(100));
}

void exec_sql(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec(sql);
  tx.commit();
}

std::optional<std::string> scalar_text(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec(sql);
  if (r.size() != 1 || r.columns() != 1)
    throw std::runtime_error("scalar_text: expected one value from: " + sql);
  if (r[0][0].is_null()) return std::nullopt;
  return std::string(r[0][0].c_str());
}

std::optional<std::string> worker_name(const std::string& url, pid_t pid) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec_params("SELECT name FROM inferq.workers WHERE pid = $1 ORDER BY id DESC LIMIT 1",
                                static_cast<int>(pid));
  if (r.empty()) return std::nullopt;
  return std::string(r[0][0].c_str());
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  // Still in the process table: gone all the same once it is a zombie.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return true;
  const auto paren = content.rfind(')');
  return paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z';
}

bool processes_gone(const std::vector<pid_t>& pids) {
  for (const pid_t p : pids)
    if (!process_gone(p)) return false;
  return true;
}

std::optional<std::int64_t> worker_id(const std::string& url, pid_t pid) {
  const auto id =
      scalar(url, "SELECT coalesce(max(id), 0) FROM inferq.workers WHERE pid = " + std::to_string(pid));
  if (id == 0) return std::nullopt;
  return id;
}

std::string id_list(const std::vector<std::int64_t>& ids) {
  std::string s;
  for (const auto id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace inferq::test
