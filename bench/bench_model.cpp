// Model benchmark: encoder.pt (the example transformer encoder, made by
// `inferq-executor make-models` into a temp dir) on sequences of --seq-len
// tokens. Prints the raw in-process forward throughput at batch 1, 8 and 32,
// the end-to-end throughput of a real `inferq run` (its own PostgreSQL, as
// bench_queue does) with max_jobs 1, 8 and 32 on a backlog, and the ratio.
// Prints figures, asserts nothing.
//
//   inferq-bench-model [--seq-len L] [--jobs N] [--batches 1,8,32]
//                      [--instances I] [--threads T] [--raw-seconds S]
//                      [--no-prefetch]
//
// --threads is per executor (default: cores / instances, at least 1). The raw
// pass has the daemon's layout without the queue: --instances processes (as
// the executors are), each running its own copy of the model with --threads
// intra-op threads, under the environment the supervisor gives executors
// (executor_environment: threads, malloc's huge pages). It also prints the
// same loops as threads of one process, which on this VM ran batch 32 at
// 0.6x the processes' speed: that figure is for reference only.
#include <torch/script.h>
#include <pqxx/pqxx>

#include <ATen/Parallel.h>

#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/executor_process.hpp"
#include "support/child_process.hpp"
#include "support/drain.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

using namespace inferq::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int seq_len = 64;
  long jobs = 2000;
  std::vector<int> batches = {1, 8, 32};
  int instances = 2;
  int threads = 0;  // 0: cores / instances
  double raw_seconds = 3;
  bool e2e = true;
  bool prefetch = true;  // the queue's prefetch: true (--no-prefetch: the default false)
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Token ids of job `j`: deterministic, in [1, 8000].
std::vector<std::int64_t> token_ids(int n, long j) {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = 1 + (j * 131 + i * 71) % 8000;
  return ids;
}

// One batch of `batch` rows of token_ids, as the raw passes feed the model.
at::Tensor batch_input(int batch, int seq_len) {
  std::vector<std::int64_t> ids;
  for (int b = 0; b < batch; ++b) {
    const auto row = token_ids(seq_len, b);
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return at::tensor(ids).reshape({batch, seq_len});
}

// `instances` threads, each with its own copy of the model, loop over the
// forward pass of one batch for `seconds`: the daemon's layout (I executors
// x T intra-op threads) without the queue. Returns jobs per second.
double raw_throughput(const std::string& model_path, int batch, int seq_len, double seconds, int instances) {
  const at::Tensor input = batch_input(batch, seq_len);
  std::vector<torch::jit::Module> modules;
  for (int i = 0; i < instances; ++i) {
    modules.push_back(torch::jit::load(model_path));
    modules.back().eval();
    c10::InferenceMode guard;
    for (int w = 0; w < 3; ++w) modules.back().forward({input});  // warm-up, as the executor does
  }
  std::vector<long> runs(static_cast<std::size_t>(instances), 0);
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < instances; ++i) {
    threads.emplace_back([&, i] {
      c10::InferenceMode guard;
      while (seconds_since(t0) < seconds) {
        modules[static_cast<std::size_t>(i)].forward({input});
        ++runs[static_cast<std::size_t>(i)];
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = seconds_since(t0);
  long total = 0;
  for (const long r : runs) total += r;
  return static_cast<double>(total * batch) / elapsed;
}

// One raw loop in a process of its own (`--raw-child`): loads the model,
// warms it up, waits until `start` (CLOCK_MONOTONIC, the same in every
// process), loops for `seconds` and prints "RUNS ELAPSED".
int raw_child(const std::string& model_path, int batch, int seq_len, double seconds, std::int64_t start_ns) {
  const at::Tensor input = batch_input(batch, seq_len);
  auto module = torch::jit::load(model_path);
  module.eval();
  c10::InferenceMode guard;
  for (int w = 0; w < 3; ++w) module.forward({input});
  std::this_thread::sleep_until(Clock::time_point(std::chrono::nanoseconds(start_ns)));
  const auto t0 = Clock::now();
  long runs = 0;
  while (seconds_since(t0) < seconds) {
    module.forward({input});
    ++runs;
  }
  std::printf("%ld %.6f\n", runs, seconds_since(t0));
  return 0;
}

// `instances` processes, each one raw_child: jobs per second, summed.
double raw_throughput_processes(const std::string& model_path, int batch, int seq_len, double seconds,
                                int instances) {
  // Loading and warming up take well under this on the 2-core machine.
  const auto start = Clock::now() + std::chrono::seconds(8);
  const std::string start_ns =
      std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(start.time_since_epoch()).count());
  std::vector<ChildProcess> children;
  for (int i = 0; i < instances; ++i)
    children.emplace_back(std::vector<std::string>{"/proc/self/exe", "--raw-child", model_path,
                                                   std::to_string(batch), std::to_string(seq_len),
                                                   std::to_string(seconds), start_ns});
  double rate = 0;
  for (auto& child : children) {
    const auto status = child.wait_exit(std::chrono::seconds(120));
    long runs = 0;
    double elapsed = 0;
    std::istringstream out(child.log());
    for (std::string line; std::getline(out, line);)
      if (std::sscanf(line.c_str(), "%ld %lf", &runs, &elapsed) == 2) break;
    if (!status || !exited_with(*status, 0) || elapsed <= 0) {
      std::cerr << "raw child failed:\n" << child.log();
      std::exit(1);
    }
    rate += static_cast<double>(runs * batch) / elapsed;
  }
  return rate;
}

void fill_backlog(const std::string& url, long n, int seq_len) {
  pqxx::connection c(url);
  pqxx::work tx(c);
  tx.exec("TRUNCATE inferq.jobs, inferq.active_sessions");
  tx.exec(
      "SELECT inferq.enqueue('encoder', jsonb_build_object('inputs', jsonb_build_array(jsonb_build_object("
      "'name', 'input_ids', 'datatype', 'INT64', 'shape', jsonb_build_array(" +
      std::to_string(seq_len) +
      "),"
      "'data', (SELECT jsonb_agg(1 + (g * 131 + i * 71) % 8000 ORDER BY i) FROM generate_series(0, " +
      std::to_string(seq_len - 1) +
      ") i)))))"
      " FROM generate_series(1, " +
      std::to_string(n) + ") g");
  tx.commit();
  pqxx::nontransaction nt(c);
  nt.exec("VACUUM ANALYZE inferq.jobs");
}

double end_to_end(const Options& o, const std::string& url, const std::string& model, int max_jobs,
                  int threads) {
  fill_backlog(url, o.jobs, o.seq_len);
  TempDir dir("inferq-bench-model");
  const std::string config = dir.file("bench.yaml");
  {
    std::ofstream f(config);
    f << "database: {url: \"" << url << "\"}\n"
      << "worker: {poll_interval: 1s, heartbeat_interval: 2s, stale_after: 15s, shutdown_grace: 5s}\n"
      << "logging: {level: info}\n"
      << "queues:\n"
      << "  - name: encoder\n"
      << "    model: " << model << "\n"
      << "    device: cpu\n"
      << "    instances: " << o.instances << "\n"
      << "    threads: " << threads << "\n"
      << "    batch: {max_jobs: " << max_jobs << "}\n"
      << "    inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
      << "    outputs: [{name: embedding}]\n"
      << "    idle_exit_after: 0s\n"
      << "    deadline: 60s\n"
      << "    prefetch: " << (o.prefetch ? "true" : "false") << "\n";
  }
  ChildProcess daemon({bin_path("inferq"), "run", "--config", config}, {}, dir.file("daemon.log"));
  pqxx::connection c(url);
  for (;;) {
    if (backlog_drained(c, "encoder")) break;
    if (!daemon.running()) {
      std::cerr << "daemon exited:\n" << daemon.log();
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  pqxx::nontransaction tx(c);
  // From the first claim to the last completion: executors are ready (model
  // loaded and warmed up) before the first claim.
  const auto r = tx.exec(
      "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*),"
      " extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM inferq.jobs");
  const long ok = r[0][0].as<long>();
  const double span = r[0][2].as<double>();
  daemon.send_signal(SIGTERM);
  daemon.wait_exit(std::chrono::seconds(30));
  if (ok != o.jobs) std::printf("  warning: only %ld of %ld jobs succeeded\n", ok, r[0][1].as<long>());
  return static_cast<double>(ok) / span;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc == 7 && std::string(argv[1]) == "--raw-child") {
    at::set_num_threads(
        std::max(1, std::atoi(std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "1")));
    at::set_num_interop_threads(1);
    return raw_child(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), std::stod(argv[5]),
                     std::stoll(argv[6]));
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : "0"); };
    if (a == "--seq-len") {
      o.seq_len = std::stoi(next());
    } else if (a == "--jobs") {
      o.jobs = std::stol(next());
    } else if (a == "--batches") {
      o.batches.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) o.batches.push_back(std::stoi(x));
    } else if (a == "--instances") {
      o.instances = std::stoi(next());
    } else if (a == "--threads") {
      o.threads = std::stoi(next());
    } else if (a == "--skip-e2e") {
      o.e2e = false;
    } else if (a == "--no-prefetch") {
      o.prefetch = false;
    } else if (a == "--raw-seconds") {
      o.raw_seconds = std::stod(next());
    } else {
      std::cerr << "usage: inferq-bench-model [--seq-len L] [--jobs N] [--batches 1,8,32] [--instances I]"
                   " [--threads T] [--raw-seconds S] [--no-prefetch]\n";
      return 2;
    }
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = o.threads > 0 ? o.threads : std::max(1, cores / o.instances);
  // The environment the supervisor gives each executor (threads, huge
  // pages), for the raw pass too; OpenBLAS and glibc read it when they load,
  // so set it and start again.
  if (std::getenv("INFERQ_BENCH_REEXEC") == nullptr) {
    for (const auto& entry :
         inferq::supervisor::executor_environment(threads, std::getenv("GLIBC_TUNABLES"))) {
      const auto eq = entry.find('=');
      ::setenv(entry.substr(0, eq).c_str(), entry.substr(eq + 1).c_str(), 1);
    }
    ::setenv("INFERQ_BENCH_REEXEC", "1", 1);
    ::execv("/proc/self/exe", argv);
    std::perror("inferq-bench-model: re-exec");
    return 1;
  }

  TempDir models("inferq-bench-models");
  try {
    run_to_success({bin_path("inferq-executor"), "make-models", models.path()}, std::chrono::seconds(120),
                   "make-models");
  } catch (const std::exception& e) {
    std::cerr << e.what();
    return 1;
  }
  const std::string model = models.file("encoder.pt");
  std::printf(
      "inferq model benchmark: encoder.pt (4 layers, 6 heads, width 384), %d tokens per job, %u cores\n",
      o.seq_len, std::thread::hardware_concurrency());

  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  std::map<int, double> raw;
  for (const int b : o.batches) {
    raw[b] = raw_throughput_processes(model, b, o.seq_len, o.raw_seconds, o.instances);
    const double in_threads = raw_throughput(model, b, o.seq_len, o.raw_seconds, o.instances);
    std::printf(
        "raw forward, batch %2d, %d process(es) x %d thread(s): %8.1f jobs/s   (as %d threads of one "
        "process: "
        "%8.1f)\n",
        b, o.instances, threads, raw[b], o.instances, in_threads);
  }

  if (!o.e2e) return 0;
  PgCluster pg;
  pg.start();
  const std::string url = pg.create_database();
  ChildProcess migrate({bin_path("inferq"), "migrate"}, {{"INFERQ_DATABASE_URL", url}});
  migrate.wait_exit(std::chrono::seconds(60));
  for (const int b : o.batches) {
    const double e2e = end_to_end(o, url, model, b, threads);
    std::printf(
        "end to end, max_jobs %2d, %d instance(s) x %d thread(s), %ld jobs: %8.1f jobs/s = %5.1f%% of raw "
        "at batch %d\n",
        b, o.instances, threads, o.jobs, e2e, 100.0 * e2e / raw[b], b);
  }
  return 0;
}
