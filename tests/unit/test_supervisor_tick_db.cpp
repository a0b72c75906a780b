// supervisor/tick_db: what a failed tick statement means for the next ones
// (a backoff, capped near the poll interval; db_up; the error counted under
// its operation), under a manual clock. No database: the statements given to
// run() are the test's, and the session never connects.
#include <doctest.h>

#include <chrono>
#include <memory>
#include <string>

#include "db/error.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/tick_db.hpp"
#include "support/http_get.hpp"
#include "util/clock.hpp"

namespace {

using inferq::db::DbError;
using inferq::metrics::DbOp;
using inferq::supervisor::TickStatements;
using inferq::test::metric_value;
using std::chrono::milliseconds;

double series(const inferq::metrics::Metrics& m, const std::string& name) {
  return metric_value(m.expose(), name).value_or(-1);
}

}  // namespace

TEST_CASE("an outage backs the tick off, capped near the poll interval, until a statement succeeds") {
  inferq::util::ManualClock clock;
  inferq::metrics::Metrics metrics({"q"}, milliseconds(200), {"test"}, clock);
  inferq::supervisor::TickDb db(
      std::make_shared<inferq::supervisor::PgTickStatements>("postgresql://nobody@/nowhere"),
      milliseconds(200), metrics);
  CHECK(db.usable(clock.now()));
  CHECK_FALSE(db.failing());

  const auto refused =
      db.run(DbOp::kClaim, [](TickStatements&) { throw DbError("connection refused", true); });
  REQUIRE(refused);
  CHECK(refused->connection_lost());
  CHECK(series(metrics, "inferq_db_errors_total{op=\"claim\"}") == 1);
  // run() only reports: the caller decides it is an outage.
  CHECK(db.usable(clock.now()));
  CHECK_FALSE(db.failing());

  for (int i = 0; i < 6; ++i) db.outage(*refused, clock.now());
  CHECK(db.failing());
  CHECK(series(metrics, "inferq_db_up") == 0);
  CHECK_FALSE(db.usable(clock.now()));
  // Backoff doubles from 100 ms but never past max(poll interval, 1 s).
  CHECK(db.retry_at() - clock.now() <= milliseconds(1000));
  CHECK(db.retry_at() - clock.now() >= milliseconds(500));
  clock.advance(milliseconds(1000));
  CHECK(db.usable(clock.now()));

  bool ran = false;
  CHECK_FALSE(db.run(std::nullopt, [&](TickStatements&) { ran = true; }));
  CHECK(ran);
  CHECK_FALSE(db.failing());
  CHECK(series(metrics, "inferq_db_up") == 1);
  // Started over: the next outage waits the base delay again (100 ms, jittered), not the cap.
  db.outage(*refused, clock.now());
  CHECK(db.retry_at() - clock.now() <= milliseconds(200));
  // A statement counted under no operation leaves the counters alone.
  CHECK(db.run(std::nullopt, [](TickStatements&) { throw DbError("lock timeout", false, "55P03"); }));
  CHECK(series(metrics, "inferq_db_errors_total{op=\"claim\"}") == 1);
}
