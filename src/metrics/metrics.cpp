#include "metrics/metrics.hpp"

#include <dirent.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <sstream>

namespace inferq::metrics {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr std::array<Outcome, 4> kOutcomes = {Outcome::kSucceeded, Outcome::kRetried, Outcome::kDead,
                                              Outcome::kCancelled};
constexpr std::array<RestartReason, 4> kReasons = {RestartReason::kDeadline, RestartReason::kCrash,
                                                   RestartReason::kFatalGpu, RestartReason::kIdle};
constexpr std::array<DbOp, 6> kDbOps = {DbOp::kReap,     DbOp::kClaim,   DbOp::kHeartbeat,
                                        DbOp::kComplete, DbOp::kRelease, DbOp::kSample};
constexpr std::array<Stage, 6> kStages = {Stage::kDispatch, Stage::kDecode, Stage::kForward,
                                          Stage::kEncode,   Stage::kReturn, Stage::kComplete};
constexpr std::array<FinalState, 3> kFinalStates = {FinalState::kSucceeded, FinalState::kDead,
                                                    FinalState::kCancelled};

// Seconds a job waits: from milliseconds (a hot queue) to an hour (a backlog).
const Histogram::BucketBoundaries kWaitBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,
                                                  5,     10,   30,    60,   120, 300,  600, 1800, 3600};
// Seconds a unit runs: from a built-in echo to a deadline of minutes.
const Histogram::BucketBoundaries kRunBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                 1,     2.5,    5,     10,   30,    60,   120, 300,  600};
// Seconds a unit spends in one stage: from a pipe hop (tens of microseconds)
// to a forward pass of seconds.
const Histogram::BucketBoundaries kStageBuckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                   0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                                   2.5,     5,      10,      30,     60};
const Histogram::BucketBoundaries kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
// Seconds a tick takes: a few statements; long ticks mean a slow database.
const Histogram::BucketBoundaries kTickBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};

template <typename E, std::size_t N>
std::size_t index_of(const std::array<E, N>& values, E v) {
  for (std::size_t i = 0; i < N; ++i)
    if (values[i] == v) return i;
  return 0;
}

double seconds_since_epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

prometheus::MetricFamily gauge_family(const std::string& name, const std::string& help, double value,
                                      prometheus::MetricType type = prometheus::MetricType::Gauge) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

// The usual process_* metrics, read from /proc at scrape time (in-memory
// files of the kernel: no disk I/O, nothing that can block on inferq).
std::vector<prometheus::MetricFamily> process_families() {
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));

  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces), starting at field 3.
  const auto close = stat.rfind(')');
  if (close != std::string::npos && ticks > 0) {
    std::istringstream in(stat.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; in >> s;) f.push_back(s);
    // utime=14, stime=15, starttime=22, vsize=23, rss=24 (1-based fields).
    if (f.size() > 21) {
      const double cpu = (std::stod(f[14 - 3]) + std::stod(f[15 - 3])) / ticks;
      out.push_back(gauge_family("process_cpu_seconds_total",
                                 "Total user and system CPU time spent in seconds.", cpu,
                                 prometheus::MetricType::Counter));
      out.push_back(gauge_family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                 std::stod(f[23 - 3])));
      out.push_back(gauge_family("process_resident_memory_bytes", "Resident memory size in bytes.",
                                 std::stod(f[24 - 3]) * page));
      std::ifstream proc_stat("/proc/stat");
      for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0) {
          const double boot = std::stod(line.substr(6));
          out.push_back(gauge_family("process_start_time_seconds",
                                     "Start time of the process since unix epoch in seconds.",
                                     boot + std::stod(f[22 - 3]) / ticks));
          break;
        }
      }
    }
  }
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    int n = 0;
    while (const dirent* e = ::readdir(dir))
      if (e->d_name[0] != '.') ++n;
    ::closedir(dir);
    out.push_back(
        gauge_family("process_open_fds", "Number of open file descriptors.", n - 1));  // minus the DIR's own
  }
  std::ifstream limits("/proc/self/limits");
  for (std::string line; std::getline(limits, line);) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream in(line.substr(14));
      double soft = 0;
      if (in >> soft)
        out.push_back(gauge_family("process_max_fds", "Maximum number of open file descriptors.", soft));
      break;
    }
  }
  return out;
}

}  // namespace

const char* to_string(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSucceeded:
      return "succeeded";
    case Outcome::kRetried:
      return "retried";
    case Outcome::kDead:
      return "dead";
    case Outcome::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* to_string(RestartReason reason) {
  switch (reason) {
    case RestartReason::kDeadline:
      return "deadline";
    case RestartReason::kCrash:
      return "crash";
    case RestartReason::kFatalGpu:
      return "fatal_gpu";
    case RestartReason::kIdle:
      return "idle";
  }
  return "unknown";
}

const char* to_string(DbOp op) {
  switch (op) {
    case DbOp::kReap:
      return "reap";
    case DbOp::kClaim:
      return "claim";
    case DbOp::kHeartbeat:
      return "heartbeat";
    case DbOp::kComplete:
      return "complete";
    case DbOp::kRelease:
      return "release";
    case DbOp::kSample:
      return "sample";
  }
  return "unknown";
}

const char* to_string(FinalState state) {
  switch (state) {
    case FinalState::kSucceeded:
      return "succeeded";
    case FinalState::kDead:
      return "dead";
    case FinalState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

const char* to_string(Stage stage) {
  switch (stage) {
    case Stage::kDispatch:
      return "dispatch";
    case Stage::kDecode:
      return "decode";
    case Stage::kForward:
      return "forward";
    case Stage::kEncode:
      return "encode";
    case Stage::kReturn:
      return "return";
    case Stage::kComplete:
      return "complete";
  }
  return "unknown";
}

struct Metrics::Impl {
  struct QueueSeries {
    Counter* claimed = nullptr;
    std::array<Counter*, kOutcomes.size()> finished{};
    Histogram* wait = nullptr;
    Histogram* run = nullptr;
    Histogram* batch = nullptr;
    std::array<Histogram*, kStages.size()> stages{};
    Counter* deadline = nullptr;
    std::array<Counter*, kReasons.size()> restarts{};
    Gauge* busy = nullptr;
    Gauge* idle = nullptr;
    Gauge* starting = nullptr;
    Gauge* available = nullptr;
    Gauge* running = nullptr;
    Gauge* oldest = nullptr;
    std::array<Counter*, kFinalStates.size()> pruned{};
    std::array<Gauge*, kFinalStates.size()> finished_rows{};
    std::atomic<int> ready{0};  // busy + idle: executors that said Ready
    bool served = true;         // in the configuration now; guarded by queues_mu
  };

  Impl(const util::Clock& c, std::chrono::milliseconds poll) : clock(c), health_bound(3 * poll) {}

  const util::Clock& clock;
  const std::chrono::steady_clock::duration health_bound;
  prometheus::Registry registry;
  // The per-queue families, to add a queue's series to (serve_queues).
  struct QueueFamilies {
    prometheus::Family<Counter>* claimed = nullptr;
    prometheus::Family<Counter>* finished = nullptr;
    prometheus::Family<Histogram>* wait = nullptr;
    prometheus::Family<Histogram>* run = nullptr;
    prometheus::Family<Histogram>* batch = nullptr;
    prometheus::Family<Histogram>* stages = nullptr;
    prometheus::Family<Counter>* deadline = nullptr;
    prometheus::Family<Counter>* restarts = nullptr;
    prometheus::Family<Gauge>* slots = nullptr;
    prometheus::Family<Gauge>* queue_jobs = nullptr;
    prometheus::Family<Gauge>* oldest = nullptr;
    prometheus::Family<Counter>* pruned = nullptr;
    prometheus::Family<Gauge>* finished_rows = nullptr;
  } families;
  // A queue's series are never removed (a scrape keeps its counters), so a
  // QueueSeries* stays valid once found; queues_mu guards the map itself,
  // which a reload grows.
  mutable std::shared_mutex queues_mu;
  std::map<std::string, std::unique_ptr<QueueSeries>> queues;  // guarded by queues_mu
  Counter* leases_reaped = nullptr;
  Counter* reloads_applied = nullptr;
  Counter* reloads_refused = nullptr;
  Histogram* tick_seconds = nullptr;
  Histogram* prune_seconds = nullptr;
  Gauge* last_tick = nullptr;
  Gauge* db_up = nullptr;
  std::array<Counter*, kDbOps.size()> db_errors{};

  std::atomic<bool> ticked{false};
  std::atomic<std::int64_t> last_tick_ns{0};  // steady clock
  std::atomic<bool> db_is_up{false};

  prometheus::Family<Gauge>* unserved_jobs = nullptr;  // fixed after construction
  prometheus::Family<Gauge>* unserved_oldest = nullptr;
  std::mutex unserved_mu;
  std::map<std::string, std::pair<Gauge*, Gauge*>> unserved;  // guarded by unserved_mu

  std::mutex gpu_mu;
  prometheus::Family<Gauge>* gpu_used = nullptr;   // guarded by gpu_mu; created on first sample
  prometheus::Family<Gauge>* gpu_total = nullptr;  // guarded by gpu_mu
  prometheus::Family<Gauge>* gpu_util = nullptr;   // guarded by gpu_mu

  // The series of `queue`, served now or before a reload; null when never served.
  QueueSeries* find(const std::string& queue) const {
    const std::shared_lock lock(queues_mu);
    const auto it = queues.find(queue);
    return it == queues.end() ? nullptr : it->second.get();
  }

  // Creates `name`'s series at 0 unless it has them. Call with queues_mu held.
  void add_queue(const std::string& name) {
    if (queues.count(name)) return;
    const auto& f = families;
    auto q = std::make_unique<QueueSeries>();
    q->claimed = &f.claimed->Add({{"queue", name}});
    for (std::size_t i = 0; i < kOutcomes.size(); ++i)
      q->finished[i] = &f.finished->Add({{"queue", name}, {"outcome", to_string(kOutcomes[i])}});
    q->wait = &f.wait->Add({{"queue", name}}, kWaitBuckets);
    q->run = &f.run->Add({{"queue", name}}, kRunBuckets);
    q->batch = &f.batch->Add({{"queue", name}}, kBatchBuckets);
    for (std::size_t i = 0; i < kStages.size(); ++i)
      q->stages[i] = &f.stages->Add({{"queue", name}, {"stage", to_string(kStages[i])}}, kStageBuckets);
    q->deadline = &f.deadline->Add({{"queue", name}});
    for (std::size_t i = 0; i < kReasons.size(); ++i)
      q->restarts[i] = &f.restarts->Add({{"queue", name}, {"reason", to_string(kReasons[i])}});
    q->busy = &f.slots->Add({{"queue", name}, {"state", "busy"}});
    q->idle = &f.slots->Add({{"queue", name}, {"state", "idle"}});
    q->starting = &f.slots->Add({{"queue", name}, {"state", "starting"}});
    q->available = &f.queue_jobs->Add({{"queue", name}, {"state", "available"}});
    q->running = &f.queue_jobs->Add({{"queue", name}, {"state", "running"}});
    q->oldest = &f.oldest->Add({{"queue", name}});
    for (std::size_t i = 0; i < kFinalStates.size(); ++i) {
      q->pruned[i] = &f.pruned->Add({{"queue", name}, {"state", to_string(kFinalStates[i])}});
      q->finished_rows[i] = &f.finished_rows->Add({{"queue", name}, {"state", to_string(kFinalStates[i])}});
    }
    queues.emplace(name, std::move(q));
  }
};

Metrics::Metrics(const std::vector<std::string>& queues, std::chrono::milliseconds poll_interval,
                 BuildInfo build, const util::Clock& clock)
    : impl_(std::make_unique<Impl>(clock, poll_interval)) {
  auto& r = impl_->registry;
  auto& claimed = prometheus::BuildCounter()
                      .Name("inferq_jobs_claimed_total")
                      .Help("Jobs claimed by this daemon (one attempt each).")
                      .Register(r);
  auto& finished =
      prometheus::BuildCounter()
          .Name("inferq_jobs_finished_total")
          .Help(
              "Job attempts finished by this daemon, by outcome: succeeded, retried (failed, will "
              "run again), dead (failed for good), cancelled.")
          .Register(r);
  auto& wait = prometheus::BuildHistogram()
                   .Name("inferq_job_wait_seconds")
                   .Help("Seconds from a job being ready (created or due) to its claim.")
                   .Register(r);
  auto& run = prometheus::BuildHistogram()
                  .Name("inferq_unit_run_seconds")
                  .Help("Seconds a work unit ran in its executor, however it ended.")
                  .Register(r);
  auto& batch = prometheus::BuildHistogram()
                    .Name("inferq_batch_jobs")
                    .Help("Jobs per work unit handed to an executor.")
                    .Register(r);
  auto& stages = prometheus::BuildHistogram()
                     .Name("inferq_unit_stage_seconds")
                     .Help(
                         "Seconds a work unit spent in each stage: dispatch (claimed to sent to its "
                         "executor), decode, forward, encode (in the executor), return (executor to "
                         "supervisor), complete (handed to the writer to committed).")
                     .Register(r);
  auto& deadline = prometheus::BuildCounter()
                       .Name("inferq_deadline_exceeded_total")
                       .Help("Work units whose executor was killed at the queue's deadline.")
                       .Register(r);
  auto& restarts = prometheus::BuildCounter()
                       .Name("inferq_executor_restarts_total")
                       .Help("Executor processes replaced, by reason: deadline, crash, fatal_gpu, idle.")
                       .Register(r);
  auto& slots = prometheus::BuildGauge()
                    .Name("inferq_slots")
                    .Help(
                        "Executor slots by state: busy (running a unit), idle (ready), starting (starting, "
                        "restarting or exiting).")
                    .Register(r);
  auto& queue_jobs = prometheus::BuildGauge()
                         .Name("inferq_queue_jobs")
                         .Help(
                             "Jobs of the queue in the database by state (available, running), sampled every "
                             "few seconds.")
                         .Register(r);
  auto& oldest =
      prometheus::BuildGauge()
          .Name("inferq_queue_oldest_available_age_seconds")
          .Help("Age of the queue's oldest due available job (0 when none), sampled every few seconds.")
          .Register(r);
  impl_->leases_reaped = &prometheus::BuildCounter()
                              .Name("inferq_leases_reaped_total")
                              .Help("Stale leases (of any daemon) reaped by this daemon.")
                              .Register(r)
                              .Add({});
  auto& reloads = prometheus::BuildCounter()
                      .Name("inferq_config_reloads_total")
                      .Help("Configuration reloads (SIGHUP), by result: applied, refused (the old one kept).")
                      .Register(r);
  impl_->reloads_applied = &reloads.Add({{"result", "applied"}});
  impl_->reloads_refused = &reloads.Add({{"result", "refused"}});
  auto& pruned =
      prometheus::BuildCounter()
          .Name("inferq_jobs_pruned_total")
          .Help("Finished jobs this daemon's janitor deleted past the queue's retention, by state.")
          .Register(r);
  auto& finished_rows = prometheus::BuildGauge()
                            .Name("inferq_queue_finished_jobs")
                            .Help(
                                "Finished jobs of the queue still in the database by state (succeeded, dead, "
                                "cancelled), counted by the janitor about once a minute.")
                            .Register(r);
  impl_->prune_seconds = &prometheus::BuildHistogram()
                              .Name("inferq_prune_seconds")
                              .Help("Seconds one pruning statement (a batch of at most 1000 jobs) took.")
                              .Register(r)
                              .Add({}, kTickBuckets);
  impl_->tick_seconds = &prometheus::BuildHistogram()
                             .Name("inferq_tick_seconds")
                             .Help("Seconds one tick (reap, claim, dispatch) took, not counting its wait.")
                             .Register(r)
                             .Add({}, kTickBuckets);
  impl_->last_tick = &prometheus::BuildGauge()
                          .Name("inferq_last_tick_timestamp_seconds")
                          .Help("Unix time of the last tick.")
                          .Register(r)
                          .Add({});
  impl_->db_up = &prometheus::BuildGauge()
                      .Name("inferq_db_up")
                      .Help("1 when the tick loop's last database statement succeeded, else 0.")
                      .Register(r)
                      .Add({});
  auto& db_errors = prometheus::BuildCounter()
                        .Name("inferq_db_errors_total")
                        .Help("Failed database operations, by operation.")
                        .Register(r);
  for (std::size_t i = 0; i < kDbOps.size(); ++i)
    impl_->db_errors[i] = &db_errors.Add({{"op", to_string(kDbOps[i])}});
  prometheus::BuildGauge()
      .Name("inferq_build_info")
      .Help("Always 1; the labels say what this inferq was built with.")
      .Register(r)
      .Add({{"version", build.version}, {"torch", build.torch}, {"cuda", build.cuda}})
      .Set(1);

  impl_->unserved_jobs =
      &prometheus::BuildGauge()
           .Name("inferq_unserved_queue_jobs")
           .Help("Available jobs of a queue that no live daemon serves (from the backlog sampler).")
           .Register(r);
  impl_->unserved_oldest = &prometheus::BuildGauge()
                                .Name("inferq_unserved_queue_oldest_available_age_seconds")
                                .Help("Age of the oldest due job of a queue that no live daemon serves.")
                                .Register(r);

  impl_->families = {&claimed,  &finished, &wait,       &run,    &batch,  &stages,       &deadline,
                     &restarts, &slots,    &queue_jobs, &oldest, &pruned, &finished_rows};
  serve_queues(queues);
}

void Metrics::serve_queues(const std::vector<std::string>& queues) {
  const std::unique_lock lock(impl_->queues_mu);
  for (const auto& name : queues) impl_->add_queue(name);
  for (auto& [name, q] : impl_->queues) {
    q->served = std::find(queues.begin(), queues.end(), name) != queues.end();
    if (q->served) continue;
    // A queue no longer configured here has no slots (its last units may
    // still be finishing), and readiness does not wait for it.
    q->busy->Set(0);
    q->idle->Set(0);
    q->starting->Set(0);
    q->ready = 0;
  }
}

Metrics::~Metrics() = default;

void Metrics::jobs_claimed(const std::string& queue, const std::vector<double>& wait_seconds) {
  auto* q = impl_->find(queue);
  if (!q) return;
  q->claimed->Increment(static_cast<double>(wait_seconds.size()));
  for (const double w : wait_seconds) q->wait->Observe(w < 0 ? 0 : w);
}

void Metrics::unit_started(const std::string& queue, std::size_t jobs) {
  if (auto* q = impl_->find(queue)) q->batch->Observe(static_cast<double>(jobs));
}

void Metrics::unit_finished(const std::string& queue, double run_seconds) {
  if (auto* q = impl_->find(queue)) q->run->Observe(run_seconds < 0 ? 0 : run_seconds);
}

void Metrics::unit_stage(const std::string& queue, Stage stage, double seconds) {
  if (auto* q = impl_->find(queue)) q->stages[index_of(kStages, stage)]->Observe(seconds < 0 ? 0 : seconds);
}

void Metrics::deadline_exceeded(const std::string& queue) {
  if (auto* q = impl_->find(queue)) q->deadline->Increment();
}

void Metrics::executor_restarted(const std::string& queue, RestartReason reason) {
  if (auto* q = impl_->find(queue)) q->restarts[index_of(kReasons, reason)]->Increment();
}

void Metrics::reload_done(bool applied) {
  (applied ? impl_->reloads_applied : impl_->reloads_refused)->Increment();
}

void Metrics::leases_reaped(int leases) {
  if (leases > 0) impl_->leases_reaped->Increment(leases);
}

void Metrics::set_slots(const std::string& queue, int busy, int idle, int starting) {
  auto* q = impl_->find(queue);
  if (!q) return;
  q->busy->Set(busy);
  q->idle->Set(idle);
  q->starting->Set(starting);
  q->ready = busy + idle;
}

void Metrics::tick_done(double seconds) {
  impl_->tick_seconds->Observe(seconds < 0 ? 0 : seconds);
  impl_->last_tick->Set(seconds_since_epoch(impl_->clock.wall_now()));
  impl_->last_tick_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(impl_->clock.now().time_since_epoch()).count();
  impl_->ticked = true;
}

void Metrics::set_db_up(bool up) {
  impl_->db_is_up = up;
  impl_->db_up->Set(up ? 1 : 0);
}

void Metrics::jobs_finished(const std::string& queue, Outcome outcome, std::int64_t jobs) {
  auto* q = impl_->find(queue);
  if (q && jobs > 0) q->finished[index_of(kOutcomes, outcome)]->Increment(static_cast<double>(jobs));
}

void Metrics::db_error(DbOp op) { impl_->db_errors[index_of(kDbOps, op)]->Increment(); }

void Metrics::set_queue_samples(const std::vector<QueueSample>& samples) {
  for (const auto& s : samples) {
    auto* q = impl_->find(s.queue);
    if (!q) continue;
    q->available->Set(static_cast<double>(s.available));
    q->running->Set(static_cast<double>(s.running));
    q->oldest->Set(s.oldest_available_age_seconds);
  }
}

void Metrics::jobs_pruned(const std::string& queue, FinalState state, std::int64_t rows, double seconds) {
  impl_->prune_seconds->Observe(seconds < 0 ? 0 : seconds);
  auto* q = impl_->find(queue);
  if (q && rows > 0) q->pruned[index_of(kFinalStates, state)]->Increment(static_cast<double>(rows));
}

void Metrics::set_finished_jobs(const std::string& queue, FinalState state, std::int64_t jobs) {
  if (auto* q = impl_->find(queue))
    q->finished_rows[index_of(kFinalStates, state)]->Set(static_cast<double>(jobs));
}

void Metrics::set_unserved_queues(const std::vector<QueueSample>& unserved) {
  std::lock_guard<std::mutex> lock(impl_->unserved_mu);
  auto& series = impl_->unserved;
  for (auto it = series.begin(); it != series.end();) {
    const bool still =
        std::any_of(unserved.begin(), unserved.end(), [&](const auto& u) { return u.queue == it->first; });
    if (still) {
      ++it;
      continue;
    }
    impl_->unserved_jobs->Remove(it->second.first);
    impl_->unserved_oldest->Remove(it->second.second);
    it = series.erase(it);
  }
  for (const auto& u : unserved) {
    auto& g = series[u.queue];
    if (!g.first) {
      g.first = &impl_->unserved_jobs->Add({{"queue", u.queue}});
      g.second = &impl_->unserved_oldest->Add({{"queue", u.queue}});
    }
    g.first->Set(static_cast<double>(u.available));
    g.second->Set(u.oldest_available_age_seconds);
  }
}

void Metrics::set_gpu_samples(const std::vector<GpuSample>& samples) {
  std::lock_guard<std::mutex> lock(impl_->gpu_mu);
  if (!impl_->gpu_used) {
    impl_->gpu_used = &prometheus::BuildGauge()
                           .Name("inferq_gpu_memory_used_bytes")
                           .Help("GPU memory in use (all processes), from NVML.")
                           .Register(impl_->registry);
    impl_->gpu_total = &prometheus::BuildGauge()
                            .Name("inferq_gpu_memory_total_bytes")
                            .Help("GPU memory installed, from NVML.")
                            .Register(impl_->registry);
    impl_->gpu_util = &prometheus::BuildGauge()
                           .Name("inferq_gpu_utilization_ratio")
                           .Help("Fraction of the last sample period the GPU was busy (0..1), from NVML.")
                           .Register(impl_->registry);
  }
  for (const auto& g : samples) {
    const prometheus::Labels labels{{"gpu", std::to_string(g.index)}, {"uuid", g.uuid}};
    impl_->gpu_used->Add(labels).Set(g.memory_used_bytes);
    impl_->gpu_total->Add(labels).Set(g.memory_total_bytes);
    impl_->gpu_util->Add(labels).Set(g.utilization_ratio);
  }
}

std::string Metrics::expose() const {
  auto families = impl_->registry.Collect();
  for (auto& f : process_families()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

Health Metrics::liveness() const {
  if (!impl_->ticked) return {false, "the tick loop has not started"};
  const auto last =
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(impl_->last_tick_ns.load()));
  const auto age = impl_->clock.now() - last;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
  if (age > impl_->health_bound) {
    return {false,
            "the tick loop last ticked " + std::to_string(ms) + " ms ago (bound " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(impl_->health_bound).count()) +
                " ms)"};
  }
  return {true, "the tick loop ticked " + std::to_string(ms) + " ms ago"};
}

Health Metrics::readiness() const {
  if (!impl_->db_is_up) return {false, "the database is unreachable"};
  const std::shared_lock lock(impl_->queues_mu);
  for (const auto& [name, q] : impl_->queues) {
    if (q->served && q->ready.load() < 1) return {false, "queue " + name + " has no ready executor"};
  }
  return {true, "the database is reachable and every queue has a ready executor"};
}

}  // namespace inferq::metrics
