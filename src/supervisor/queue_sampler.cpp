#include "supervisor/queue_sampler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "db/error.hpp"
#include "db/queue_ops.hpp"

namespace inferq::supervisor {

std::chrono::milliseconds next_sample_wait(std::chrono::milliseconds interval,
                                           std::chrono::milliseconds took) {
  return std::max(interval, kSampleDutyFactor * took);
}

QueueSampler::QueueSampler(std::string db_url, std::vector<std::string> queues,
                           std::chrono::milliseconds interval, metrics::Metrics& metrics)
    // The statement timeout bounds a sample on a huge backlog; a sample that
    // times out is skipped, the next one tries again.
    : session_(std::move(db_url), "inferq backlog sampler",
               std::max(interval, std::chrono::milliseconds(1000))),
      queues_(std::move(queues)),
      interval_(interval),
      metrics_(metrics) {}

QueueSampler::~QueueSampler() { stop(); }

void QueueSampler::start() {
  thread_ = std::thread([this] { loop(); });
}

void QueueSampler::stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void QueueSampler::loop() {
  bool was_failing = false;
  for (;;) {
    const auto started = std::chrono::steady_clock::now();
    // Only a sample that ran stretches the wait: after an outage (a connect
    // that timed out) the next sample should come at the usual interval.
    std::chrono::milliseconds took{0};
    try {
      const auto backlog = db::sample_backlog(session_, queues_);
      std::vector<metrics::QueueSample> samples;
      samples.reserve(backlog.size());
      for (const auto& b : backlog)
        samples.push_back({b.queue, b.available, b.running, b.oldest_available_age_seconds});
      metrics_.set_queue_samples(samples);
      took =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      if (was_failing) spdlog::info("backlog sampler: sampling again");
      was_failing = false;
    } catch (const db::DbError& e) {
      metrics_.db_error(metrics::DbOp::kSample);
      if (!was_failing) spdlog::warn("backlog sampler: {}; keeping the last sample", e.what());
      was_failing = true;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, next_sample_wait(interval_, took), [&] { return stop_; })) return;
  }
}

}  // namespace inferq::supervisor
