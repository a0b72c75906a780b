#pragma once

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "metrics/metrics.hpp"
#include "util/periodic_thread.hpp"

namespace inferq::supervisor {

// A sample reads every available job through the partial indexes (never the
// finished ones), so it costs more as the backlog grows (about 0.6 s at
// 700,000 jobs), and its snapshot holds back what VACUUM
// may remove meanwhile. The sampler therefore waits at least this many times
// as long as its last successful sample took: at most 1/(1+k) of one
// backend, whatever the backlog.
constexpr int kSampleDutyFactor = 20;

// How long to wait after a sample that took `took`: `interval`, or
// kSampleDutyFactor x `took` when that is longer.
std::chrono::milliseconds next_sample_wait(std::chrono::milliseconds interval,
                                           std::chrono::milliseconds took);

// The backlog sampler thread: every next_sample_wait(), counts the configured
// queues' available and running jobs and the age of the oldest due one, on
// a connection of its own, into inferq_queue_jobs and
// inferq_queue_oldest_available_age_seconds. Scrapes never query the
// database; they read what this thread last stored. A failed sample counts
// inferq_db_errors_total{op="sample"} and keeps the previous values.
//
// Each sample also finds the queues, any queue, with available jobs that no
// worker seen within `live_within` (stale_after) serves, into
// inferq_unserved_queue_jobs, and warns once when such a queue's oldest due
// job has waited longer than `live_within` (a daemon starting up has
// registered by then): a producer's typo would otherwise wait in silence.
class QueueSampler {
 public:
  QueueSampler(std::string db_url, std::vector<std::string> queues, std::chrono::milliseconds interval,
               std::chrono::milliseconds live_within, metrics::Metrics& metrics);
  ~QueueSampler();
  QueueSampler(const QueueSampler&) = delete;
  QueueSampler& operator=(const QueueSampler&) = delete;

  void start();
  void stop() noexcept;  // idempotent; returns promptly unless a statement is running
  // Thread-safe: samples `queues` from the next sample on (a reload).
  void set_queues(std::vector<std::string> queues);

 private:
  // One sample; returns the wait before the next.
  std::chrono::milliseconds sample();
  // Metrics and warnings from one sample of the unserved queues.
  void report_unserved(const std::vector<db::QueueBacklog>& unserved);

  db::Session session_;
  std::vector<std::string> queues_;  // guarded by mu_
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds live_within_;
  metrics::Metrics& metrics_;
  std::set<std::string> warned_;  // unserved queues warned about; the thread's own
  bool was_failing_ = false;      // the thread's own
  std::mutex mu_;
  util::PeriodicThread thread_;
};

}  // namespace inferq::supervisor
