#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "db/error.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/tick_statements.hpp"
#include "util/backoff.hpp"

namespace inferq::supervisor {

// The tick's database: its statements (PgTickStatements: its own
// connection), and what a failed statement means for the next ones. After
// an outage no statement runs until a backoff has passed, capped near the
// poll interval so a database that is back is noticed within about a poll;
// the db_up gauge and one log line per outage go with it. Tick thread only.
class TickDb {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  TickDb(std::shared_ptr<TickStatements> statements, std::chrono::milliseconds poll_interval,
         metrics::Metrics& metrics);

  TickStatements& statements() { return *statements_; }
  // No backoff is pending: statements may run.
  bool usable(TimePoint now) const { return now >= retry_at_; }
  // Since the last outage no statement has succeeded.
  bool failing() const { return failing_; }
  // When the current backoff ends: the tick wakes then.
  TimePoint retry_at() const { return retry_at_; }

  // Runs `f(statements())`. When it succeeds, the database is up (the
  // backoff starts over) and nothing is returned; a db::DbError it throws
  // is counted under `op` (when given) and returned, for the caller to
  // judge: outage(), or a refusal it deals with itself.
  template <class F>
  std::optional<db::DbError> run(std::optional<metrics::DbOp> op, F&& f) {
    try {
      f(*statements_);
    } catch (const db::DbError& e) {
      if (op) metrics_.db_error(*op);
      return e;
    }
    succeeded();
    return std::nullopt;
  }

  // `e` means the database is unusable: back off before the next statement.
  void outage(const std::exception& e, TimePoint now);

 private:
  void succeeded();

  metrics::Metrics& metrics_;
  std::shared_ptr<TickStatements> statements_;
  util::Backoff backoff_;
  TimePoint retry_at_{};
  bool failing_ = false;
};

}  // namespace inferq::supervisor
