#include "config/compare.hpp"

#include <tuple>

namespace inferq::config {
namespace {

// Every field, so that a key added to a struct and not here shows in review
// beside the struct's own fields; test_config_compare changes each one.
auto fields(const RetentionSettings& r) { return std::tie(r.succeeded, r.cancelled, r.dead); }
auto fields(const RetrySettings& r) { return std::tie(r.max_attempts, r.backoff, r.max_backoff); }
auto fields(const BatchSettings& b) { return std::tie(b.max_jobs, b.max_bytes, b.max_wait); }
auto fields(const ModelInput& i) { return std::tie(i.name, i.datatype, i.shape, i.pad, i.allow_non_finite); }

template <typename T>
bool same(const T& a, const T& b) {
  return fields(a) == fields(b);
}

template <typename T>
bool same_all(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

bool same_outputs(const std::vector<ModelOutput>& a, const std::vector<ModelOutput>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name) return false;
  return true;
}

}  // namespace

bool same_executor_settings(const QueueSettings& a, const QueueSettings& b) {
  return std::tie(a.name, a.handler, a.deadline, a.prefetch, a.model, a.device, a.threads,
                  a.binary_data_output, a.extra_libraries, a.idle_exit_after,
                  a.sink) == std::tie(b.name, b.handler, b.deadline, b.prefetch, b.model, b.device, b.threads,
                                      b.binary_data_output, b.extra_libraries, b.idle_exit_after, b.sink) &&
         same(a.batch, b.batch) && same(a.retry, b.retry) && same(a.retention, b.retention) &&
         same_all(a.inputs, b.inputs) && same_outputs(a.outputs, b.outputs);
}

std::vector<std::string> restart_only_changes(const Settings& running, const Settings& next) {
  std::vector<std::string> changed;
  const auto& d0 = running.database;
  const auto& d1 = next.database;
  if (std::tie(d0.url, d0.transaction_pooling) != std::tie(d1.url, d1.transaction_pooling))
    changed.emplace_back("database");
  const auto& w0 = running.worker;
  const auto& w1 = next.worker;
  if (std::tie(w0.poll_interval, w0.heartbeat_interval, w0.stale_after, w0.shutdown_grace, w0.executor_path,
               w0.vacuum_dead_rows) != std::tie(w1.poll_interval, w1.heartbeat_interval, w1.stale_after,
                                                w1.shutdown_grace, w1.executor_path, w1.vacuum_dead_rows))
    changed.emplace_back("worker");
  if (running.metrics.listen != next.metrics.listen) changed.emplace_back("metrics");
  if (std::tie(running.logging.level, running.logging.format) !=
      std::tie(next.logging.level, next.logging.format))
    changed.emplace_back("logging");
  return changed;
}

}  // namespace inferq::config
