#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/test_env.hpp"

// Helpers for tests that run the real `inferq` binaries against a database of
// the harness's PostgreSQL.
namespace inferq::test {

// One queue of a test configuration (YAML written by DaemonConfig::yaml()).
struct TestQueue {
  std::string name = "echo";
  std::string handler = "builtin:echo";
  int instances = 1;
  int max_jobs = 16;
  std::string deadline = "30s";
  int max_attempts = 5;
  std::string backoff = "100ms";
  std::string max_backoff = "1s";
  // A model queue (issue 3): written as `model:` instead of `handler:`.
  std::string model;
  std::string max_wait;    // batch.max_wait; empty: left out
  int max_bytes = 0;       // batch.max_bytes; 0: left out
  std::string extra_yaml;  // more keys of the queue entry, one "key: value" a line, unindented
};

struct DaemonConfig {
  std::string database_url;
  bool transaction_pooling = false;  // database.transaction_pooling
  std::string poll_interval = "200ms";
  std::string heartbeat_interval = "200ms";
  std::string stale_after = "2s";
  std::string shutdown_grace = "5s";
  std::string executor_path;  // empty: the built inferq-executor
  std::string log_level = "debug";
  std::string log_format = "text";  // logging.format: text or json
  // metrics.listen; port 0 (a free port) so that tests run side by side.
  std::string metrics_listen = "127.0.0.1:0";
  std::vector<TestQueue> queues;
  // The YAML text of this configuration.
  std::string yaml() const;
};

// A queue `name` of `instances` executors running `handler`, in units of up
// to `max_jobs` jobs under `deadline`; the other settings at their defaults.
TestQueue test_queue(const std::string& name, const std::string& handler, int instances, int max_jobs,
                     const std::string& deadline = "30s");

// A configuration for the database at `url` serving `queues`, the other
// settings at their defaults (poll and heartbeat 200ms, stale_after 2s).
DaemonConfig daemon_config(const std::string& url, std::vector<TestQueue> queues);

// Runs `inferq migrate` on `url` (the real binary); throws with its output on
// failure.
void migrate_with_cli(const std::string& url);

// A fresh migrated database on the shared cluster; returns its URL.
std::string fresh_inferq_database();

// An `inferq run` process with its config written to a temp dir. The
// destructor SIGKILLs it (and, through their parent-death signal, its executors).
class Daemon {
 public:
  // Writes the config and starts `inferq run --config FILE`. Does not wait.
  explicit Daemon(const DaemonConfig& config, const std::string& name = "daemon");
  // Waits until the log says the worker is running and every executor is
  // ready (or `timeout`); returns false on timeout or exit.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  ChildProcess& process() { return process_; }
  // The config file it runs with (and re-reads on SIGHUP).
  std::string config_path() const { return dir_.file("inferq.yaml"); }
  // Replaces that file's text (whole, so a reload never reads half of it),
  // then sends SIGHUP.
  void reload_with(const std::string& yaml_text);
  pid_t pid() const { return process_.pid(); }
  std::string log() const { return process_.log(); }
  // HOST:PORT the metrics endpoint bound, from the start-up log line
  // (waits for it); nullopt on timeout or exit.
  std::optional<std::string> metrics_address(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // How many times `needle` occurs in the log so far (e.g. restarts).
  std::size_t count_log(const std::string& needle) const;
  // The pids of the executors this daemon has reported ready so far (from
  // the debug-level "<queue>#<i> (pid P) ready (<handler>)" lines), in order.
  std::vector<pid_t> executor_pids() const;
  // SIGTERM and wait for the exit; returns the raw wait status (nullopt on
  // timeout).
  std::optional<int> terminate(std::chrono::milliseconds timeout);

 private:
  TempDir dir_;
  ChildProcess process_;
  bool counts_ready_lines_ = false;  // log level shows the per-executor "ready" lines
};

// Direct SQL helpers (libpqxx, one short connection per call).
std::int64_t enqueue(const std::string& url, const std::string& queue, const std::string& payload_json,
                     const std::optional<std::string>& key = std::nullopt, int priority = 0,
                     std::optional<int> max_attempts = std::nullopt);
// Enqueues many in one transaction with INSERT ... SELECT through inferq.enqueue;
// returns the ids in order.
std::vector<std::int64_t> enqueue_many(const std::string& url, const std::string& queue,
                                       const std::vector<std::string>& payloads,
                                       const std::optional<std::string>& key = std::nullopt);

struct JobRow {
  std::int64_t id = 0;
  std::string queue;
  std::optional<std::string> key;
  std::string state;
  int attempts = 0;
  std::optional<int> max_attempts;
  std::optional<std::string> result;  // JSON text
  std::optional<std::string> last_error;
  std::string errors;                    // JSON text of the history array
  std::optional<double> started_epoch;   // extract(epoch from started_at)
  std::optional<double> finished_epoch;  // extract(epoch from finished_at)
};
std::optional<JobRow> job(const std::string& url, std::int64_t id);
std::vector<JobRow> jobs(const std::string& url, const std::string& where_sql = "true");
// Count of jobs by state, e.g. counts["succeeded"].
std::map<std::string, std::int64_t> state_counts(const std::string& url);
// Runs SQL returning one integer (e.g. "SELECT count(*) FROM inferq.active_sessions").
std::int64_t scalar(const std::string& url, const std::string& sql);
// Waits until every job is in a final state (succeeded, dead, cancelled).
bool wait_all_final(const std::string& url, std::chrono::milliseconds timeout);
// Runs SQL (several statements allowed) in one transaction, for test-only
// instrumentation such as triggers; throws on error.
void exec_sql(const std::string& url, const std::string& sql);
// Runs SQL returning one text value or NULL (nullopt); throws unless it
// returns exactly one row of one column.
std::optional<std::string> scalar_text(const std::string& url, const std::string& sql);
// The inferq.workers name ("host:pid") of the daemon with process id `pid`,
// nullopt when it has no row.
std::optional<std::string> worker_name(const std::string& url, pid_t pid);
// True when no process `pid` runs any more (it does not exist or is a
// zombie waiting to be reaped by someone else).
bool process_gone(pid_t pid);
// True when process_gone() holds for every one of `pids`.
bool processes_gone(const std::vector<pid_t>& pids);
// The inferq.workers id of the daemon with process id `pid`, nullopt when it
// has no row.
std::optional<std::int64_t> worker_id(const std::string& url, pid_t pid);
// "1,2,3": the ids for an SQL IN (...) list.
std::string id_list(const std::vector<std::int64_t>& ids);
// Seconds from `t` to now.
double seconds_since(std::chrono::steady_clock::time_point t);

}  // namespace inferq::test
