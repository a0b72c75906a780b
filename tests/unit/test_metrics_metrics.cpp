// src/metrics/metrics: every family and pre-created series is in the
// exposition from the start, the typed methods move the right series, and the
// health verdicts follow the tick and the slots (a manual clock, no sleeps).
#include "metrics/metrics.hpp"

#include <doctest.h>

#include <string>

#include "support/http_get.hpp"
#include "util/clock.hpp"

namespace {

using inferq::metrics::BuildInfo;
using inferq::metrics::DbOp;
using inferq::metrics::Metrics;
using inferq::metrics::Outcome;
using inferq::metrics::RestartReason;
using inferq::metrics::Stage;
using inferq::test::metric_value;
using namespace std::chrono_literals;

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("the exposition holds every family and every pre-created label value at 0") {
  Metrics m({"echo", "sleep"}, 1000ms, BuildInfo{"1.2.3", "1.13.0", "none"});
  const std::string text = m.expose();
  for (const char* family : {"inferq_jobs_claimed_total",
                             "inferq_jobs_finished_total",
                             "inferq_job_wait_seconds",
                             "inferq_unit_run_seconds",
                             "inferq_batch_jobs",
                             "inferq_unit_stage_seconds",
                             "inferq_deadline_exceeded_total",
                             "inferq_executor_restarts_total",
                             "inferq_leases_reaped_total",
                             "inferq_slots",
                             "inferq_tick_seconds",
                             "inferq_last_tick_timestamp_seconds",
                             "inferq_queue_jobs",
                             "inferq_queue_oldest_available_age_seconds",
                             "inferq_db_up",
                             "inferq_db_errors_total",
                             "inferq_build_info",
                             "process_resident_memory_bytes",
                             "process_cpu_seconds_total",
                             "process_open_fds",
                             "process_start_time_seconds"}) {
    CAPTURE(family);
    CHECK(has(text, std::string("# TYPE ") + family + " "));
  }
  // Label names print in alphabetical order.
  for (const std::string q : {"echo", "sleep"}) {
    CAPTURE(q);
    CHECK(metric_value(text, "inferq_jobs_claimed_total{queue=\"" + q + "\"}") == 0);
    for (const char* outcome : {"succeeded", "retried", "dead", "cancelled"})
      CHECK(metric_value(text, "inferq_jobs_finished_total{outcome=\"" + std::string(outcome) +
                                   "\",queue=\"" + q + "\"}") == 0);
    for (const char* reason : {"deadline", "crash", "fatal_gpu", "idle"})
      CHECK(metric_value(
                text, "inferq_executor_restarts_total{queue=\"" + q + "\",reason=\"" + reason + "\"}") == 0);
    for (const char* state : {"busy", "idle", "starting"})
      CHECK(metric_value(text, "inferq_slots{queue=\"" + q + "\",state=\"" + state + "\"}") == 0);
    for (const char* state : {"available", "running"})
      CHECK(metric_value(text, "inferq_queue_jobs{queue=\"" + q + "\",state=\"" + state + "\"}") == 0);
    CHECK(metric_value(text, "inferq_deadline_exceeded_total{queue=\"" + q + "\"}") == 0);
    CHECK(metric_value(text, "inferq_queue_oldest_available_age_seconds{queue=\"" + q + "\"}") == 0);
    CHECK(metric_value(text, "inferq_job_wait_seconds_count{queue=\"" + q + "\"}") == 0);
    CHECK(metric_value(text, "inferq_unit_run_seconds_count{queue=\"" + q + "\"}") == 0);
    CHECK(metric_value(text, "inferq_batch_jobs_count{queue=\"" + q + "\"}") == 0);
    for (const char* stage : {"dispatch", "decode", "forward", "encode", "return", "complete"})
      CHECK(metric_value(
                text, "inferq_unit_stage_seconds_count{queue=\"" + q + "\",stage=\"" + stage + "\"}") == 0);
  }
  for (const char* op : {"reap", "claim", "heartbeat", "complete", "release", "sample"})
    CHECK(metric_value(text, "inferq_db_errors_total{op=\"" + std::string(op) + "\"}") == 0);
  CHECK(metric_value(text, "inferq_leases_reaped_total") == 0);
  CHECK(metric_value(text, "inferq_db_up") == 0);
  CHECK(metric_value(text, "inferq_tick_seconds_count") == 0);
  CHECK(metric_value(text, "inferq_build_info{cuda=\"none\",torch=\"1.13.0\",version=\"1.2.3\"}") == 1);
  CHECK(metric_value(text, "process_resident_memory_bytes").value_or(0) > 0);
  CHECK(metric_value(text, "process_open_fds").value_or(0) >= 3);
  CHECK(metric_value(text, "process_start_time_seconds").value_or(0) > 1.6e9);
  // No GPU series before a GPU sample (here: never, there is no NVML).
  CHECK_FALSE(has(text, "inferq_gpu_"));
}

TEST_CASE("the typed methods move their series and ignore unknown queues") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  m.jobs_claimed("q", {0.5, 2.0, -1.0});
  m.unit_started("q", 3);
  m.unit_finished("q", 0.25);
  m.unit_stage("q", Stage::kForward, 0.5);
  m.unit_stage("q", Stage::kForward, 0.25);
  m.unit_stage("q", Stage::kReturn, -0.001);  // clocks a hair apart count as 0
  m.unit_stage("unknown", Stage::kDecode, 1);
  m.jobs_finished("q", Outcome::kSucceeded, 2);
  m.jobs_finished("q", Outcome::kRetried, 1);
  m.jobs_finished("q", Outcome::kDead, 4);
  m.jobs_finished("q", Outcome::kCancelled, 5);
  m.deadline_exceeded("q");
  m.executor_restarted("q", RestartReason::kDeadline);
  m.executor_restarted("q", RestartReason::kCrash);
  m.executor_restarted("q", RestartReason::kCrash);
  m.executor_restarted("q", RestartReason::kFatalGpu);
  m.executor_restarted("q", RestartReason::kIdle);
  m.leases_reaped(7);
  m.set_slots("q", 1, 2, 3);
  m.tick_done(0.002);
  m.set_db_up(true);
  m.db_error(DbOp::kHeartbeat);
  m.set_queue_samples({{"q", 11, 2, 42.5}, {"unknown", 1, 1, 1}});
  m.jobs_claimed("unknown", {1.0});
  m.executor_restarted("unknown", RestartReason::kCrash);

  const std::string t = m.expose();
  CHECK(metric_value(t, "inferq_jobs_claimed_total{queue=\"q\"}") == 3);
  CHECK(metric_value(t, "inferq_job_wait_seconds_count{queue=\"q\"}") == 3);
  CHECK(metric_value(t, "inferq_job_wait_seconds_sum{queue=\"q\"}") == 2.5);  // a negative wait counts as 0
  CHECK(metric_value(t, "inferq_batch_jobs_sum{queue=\"q\"}") == 3);
  CHECK(metric_value(t, "inferq_unit_run_seconds_sum{queue=\"q\"}") == 0.25);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_count{queue=\"q\",stage=\"forward\"}") == 2);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_sum{queue=\"q\",stage=\"forward\"}") == 0.75);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_bucket{queue=\"q\",stage=\"forward\",le=\"0.5\"}") == 2);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_bucket{queue=\"q\",stage=\"forward\",le=\"0.25\"}") == 1);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_sum{queue=\"q\",stage=\"return\"}") == 0);
  CHECK(metric_value(t, "inferq_unit_stage_seconds_count{queue=\"q\",stage=\"decode\"}") == 0);
  CHECK(metric_value(t, "inferq_jobs_finished_total{outcome=\"succeeded\",queue=\"q\"}") == 2);
  CHECK(metric_value(t, "inferq_jobs_finished_total{outcome=\"retried\",queue=\"q\"}") == 1);
  CHECK(metric_value(t, "inferq_jobs_finished_total{outcome=\"dead\",queue=\"q\"}") == 4);
  CHECK(metric_value(t, "inferq_jobs_finished_total{outcome=\"cancelled\",queue=\"q\"}") == 5);
  CHECK(metric_value(t, "inferq_deadline_exceeded_total{queue=\"q\"}") == 1);
  CHECK(metric_value(t, "inferq_executor_restarts_total{queue=\"q\",reason=\"deadline\"}") == 1);
  CHECK(metric_value(t, "inferq_executor_restarts_total{queue=\"q\",reason=\"crash\"}") == 2);
  CHECK(metric_value(t, "inferq_executor_restarts_total{queue=\"q\",reason=\"fatal_gpu\"}") == 1);
  CHECK(metric_value(t, "inferq_executor_restarts_total{queue=\"q\",reason=\"idle\"}") == 1);
  CHECK(metric_value(t, "inferq_leases_reaped_total") == 7);
  CHECK(metric_value(t, "inferq_slots{queue=\"q\",state=\"busy\"}") == 1);
  CHECK(metric_value(t, "inferq_slots{queue=\"q\",state=\"idle\"}") == 2);
  CHECK(metric_value(t, "inferq_slots{queue=\"q\",state=\"starting\"}") == 3);
  CHECK(metric_value(t, "inferq_tick_seconds_count") == 1);
  CHECK(metric_value(t, "inferq_last_tick_timestamp_seconds").value_or(0) > 1.6e9);
  CHECK(metric_value(t, "inferq_db_up") == 1);
  CHECK(metric_value(t, "inferq_db_errors_total{op=\"heartbeat\"}") == 1);
  CHECK(metric_value(t, "inferq_queue_jobs{queue=\"q\",state=\"available\"}") == 11);
  CHECK(metric_value(t, "inferq_queue_jobs{queue=\"q\",state=\"running\"}") == 2);
  CHECK(metric_value(t, "inferq_queue_oldest_available_age_seconds{queue=\"q\"}") == 42.5);
  CHECK_FALSE(has(t, "unknown"));
}

TEST_CASE("GPU series appear with the first sample, labelled by index and UUID") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  CHECK_FALSE(has(m.expose(), "inferq_gpu_"));
  m.set_gpu_samples({{0, "GPU-aaaa", 1e9, 8e9, 0.5}, {1, "GPU-bbbb", 2e9, 8e9, 0.25}});
  const std::string t = m.expose();
  CHECK(metric_value(t, "inferq_gpu_memory_used_bytes{gpu=\"0\",uuid=\"GPU-aaaa\"}") == 1e9);
  CHECK(metric_value(t, "inferq_gpu_memory_total_bytes{gpu=\"1\",uuid=\"GPU-bbbb\"}") == 8e9);
  CHECK(metric_value(t, "inferq_gpu_utilization_ratio{gpu=\"1\",uuid=\"GPU-bbbb\"}") == 0.25);
}

TEST_CASE("liveness follows the tick: not started, fresh, then older than three poll intervals") {
  inferq::util::ManualClock clock;
  Metrics m({"q"}, 200ms, BuildInfo{"v"}, clock);
  CHECK_FALSE(m.liveness().ok);
  CHECK(m.liveness().reason == "the tick loop has not started");
  m.tick_done(0.001);
  CHECK(m.liveness().ok);
  clock.advance(600ms);  // exactly three intervals: still alive
  CHECK(m.liveness().ok);
  clock.advance(1ms);
  const auto h = m.liveness();
  CHECK_FALSE(h.ok);
  CHECK(has(h.reason, "the tick loop last ticked 601 ms ago"));
  m.tick_done(0.001);
  CHECK(m.liveness().ok);
}

TEST_CASE("readiness needs the database and a ready executor in every queue") {
  Metrics m({"a", "b"}, 1000ms, BuildInfo{"v"});
  CHECK(m.readiness().reason == "the database is unreachable");
  m.set_db_up(true);
  CHECK_FALSE(m.readiness().ok);
  CHECK(m.readiness().reason == "queue a has no ready executor");
  m.set_slots("a", 0, 1, 0);
  CHECK(m.readiness().reason == "queue b has no ready executor");
  m.set_slots("b", 1, 0, 1);  // busy counts: its executor said Ready
  CHECK(m.readiness().ok);
  m.set_slots("b", 0, 0, 2);  // only starting
  CHECK_FALSE(m.readiness().ok);
  m.set_slots("b", 0, 1, 1);
  m.set_db_up(false);
  CHECK(m.readiness().reason == "the database is unreachable");
}
