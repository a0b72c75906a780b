// The short-lived commands: migrate, enqueue, status, cancel.
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "app/commands.hpp"
#include "db/error.hpp"
#include "db/listener.hpp"
#include "db/migrate.hpp"
#include "db/producer_ops.hpp"
#include "db/session.hpp"
#include "db/status_ops.hpp"
#include "util/duration.hpp"
#include "util/json_text.hpp"

namespace inferq::app {
namespace {

// Every statement of enqueue, status and cancel is bounded, so a row lock
// held by another transaction or a stalled server makes the command fail
// with the server's reason instead of hanging a shell or a cron job.
// migrate is not: a migration may rightly take longer than any fixed bound.
constexpr std::chrono::milliseconds kClientStatementTimeout{30'000};

int db_failure(const db::DbError& e) {
  std::cerr << "inferq: " << e.what() << "\n";
  return kExitFailure;
}

using util::json_string;

std::string seconds_text(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(s < 10 ? 1 : 0) << s << "s";
  return o.str();
}

}  // namespace

int cmd_migrate(const config::Settings& settings) {
  try {
    db::Session session(settings.database.url, "inferq migrate");
    const auto report = db::migrate(session);
    if (report.applied.empty()) {
      if (report.functions_applied) std::cout << "applied the functions of this inferq\n";
      std::cout << "schema is current at version " << report.to_version << "\n";
    } else {
      for (const auto& name : report.applied) std::cout << "applied " << name << "\n";
      std::cout << "schema migrated from version " << report.from_version << " to " << report.to_version
                << "\n";
    }
    return kExitOk;
  } catch (const db::DbError& e) {
    return db_failure(e);
  }
}

int cmd_enqueue(const config::Settings& settings, const EnqueueOptions& options) {
  try {
    db::Session session(settings.database.url, "inferq enqueue", kClientStatementTimeout);
    // LISTEN before enqueueing so a fast completion cannot be missed.
    std::optional<db::Listener> listener;
    if (options.wait) {
      listener.emplace(settings.database.url, std::vector<std::string>{"inferq_done"},
                       "inferq enqueue --wait");
      listener->connect();
    }
    db::EnqueueRequest request;
    request.queue = options.queue;
    request.payload_json = options.payload_json;
    request.work_unit_key = options.key;
    request.unique_key = options.unique_key;
    request.priority = options.priority;
    request.max_attempts = options.max_attempts;
    std::int64_t id = 0;
    try {
      id = db::enqueue(session, request);
    } catch (const db::DbError& e) {
      // invalid_text_representation: the payload did not parse as jsonb; the
      // server's bare "invalid input syntax for type json" does not say which
      // argument was wrong.
      if (e.sqlstate() != "22P02") throw;
      std::cerr << "inferq: the JSON argument (the payload) is not valid JSON: " << e.what() << "\n";
      return kExitFailure;
    }
    std::cout << id << std::endl;
    if (!options.wait) return kExitOk;

    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const auto job = db::get_job(session, id);
      if (!job) {
        // A unique key's job may be another role's, which my_jobs hides.
        std::cerr << "inferq: job " << id
                  << " is not in inferq.my_jobs (enqueued by another role, or deleted)\n";
        return kExitFailure;
      }
      if (db::is_final_state(job->state)) {
        if (job->state == "succeeded") {
          std::cout << job->result_json.value_or("null") << "\n";
          return kExitOk;
        }
        std::cerr << "inferq: job " << id << " is " << job->state << " after " << job->attempts
                  << " attempt(s)" << (job->last_error ? ": " + *job->last_error : std::string()) << "\n";
        return kExitFailure;
      }
      auto wait = std::chrono::milliseconds(1000);  // re-check even if a NOTIFY is lost
      if (options.timeout) {
        const auto left = *options.timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - start);
        if (left.count() <= 0) {
          std::cerr << "inferq: timed out after " << util::format_duration(*options.timeout)
                    << " waiting for job " << id << " (state " << job->state << ")\n";
          return kExitTimeout;
        }
        wait = std::min(wait, left);
      }
      try {
        listener->wait(wait);
      } catch (const db::DbError&) {
        // Lost the LISTEN connection: the 1 s re-check above still finds the result.
      }
    }
  } catch (const db::DbError& e) {
    return db_failure(e);
  }
}

int cmd_status(const config::Settings& settings, bool json) {
  try {
    db::Session session(settings.database.url, "inferq status", kClientStatementTimeout);
    const auto report = db::read_status(session, settings.worker.stale_after);
    if (json) {
      std::ostringstream o;
      o << "{\"schema_version\":" << report.schema_version << ",\"queues\":[";
      for (std::size_t i = 0; i < report.queues.size(); ++i) {
        const auto& q = report.queues[i];
        o << (i ? "," : "") << "{\"queue\":" << json_string(q.queue) << ",\"jobs\":{";
        bool first = true;
        for (const auto& [state, n] : q.jobs_by_state) {
          o << (first ? "" : ",") << json_string(state) << ":" << n;
          first = false;
        }
        o << "},\"oldest_available_age_seconds\":";
        if (q.oldest_available_age_seconds)
          o << *q.oldest_available_age_seconds;
        else
          o << "null";
        o << "}";
      }
      o << "],\"leases\":[";
      for (std::size_t i = 0; i < report.leases.size(); ++i) {
        const auto& l = report.leases[i];
        o << (i ? "," : "") << "{\"lease\":" << l.lease_id << ",\"queue\":" << json_string(l.queue)
          << ",\"work_unit_key\":" << (l.work_unit_key ? json_string(*l.work_unit_key) : "null")
          << ",\"worker\":" << json_string(l.worker) << ",\"jobs\":" << l.jobs
          << ",\"age_seconds\":" << l.age_seconds << ",\"heartbeat_age_seconds\":" << l.heartbeat_age_seconds
          << "}";
      }
      o << "],\"workers\":[";
      for (std::size_t i = 0; i < report.workers.size(); ++i) {
        const auto& w = report.workers[i];
        o << (i ? "," : "") << "{\"id\":" << w.id << ",\"name\":" << json_string(w.name)
          << ",\"version\":" << json_string(w.version) << ",\"up_seconds\":" << w.up_seconds
          << ",\"last_seen_seconds\":" << w.last_seen_seconds << "}";
      }
      o << "]}";
      std::cout << o.str() << "\n";
      return kExitOk;
    }
    if (report.schema_version == 0) {
      std::cout << "inferq is not installed in this database: run inferq migrate\n";
      return kExitFailure;
    }
    std::printf("%-20s %10s %8s %10s %8s %10s  %s\n", "QUEUE", "AVAILABLE", "RUNNING", "SUCCEEDED", "DEAD",
                "CANCELLED", "OLDEST AVAILABLE");
    for (const auto& q : report.queues) {
      const auto n = [&](const char* s) { return static_cast<long long>(q.jobs_by_state.at(s)); };
      std::printf(
          "%-20s %10lld %8lld %10lld %8lld %10lld  %s\n", q.queue.c_str(), n("available"), n("running"),
          n("succeeded"), n("dead"), n("cancelled"),
          q.oldest_available_age_seconds ? seconds_text(*q.oldest_available_age_seconds).c_str() : "-");
    }
    if (report.queues.empty()) std::printf("(no jobs)\n");
    std::printf("\nLIVE LEASES: %zu\n", report.leases.size());
    for (const auto& l : report.leases) {
      std::printf("  lease %lld  queue %s  key %s  jobs %lld  worker %s  age %s  heartbeat %s ago\n",
                  static_cast<long long>(l.lease_id), l.queue.c_str(),
                  l.work_unit_key ? l.work_unit_key->c_str() : "-", static_cast<long long>(l.jobs),
                  l.worker.c_str(), seconds_text(l.age_seconds).c_str(),
                  seconds_text(l.heartbeat_age_seconds).c_str());
    }
    std::printf("\nLIVE WORKERS: %zu\n", report.workers.size());
    for (const auto& w : report.workers) {
      std::printf("  %s  version %s  up %s  seen %s ago\n", w.name.c_str(), w.version.c_str(),
                  seconds_text(w.up_seconds).c_str(), seconds_text(w.last_seen_seconds).c_str());
    }
    return kExitOk;
  } catch (const db::DbError& e) {
    return db_failure(e);
  }
}

int cmd_cancel(const config::Settings& settings, std::int64_t job_id) {
  try {
    db::Session session(settings.database.url, "inferq cancel", kClientStatementTimeout);
    if (db::cancel(session, job_id)) {
      std::cout << "job " << job_id << " cancelled\n";
      return kExitOk;
    }
    std::cerr << "inferq: job " << job_id << " does not exist or has already finished\n";
    return kExitFailure;
  } catch (const db::DbError& e) {
    return db_failure(e);
  }
}

}  // namespace inferq::app
