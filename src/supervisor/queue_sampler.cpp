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
                           std::chrono::milliseconds interval, std::chrono::milliseconds live_within,
                           metrics::Metrics& metrics)
    // The statement timeout bounds a sample on a huge backlog; a sample that
    // times out is skipped, the next one tries again.
    : session_(std::move(db_url), "inferq backlog sampler",
               std::max(interval, std::chrono::milliseconds(1000))),
      queues_(std::move(queues)),
      interval_(interval),
      live_within_(live_within),
      metrics_(metrics) {}

QueueSampler::~QueueSampler() { stop(); }

void QueueSampler::start() {
  thread_.start([this] { return sample(); });
}

void QueueSampler::stop() noexcept { thread_.stop(); }

void QueueSampler::set_queues(std::vector<std::string> queues) {
  const std::lock_guard<std::mutex> lock(mu_);
  queues_ = std::move(queues);
}

std::chrono::milliseconds QueueSampler::sample() {
  const auto started = std::chrono::steady_clock::now();
  // Only a sample that ran stretches the wait: after an outage (a connect
  // that timed out) the next sample should come at the usual interval.
  std::chrono::milliseconds took{0};
  try {
    std::vector<std::string> queues;
    {
      const std::lock_guard<std::mutex> lock(mu_);
      queues = queues_;
    }
    const auto backlog = db::sample_backlog(session_, queues);
    std::vector<metrics::QueueSample> samples;
    samples.reserve(backlog.size());
    for (const auto& b : backlog)
      samples.push_back({b.queue, b.available, b.running, b.oldest_available_age_seconds});
    metrics_.set_queue_samples(samples);
    report_unserved(db::sample_unserved(session_, live_within_));
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    if (was_failing_) spdlog::info("backlog sampler: sampling again");
    was_failing_ = false;
  } catch (const db::DbError& e) {
    metrics_.db_error(metrics::DbOp::kSample);
    if (!was_failing_) spdlog::warn("backlog sampler: {}; keeping the last sample", e.what());
    was_failing_ = true;
  }
  return next_sample_wait(interval_, took);
}

void QueueSampler::report_unserved(const std::vector<db::QueueBacklog>& unserved) {
  std::vector<metrics::QueueSample> samples;
  const double warn_after = std::chrono::duration<double>(live_within_).count();
  for (const auto& u : unserved) {
    samples.push_back({u.queue, u.available, 0, u.oldest_available_age_seconds});
    if (u.oldest_available_age_seconds > warn_after && warned_.insert(u.queue).second)
      spdlog::warn(
          "queue {} has {} available job(s), the oldest due for {:.0f} s, and no live daemon serves it: "
          "check the "
          "queue name its producer uses, or configure a daemon for it",
          u.queue, u.available, u.oldest_available_age_seconds);
  }
  for (auto it = warned_.begin(); it != warned_.end();) {
    const bool still =
        std::any_of(unserved.begin(), unserved.end(), [&](const auto& u) { return u.queue == *it; });
    if (still) {
      ++it;
      continue;
    }
    spdlog::info("queue {} is served again, or has no available jobs left", *it);
    it = warned_.erase(it);
  }
  metrics_.set_unserved_queues(samples);
}

}  // namespace inferq::supervisor
