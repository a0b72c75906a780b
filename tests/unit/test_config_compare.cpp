// What a reload compares (src/config/compare): every key of a queue but
// `instances` decides whether its executors are replaced, and the sections a
// reload does not apply are named.
#include <doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "config/compare.hpp"

using inferq::config::QueueSettings;
using inferq::config::restart_only_changes;
using inferq::config::same_executor_settings;
using inferq::config::Settings;
using std::chrono::milliseconds;

namespace {

QueueSettings model_queue() {
  QueueSettings q;
  q.name = "text";
  q.model = "/models/text.pt";
  q.inputs = {{"ids", "INT64", {-1}, 0, false}};
  q.outputs = {{"scores"}};
  q.extra_libraries = {"/lib/ops.so"};
  q.sink = "app.save";
  return q;
}

}  // namespace

TEST_CASE("same_executor_settings: a copy is the same, whatever its instances") {
  const QueueSettings a = model_queue();
  QueueSettings b = a;
  CHECK(same_executor_settings(a, b));
  b.instances = 7;
  CHECK(same_executor_settings(a, b));
}

TEST_CASE("same_executor_settings: each key alone makes the queue changed") {
  const std::vector<std::pair<std::string, std::function<void(QueueSettings&)>>> changes = {
      {"name", [](QueueSettings& q) { q.name = "other"; }},
      {"handler", [](QueueSettings& q) { q.handler = "builtin:echo"; }},
      {"batch.max_jobs", [](QueueSettings& q) { q.batch.max_jobs = 3; }},
      {"batch.max_bytes", [](QueueSettings& q) { q.batch.max_bytes = 4096; }},
      {"batch.max_wait", [](QueueSettings& q) { q.batch.max_wait = milliseconds(5); }},
      {"deadline", [](QueueSettings& q) { q.deadline = milliseconds(1); }},
      {"prefetch", [](QueueSettings& q) { q.prefetch = !q.prefetch; }},
      {"retry.max_attempts", [](QueueSettings& q) { q.retry.max_attempts = 1; }},
      {"retry.backoff", [](QueueSettings& q) { q.retry.backoff = milliseconds(7); }},
      {"retry.max_backoff", [](QueueSettings& q) { q.retry.max_backoff = milliseconds(8); }},
      {"model", [](QueueSettings& q) { q.model = "/models/other.pt"; }},
      {"device", [](QueueSettings& q) { q.device = "cuda:1"; }},
      {"threads", [](QueueSettings& q) { q.threads = 3; }},
      {"inputs[].name", [](QueueSettings& q) { q.inputs[0].name = "tokens"; }},
      {"inputs[].datatype", [](QueueSettings& q) { q.inputs[0].datatype = "INT32"; }},
      {"inputs[].shape", [](QueueSettings& q) { q.inputs[0].shape = {8}; }},
      {"inputs[].pad", [](QueueSettings& q) { q.inputs[0].pad = 1; }},
      {"inputs[].allow_non_finite", [](QueueSettings& q) { q.inputs[0].allow_non_finite = true; }},
      {"inputs (one more)", [](QueueSettings& q) { q.inputs.push_back(q.inputs[0]); }},
      {"outputs", [](QueueSettings& q) { q.outputs[0].name = "logits"; }},
      {"binary_data_output", [](QueueSettings& q) { q.binary_data_output = true; }},
      {"extra_libraries", [](QueueSettings& q) { q.extra_libraries.clear(); }},
      {"idle_exit_after", [](QueueSettings& q) { q.idle_exit_after = milliseconds(0); }},
      {"sink", [](QueueSettings& q) { q.sink.clear(); }},
      {"retention.succeeded", [](QueueSettings& q) { q.retention.succeeded = milliseconds(1); }},
      {"retention.cancelled", [](QueueSettings& q) { q.retention.cancelled = milliseconds(1); }},
      {"retention.dead", [](QueueSettings& q) { q.retention.dead = milliseconds(1); }},
  };
  for (const auto& [key, change] : changes) {
    CAPTURE(key);
    QueueSettings b = model_queue();
    change(b);
    CHECK_FALSE(same_executor_settings(model_queue(), b));
  }
}

TEST_CASE("restart_only_changes names the sections a reload does not apply") {
  const Settings a;
  CHECK(restart_only_changes(a, a).empty());
  Settings b = a;
  b.queues.push_back(model_queue());  // queues are what a reload applies
  b.retention.dead = milliseconds(1);
  CHECK(restart_only_changes(a, b).empty());
  b.database.url = "postgresql://elsewhere/inferq";
  b.worker.poll_interval = milliseconds(5);
  b.logging.level = "debug";
  CHECK(restart_only_changes(a, b) == std::vector<std::string>{"database", "worker", "logging"});
  Settings c = a;
  c.metrics.listen = "0.0.0.0:1";
  c.database.transaction_pooling = true;
  c.worker.vacuum_dead_rows = 0;
  CHECK(restart_only_changes(a, c) == std::vector<std::string>{"database", "worker", "metrics"});
}
