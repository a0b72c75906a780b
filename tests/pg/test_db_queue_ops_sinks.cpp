// Sinks (migration 0009): a queue's SQL function, called by
// inferq.complete_outcomes for each succeeded job inside the fenced
// completion transaction, writes the result into the user's own table once,
// or not at all. A sink that raises fails its job alone; a fenced-off or
// cancelled job calls no sink; a repeated completion calls none again.
#include <doctest.h>

#include <pqxx/pqxx>

#include <string>
#include <vector>

#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::JobFinish;
using inferq::db::OutcomeCount;
using inferq::db::Session;
using inferq::db::UnitFinish;

// A user's table of documents and the sink that stores each embedding in it;
// every call is counted in sink_calls, also the ones that fail (they roll
// back with their subtransaction, so a failed call leaves no row).
constexpr const char* kUserSchema = R"(
CREATE SCHEMA app;
CREATE TABLE app.documents (id bigint PRIMARY KEY, body text, embedding real[]);
INSERT INTO app.documents (id, body) VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE app.sink_calls (job_id bigint);
CREATE FUNCTION app.store_embedding(job_id bigint, payload jsonb, result jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.sink_calls VALUES (job_id);
  IF payload ? 'serialization' THEN
    RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001';
  END IF;
  UPDATE app.documents
     SET embedding = ARRAY(SELECT jsonb_array_elements_text(result->'outputs'->0->'data')::real)
   WHERE id = (payload->>'doc')::bigint;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'document % not found', payload->>'doc';
  END IF;
END $$;
)";

struct Db : inferq::test::WorkerDb {
  Db() : WorkerDb({"q", "plain"}) { exec(kUserSchema); }
  std::int64_t enqueue(const std::string& queue, const std::string& payload) {
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT inferq.enqueue($1, $2::jsonb)", queue, payload)[0].as<std::int64_t>();
  }
};

JobFinish ok(std::int64_t id, const std::string& data) {
  JobFinish f;
  f.job_id = id;
  f.ok = true;
  f.result_json = R"({"outputs": [{"name": "embedding", "data": )" + data + "}]}";
  f.retry_ms = 1000;
  return f;
}

// All of `unit`'s jobs succeed with [id/10, id/10], through `sink`.
UnitFinish succeed_all(const inferq::db::ClaimedUnit& unit, const std::string& sink) {
  UnitFinish u;
  u.lease_id = unit.lease_id;
  u.sink = sink;
  for (const auto& j : unit.jobs) {
    const std::string v = std::to_string(static_cast<double>(j.id) / 10);
    u.jobs.push_back(ok(j.id, "[" + v + ", " + v + "]"));
  }
  return u;
}

}  // namespace

TEST_CASE(
    "a sink writes each result into the user's table in the completion; one that raises fails its job "
    "alone") {
  Db db;
  const auto one = db.enqueue("q", R"({"doc": 1})");
  const auto missing = db.enqueue("q", R"({"doc": 999})");
  const auto two = db.enqueue("q", R"({"doc": 2})");
  const auto race = db.enqueue("q", R"({"doc": 3, "serialization": true})");
  const auto plain = db.enqueue("plain", R"({"doc": 3})");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  const auto other = inferq::db::claim(db.session, "plain", db.worker, 4, 3);
  REQUIRE(unit);
  REQUIRE(other);
  REQUIRE(unit->jobs.size() == 4);

  // Both units in one statement, as the completion writer batches them.
  std::vector<OutcomeCount> outcomes;
  CHECK(inferq::db::complete(db.session, {succeed_all(*unit, "app.store_embedding"), succeed_all(*other, "")},
                             "h:1", &outcomes) == 5);

  CHECK(db.scalar("SELECT embedding = ARRAY[" + std::to_string(one) + " / 10.0, " + std::to_string(one) +
                  " / 10.0]::real[] FROM app.documents WHERE id = 1") == "t");
  CHECK(db.scalar("SELECT embedding IS NOT NULL FROM app.documents WHERE id = 2") == "t");
  CHECK(db.state(one) == "succeeded");
  CHECK(db.state(two) == "succeeded");
  // The result stays on the job row too.
  CHECK(db.scalar("SELECT result->'outputs'->0->>'name' FROM inferq.jobs WHERE id = " +
                  std::to_string(one)) == "embedding");

  // Not the user's document: that job alone fails, for good, saying why.
  CHECK(db.state(missing) == "dead");
  CHECK(db.scalar("SELECT last_error FROM inferq.jobs WHERE id = " + std::to_string(missing)) ==
        "sink app.store_embedding failed: document 999 not found (SQLSTATE P0001)");
  CHECK(db.scalar("SELECT result IS NULL AND errors->0->>'class' = 'permanent' FROM inferq.jobs WHERE id = " +
                  std::to_string(missing)) == "t");
  // A race is worth another attempt, after the job's backoff.
  CHECK(db.state(race) == "available");
  CHECK(db.scalar("SELECT errors->0->>'class' FROM inferq.jobs WHERE id = " + std::to_string(race)) ==
        "transient");
  CHECK(db.scalar("SELECT run_at > now() FROM inferq.jobs WHERE id = " + std::to_string(race)) == "t");
  CHECK(db.scalar("SELECT embedding IS NULL FROM app.documents WHERE id = 3") == "t");
  // The queue without a sink was completed in the same statement, untouched.
  CHECK(db.state(plain) == "succeeded");
  CHECK(db.scalar("SELECT count(*) FROM app.sink_calls WHERE job_id = " + std::to_string(plain)) == "0");

  // Completing again (a writer's retry) writes nothing and calls no sink.
  const auto calls = db.scalar("SELECT count(*) FROM app.sink_calls");
  CHECK(inferq::db::complete(db.session, {succeed_all(*unit, "app.store_embedding")}, "h:1") == 0);
  CHECK(db.scalar("SELECT count(*) FROM app.sink_calls") == calls);
}

TEST_CASE("a sink is not called for a job whose lease was reaped or that was cancelled") {
  Db db;
  const auto reaped = db.enqueue("q", R"({"doc": 1})");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  REQUIRE(unit);
  db.exec("UPDATE inferq.active_sessions SET heartbeat_at = now() - interval '1 hour'");
  CHECK(inferq::db::reap(db.session, std::chrono::seconds(15), {}) == 1);
  CHECK(inferq::db::complete(db.session, {succeed_all(*unit, "app.store_embedding")}, "h:1") == 0);
  CHECK(db.scalar("SELECT count(*) FROM app.sink_calls") == "0");
  CHECK(db.scalar("SELECT embedding IS NULL FROM app.documents WHERE id = 1") == "t");
  CHECK(db.state(reaped) == "available");

  const auto again = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  REQUIRE(again);
  db.scalar("SELECT inferq.cancel(" + std::to_string(reaped) + ")");
  CHECK(inferq::db::complete(db.session, {succeed_all(*again, "app.store_embedding")}, "h:1") == 1);
  CHECK(db.state(reaped) == "cancelled");
  CHECK(db.scalar("SELECT count(*) FROM app.sink_calls") == "0");
}

TEST_CASE(
    "a sink function that does not exist fails the job, naming it; sink_function_exists checks the "
    "signature") {
  Db db;
  const auto id = db.enqueue("q", R"({"doc": 1})");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  REQUIRE(unit);
  CHECK(inferq::db::complete(db.session, {succeed_all(*unit, "app.no_such_sink")}, "h:1") == 1);
  CHECK(db.state(id) == "dead");
  CHECK(db.scalar("SELECT last_error FROM inferq.jobs WHERE id = " + std::to_string(id)) ==
        "sink app.no_such_sink failed: no function app.no_such_sink(bigint, jsonb, jsonb) (SQLSTATE 42883)");

  CHECK(inferq::db::sink_function_exists(db.session, "app.store_embedding"));
  CHECK_FALSE(inferq::db::sink_function_exists(db.session, "app.no_such_sink"));
  CHECK_FALSE(inferq::db::sink_function_exists(db.session, "store_embedding"));  // not on the search path
  db.exec("CREATE FUNCTION app.wrong_args(bigint, jsonb) RETURNS void LANGUAGE sql AS 'SELECT'");
  CHECK_FALSE(inferq::db::sink_function_exists(db.session, "app.wrong_args"));
}
