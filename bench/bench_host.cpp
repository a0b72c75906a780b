// Host-cost benchmark (issue 21): how close a near-free model's queue comes
// to the queue's own floor. The model is the `embed` model of
// tests/python/export_models.py (nn.Embedding(1000, 32) mean-pooled over
// 64 INT64 ids, scripted in Python with a fixed seed), so its forward costs
// next to nothing and what is left is inferq's per-unit and per-job work.
// For each batch size and instance count it drains a backlog of that model's
// jobs end to end (a real `inferq run` on its own PostgreSQL) and, in the
// same run, a backlog of builtin:echo jobs with `{"i": n}` payloads (the
// queue's floor) and of the model's jobs with their ids and outputs as raw
// bytes (payload_binary, binary_data_output), and prints jobs/s for each,
// the ratios to echo, the per-job time
// of each stage of a unit (inferq_unit_stage_seconds) and the CPU per job of
// PostgreSQL, the supervisor and the executors. Prints figures, asserts
// nothing.
//
//   inferq-bench-host [--jobs N] [--batches 32,256] [--instances 1,2]
//                     [--raw-seconds S] [--no-prefetch] [--setup-sql SQL]
//                     [--payloads echo,json,binary] [--perf DIR] [--pg-setting K=V]...
// --setup-sql runs SQL once after migrating, to measure a change to the
// schema in the same program, e.g. "ALTER TABLE inferq.jobs SET (fillfactor = 50)".
// --payloads picks the drains (the ratios print when echo is among them).
// --perf records `perf record -a -g` over each drain alone (not the backlog's
// enqueue) into DIR/<payload>-<batch>x<instances>.data. --pg-setting starts
// the cluster with `-c K=V` (repeatable), e.g. wal_compression=lz4.
#include <torch/script.h>
#include <pqxx/pqxx>

#include <ATen/Parallel.h>

#include <dirent.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/daemon.hpp"
#include "support/drain.hpp"
#include "support/http_get.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

using namespace inferq::test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kIds = 64;  // ids per job, as the user tried it
const std::vector<std::string> kStages = {"dispatch", "decode", "forward", "encode", "return", "complete"};

struct Options {
  long jobs = 100000;
  std::vector<int> batches = {32, 256};
  std::vector<int> instances = {1, 2};
  double raw_seconds = 2;
  bool prefetch = true;
  std::string setup_sql;  // empty: none
  std::vector<std::string> payloads = {"echo", "json", "binary"};
  std::string perf_dir;  // empty: no profile
  std::vector<std::string> pg_settings;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<std::string> string_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

std::vector<int> int_list(const std::string& s) {
  std::vector<int> out;
  for (const std::string& x : string_list(s)) out.push_back(std::stoi(x));
  return out;
}

// The raw forward of the model at `batch`, one thread, in this process.
double raw_throughput(const std::string& model_path, int batch, double seconds) {
  std::vector<std::int64_t> ids;
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < kIds; ++i) ids.push_back((b * 131 + i * 71) % 1000);
  const at::Tensor input = at::tensor(ids).reshape({batch, kIds});
  auto module = torch::jit::load(model_path);
  module.eval();
  c10::InferenceMode guard;
  for (int w = 0; w < 3; ++w) module.forward({input});
  long runs = 0;
  const auto t0 = Clock::now();
  while (seconds_since(t0) < seconds) {
    module.forward({input});
    ++runs;
  }
  return static_cast<double>(runs * batch) / seconds_since(t0);
}

void fill_backlog(const std::string& url, const std::string& queue, long n) {
  pqxx::connection c(url);
  pqxx::work tx(c);
  tx.exec("TRUNCATE inferq.jobs, inferq.active_sessions");
  if (queue == "echo") {
    tx.exec("SELECT inferq.enqueue('echo', jsonb_build_object('i', g)) FROM generate_series(1, " +
            std::to_string(n) + ") g");
  } else if (queue == "embed") {
    tx.exec(
        "SELECT inferq.enqueue('embed', jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object("
        "'name', 'ids', 'datatype', 'INT64', 'shape', jsonb_build_array(" +
        std::to_string(kIds) +
        "), 'data', (SELECT jsonb_agg((g * 131 + i * 71) % 1000 ORDER BY i) FROM generate_series(0, " +
        std::to_string(kIds - 1) + ") i))))) FROM generate_series(1, " + std::to_string(n) + ") g");
  } else {
    // The same ids as raw little-endian bytes (binary data extension).
    tx.exec(
        "SELECT inferq.enqueue('embedb', '{\"inputs\": [{\"name\": \"ids\", \"datatype\": \"INT64\", "
        "\"shape\": [" +
        std::to_string(kIds) + "], \"parameters\": {\"binary_data_size\": " + std::to_string(kIds * 8) +
        "}}]}', payload_binary => inferq.tensor_bytes(ARRAY(SELECT ((g * 131 + i * 71) % 1000)::bigint "
        "FROM generate_series(0, " +
        std::to_string(kIds - 1) + ") i ORDER BY i))) FROM generate_series(1, " + std::to_string(n) + ") g");
  }
  tx.commit();
  pqxx::nontransaction nt(c);
  nt.exec("VACUUM ANALYZE inferq.jobs");
  nt.exec("CHECKPOINT");  // a standing backlog has been through one (see bench_queue)
}

// The fields of /proc/PID/stat after the command name, from field 3
// (state) on; empty when the process is gone.
std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream rest(text.substr(close + 2));
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

// utime + stime (fields 14 and 15) of process `pid`, in seconds; 0 when it is gone.
double cpu_seconds(pid_t pid) {
  const auto f = stat_fields(pid);
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Field 4; 0 when the process is gone.
pid_t parent_of(pid_t pid) {
  const auto f = stat_fields(pid);
  return f.size() < 2 ? 0 : static_cast<pid_t>(std::stol(f[1]));
}

// The pids whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  if (DIR* dir = ::opendir("/proc")) {
    while (const dirent* e = ::readdir(dir)) {
      const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
      if (pid > 0 && parent_of(pid) == parent) out.push_back(pid);
    }
    ::closedir(dir);
  }
  return out;
}

// CPU seconds so far of the daemon itself, of its executors, and of the
// cluster's backends (every child of the postmaster).
struct CpuSplit {
  double supervisor = 0, executors = 0, postgres = 0;
};
CpuSplit cpu_split(pid_t daemon, pid_t postmaster) {
  CpuSplit c;
  c.supervisor = cpu_seconds(daemon);
  for (const pid_t e : children_of(daemon)) c.executors += cpu_seconds(e);
  c.postgres = cpu_seconds(postmaster);
  for (const pid_t b : children_of(postmaster)) c.postgres += cpu_seconds(b);
  return c;
}

// The database's own counters (pg_stat_database, the WAL position): what
// PostgreSQL did for the drain, per job, beside what it cost in CPU.
struct DbWork {
  double commits = 0, rows_read = 0, rows_written = 0, blocks = 0, wal_bytes = 0;
};
DbWork db_work(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(
      "SELECT xact_commit, tup_returned + tup_fetched, tup_inserted + tup_updated + tup_deleted,"
      " blks_hit + blks_read, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8"
      "  FROM pg_stat_database WHERE datname = current_database()");
  return {r[0][0].as<double>(), r[0][1].as<double>(), r[0][2].as<double>(), r[0][3].as<double>(),
          r[0][4].as<double>()};
}

struct Drain {
  double jobs_per_second = 0;
  long jobs = 0;
  std::map<std::string, double> stage_us_per_job;  // stage -> µs of one unit's stage, per job
  double units = 0;
  CpuSplit cpu_us_per_job;
  DbWork db_per_job;
};

Drain drain(const Options& o, const std::string& url, pid_t postmaster, const std::string& queue,
            const std::string& model, int max_jobs, int instances) {
  fill_backlog(url, queue, o.jobs);
  TestQueue q = test_queue(queue, "builtin:echo", instances, max_jobs, "60s");
  q.extra_yaml = std::string("prefetch: ") + (o.prefetch ? "true" : "false") + "\n";
  if (queue != "echo") {
    q.model = model;
    q.extra_yaml +=
        "device: cpu\nthreads: 1\nidle_exit_after: 0s\n"
        "inputs: [{name: ids, datatype: INT64, shape: [" +
        std::to_string(kIds) + "]}]\noutputs: [{name: e}]\n";
    if (queue == "embedb") q.extra_yaml += "binary_data_output: true\n";
  }
  DaemonConfig config = daemon_config(url, {q});
  config.log_level = "info";
  config.poll_interval = "1s";
  config.heartbeat_interval = "2s";
  config.stale_after = "15s";
  Daemon d(config, "bench-host");
  const auto address = d.metrics_address(std::chrono::seconds(60));
  if (!address || !d.wait_ready(std::chrono::seconds(60))) {
    std::cerr << "the daemon did not start:\n" << d.log();
    std::exit(1);
  }
  std::optional<ChildProcess> perf;
  if (!o.perf_dir.empty()) {
    const std::string file =
        o.perf_dir + "/" + queue + "-" + std::to_string(max_jobs) + "x" + std::to_string(instances) + ".data";
    perf.emplace(std::vector<std::string>{"perf", "record", "-q", "-a", "-g", "-o", file});
  }
  const CpuSplit before = cpu_split(d.pid(), postmaster);
  pqxx::connection c(url);
  const DbWork db_before = db_work(c);
  const auto give_up = Clock::now() + std::chrono::minutes(10);
  for (;;) {
    if (backlog_drained(c, queue)) break;
    if (!d.process().running() || Clock::now() > give_up) {
      std::cerr << "the daemon exited or did not drain within 10 minutes:\n" << d.log();
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const CpuSplit after = cpu_split(d.pid(), postmaster);
  if (perf) {
    perf->send_signal(SIGINT);  // perf writes its file on SIGINT
    perf->wait_exit(std::chrono::seconds(60));
  }
  // Backends flush their statistics at most once a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const DbWork db_after = db_work(c);
  Drain out;
  {
    pqxx::nontransaction tx(c);
    // From the first claim to the last completion.
    const auto r = tx.exec(
        "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*),"
        " extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM inferq.jobs");
    out.jobs = r[0][0].as<long>();
    if (out.jobs != o.jobs)
      std::printf("  warning: only %ld of %ld jobs succeeded\n", out.jobs, r[0][1].as<long>());
    out.jobs_per_second = static_cast<double>(out.jobs) / r[0][2].as<double>();
  }
  const auto page = http_get(*address, "/metrics");
  const double jobs = static_cast<double>(std::max(1L, out.jobs));
  for (const std::string& stage : kStages) {
    const std::string labels = "{queue=\"" + queue + "\",stage=\"" + stage + "\"}";
    const auto sum = page ? metric_value(page->body, "inferq_unit_stage_seconds_sum" + labels) : std::nullopt;
    const auto count =
        page ? metric_value(page->body, "inferq_unit_stage_seconds_count" + labels) : std::nullopt;
    out.stage_us_per_job[stage] = sum ? *sum * 1e6 / jobs : -1;
    if (stage == "dispatch" && count) out.units = *count;
  }
  out.cpu_us_per_job.supervisor = (after.supervisor - before.supervisor) * 1e6 / jobs;
  out.cpu_us_per_job.executors = (after.executors - before.executors) * 1e6 / jobs;
  out.cpu_us_per_job.postgres = (after.postgres - before.postgres) * 1e6 / jobs;
  out.db_per_job = {
      (db_after.commits - db_before.commits) / jobs, (db_after.rows_read - db_before.rows_read) / jobs,
      (db_after.rows_written - db_before.rows_written) / jobs, (db_after.blocks - db_before.blocks) / jobs,
      (db_after.wal_bytes - db_before.wal_bytes) / jobs};
  d.terminate(std::chrono::seconds(30));
  return out;
}

void print_drain(const char* what, const Drain& d) {
  std::printf("  %-6s %9.0f jobs/s  %6.0f units", what, d.jobs_per_second, d.units);
  std::printf("  | CPU us/job: postgres %5.1f supervisor %5.1f executors %5.1f\n", d.cpu_us_per_job.postgres,
              d.cpu_us_per_job.supervisor, d.cpu_us_per_job.executors);
  std::printf("         stage us/job:");
  for (const std::string& stage : kStages) {
    const double us = d.stage_us_per_job.at(stage);
    if (us < 0) {
      std::printf(" %s -", stage.c_str());
    } else {
      std::printf(" %s %.2f", stage.c_str(), us);
    }
  }
  std::printf(
      "\n         database per job: %.3f commits, %.1f rows read, %.1f rows written, %.1f blocks, %.0f WAL "
      "bytes\n",
      d.db_per_job.commits, d.db_per_job.rows_read, d.db_per_job.rows_written, d.db_per_job.blocks,
      d.db_per_job.wal_bytes);
}

int run(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : "0"); };
    if (a == "--jobs") {
      o.jobs = std::stol(next());
    } else if (a == "--batches") {
      o.batches = int_list(next());
    } else if (a == "--instances") {
      o.instances = int_list(next());
    } else if (a == "--raw-seconds") {
      o.raw_seconds = std::stod(next());
    } else if (a == "--no-prefetch") {
      o.prefetch = false;
    } else if (a == "--setup-sql") {
      o.setup_sql = next();
    } else if (a == "--payloads") {
      o.payloads = string_list(next());
      for (const std::string& p : o.payloads)
        if (p != "echo" && p != "json" && p != "binary") {
          std::cerr << "--payloads takes echo, json and binary, not " << p << "\n";
          return 2;
        }
    } else if (a == "--perf") {
      o.perf_dir = next();
    } else if (a == "--pg-setting") {
      o.pg_settings.push_back(next());
    } else {
      std::cerr
          << "usage: inferq-bench-host [--jobs N] [--batches 32,256] [--instances 1,2] [--raw-seconds S]"
             " [--no-prefetch] [--setup-sql SQL]"
             " [--payloads echo,json,binary] [--perf DIR] [--pg-setting K=V]...\n";
      return 2;
    }
  }
  TempDir models("inferq-bench-host-models");
  try {
    run_to_success({"/usr/bin/python3", source_path("tests/python/export_models.py"), models.path(),
                    "--models", "embed"},
                   std::chrono::seconds(300), "export_models.py");
  } catch (const std::exception& e) {
    std::cerr << e.what();
    return 1;
  }
  const std::string model = models.file("embed.pt");
  std::printf(
      "inferq host-cost benchmark: embed.pt (nn.Embedding(1000, 32), mean over %d INT64 ids), %ld jobs per "
      "drain, prefetch %s, %u cores\n",
      kIds, o.jobs, o.prefetch ? "on" : "off", std::thread::hardware_concurrency());
  at::set_num_threads(1);
  at::set_num_interop_threads(1);
  for (const int b : o.batches)
    std::printf("raw forward, batch %3d, 1 thread: %10.0f jobs/s\n", b,
                raw_throughput(model, b, o.raw_seconds));

  PgCluster pg(o.pg_settings, PgCluster::Wal::kDefaultSegments);
  for (const std::string& setting : o.pg_settings) std::printf("PostgreSQL setting: %s\n", setting.c_str());
  pg.start();
  // The unix socket, as a daemon beside its PostgreSQL would use.
  const std::string url = pg.socket_url(PgCluster::database_name(pg.create_database()));
  migrate_with_cli(url);
  if (!o.setup_sql.empty()) {
    exec_sql(url, o.setup_sql);
    std::printf("set up with: %s\n", o.setup_sql.c_str());
  }
  const pid_t postmaster = pg.server_pid();
  for (const int b : o.batches) {
    for (const int n : o.instances) {
      std::printf("max_jobs %d, %d instance(s):\n", b, n);
      std::map<std::string, double> rate;  // payload -> jobs/s
      for (const std::string& p : o.payloads) {
        const std::string queue = p == "json" ? "embed" : p == "binary" ? "embedb" : p;
        const Drain d = drain(o, url, postmaster, queue, model, b, n);
        print_drain(p.c_str(), d);
        rate[p] = d.jobs_per_second;
      }
      if (rate.count("echo") != 0) {
        for (const char* p : {"json", "binary"})
          if (rate.count(p) != 0) std::printf("  %s / echo = %.2f", p, rate[p] / rate["echo"]);
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inferq-bench-host: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "inferq-bench-host: unknown exception\n");
  }
  return 1;
}
