#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util/clock.hpp"

// The daemon's Prometheus metrics and health state. The only folder that
// includes prometheus-cpp and cpp-httplib; no type of theirs leaves it.
// Every method is thread-safe and cheap (atomics, or prometheus-cpp's own
// short locks): the tick, the writer threads and the HTTP threads call them
// concurrently, and none of them blocks on I/O.
namespace inferq::metrics {

// How a job's attempt ended, as inferq_jobs_finished_total{outcome} counts it.
enum class Outcome { kSucceeded, kRetried, kDead, kCancelled };

// Why an executor process was replaced (inferq_executor_restarts_total{reason}).
enum class RestartReason {
  kDeadline,  // killed at its unit's deadline
  kCrash,     // died, or misbehaved and was killed (exit, signal, bad frame, start-up timeout)
  kFatalGpu,  // reported an error fatal to its process (a sticky CUDA error)
  kIdle,      // exited after idle_exit_after to release its GPU memory
};

// A database operation, as inferq_db_errors_total{op} counts its failures.
enum class DbOp { kReap, kClaim, kHeartbeat, kComplete, kRelease, kSample };

// A stage of a work unit, as inferq_unit_stage_seconds{stage} times it.
enum class Stage {
  kDispatch,  // claimed to sent to its executor (a prefetched unit waits here)
  kDecode,    // payloads to input tensors, in the executor
  kForward,   // the forward pass with its outputs on the host (a built-in: its run)
  kEncode,    // outputs to result documents, in the executor
  kReturn,    // the executor's write of the result to the supervisor's read
  kComplete,  // handed to the completion writer to committed
};

// A final state whose jobs retention deletes (inferq_jobs_pruned_total{state}).
enum class FinalState { kSucceeded, kDead, kCancelled };

// The labels of inferq_build_info.
struct BuildInfo {
  std::string version;
  std::string torch = "none";
  std::string cuda = "none";
};

// One queue's backlog as sampled from the database.
struct QueueSample {
  std::string queue;
  std::int64_t available = 0;  // including jobs waiting for their run_at
  std::int64_t running = 0;
  double oldest_available_age_seconds = 0;  // due jobs only; 0 when none
};

// One GPU as read through NVML.
struct GpuSample {
  int index = 0;
  std::string uuid;
  double memory_used_bytes = 0;
  double memory_total_bytes = 0;
  double utilization_ratio = 0;  // 0..1
};

// A health verdict for /healthz or /readyz: ok, and a short reason.
struct Health {
  bool ok = false;
  std::string reason;
};

// The names inferq uses for each enum value (label values).
const char* to_string(Outcome outcome);
const char* to_string(RestartReason reason);
const char* to_string(DbOp op);
const char* to_string(Stage stage);
const char* to_string(FinalState state);  // as inferq.job_state spells it

class Metrics {
 public:
  // Creates every family, and every series the issue wants present from the
  // start at 0, for each of `queues`. `poll_interval` sets the /healthz
  // bound (three intervals). Calls naming a queue never served are ignored.
  Metrics(const std::vector<std::string>& queues, std::chrono::milliseconds poll_interval, BuildInfo build,
          const util::Clock& clock = util::SystemClock::instance());
  ~Metrics();
  Metrics(const Metrics&) = delete;

  // A reload: `queues` are the queues served from now on. New ones get their
  // series at 0; the others keep theirs (counters do not go back), but
  // readiness no longer waits for them and their slots read 0.
  void serve_queues(const std::vector<std::string>& queues);
  // A reload (SIGHUP) was applied (true) or refused (false).
  void reload_done(bool applied);
  Metrics& operator=(const Metrics&) = delete;

  // --- tick loop ---
  // `wait_seconds` holds, per claimed job, how long it had been due.
  void jobs_claimed(const std::string& queue, const std::vector<double>& wait_seconds);
  // A unit was handed to an executor with `jobs` jobs.
  void unit_started(const std::string& queue, std::size_t jobs);
  // A unit ended (result, failure, deadline or crash) `run_seconds` after it started.
  void unit_finished(const std::string& queue, double run_seconds);
  // One unit spent `seconds` in `stage` (any thread).
  void unit_stage(const std::string& queue, Stage stage, double seconds);
  void deadline_exceeded(const std::string& queue);
  // The one call for every executor replacement; the reasons fatal_gpu and
  // idle are fed by the executor code paths that detect them.
  void executor_restarted(const std::string& queue, RestartReason reason);
  void leases_reaped(int leases);
  // The queue's slots by state right now.
  void set_slots(const std::string& queue, int busy, int idle, int starting);
  // A tick (reap, claim, dispatch; not its wait) took `seconds`; marks the
  // tick loop alive for /healthz.
  void tick_done(double seconds);
  // The tick's own connection worked (true) or failed (false): inferq_db_up
  // and /readyz.
  void set_db_up(bool up);

  // --- other threads ---
  void jobs_finished(const std::string& queue, Outcome outcome, std::int64_t jobs);
  void db_error(DbOp op);
  void set_queue_samples(const std::vector<QueueSample>& samples);
  // inferq_unserved_queue_jobs: one series per queue in `unserved` (any
  // queue, configured here or not); the series of queues served again go.
  void set_unserved_queues(const std::vector<QueueSample>& unserved);
  // The janitor deleted `rows` finished jobs of `queue` in `state` with one
  // statement that took `seconds`.
  void jobs_pruned(const std::string& queue, FinalState state, std::int64_t rows, double seconds);
  // The queue's finished jobs in `state` still in inferq.jobs, as counted now.
  void set_finished_jobs(const std::string& queue, FinalState state, std::int64_t jobs);
  // Creates the GPU series on the first call (absent until then) and sets them.
  void set_gpu_samples(const std::vector<GpuSample>& samples);

  // --- HTTP side; read only atomics and the registry ---
  // The text exposition format 0.0.4 of every metric.
  std::string expose() const;
  // 200 while the tick loop has ticked within three poll intervals.
  Health liveness() const;
  // 200 when the database is up and every queue has a ready executor.
  Health readiness() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferq::metrics
