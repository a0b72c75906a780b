// The producer API: inferq.enqueue() and inferq.cancel() in SQL, and
// src/db/producer_ops on top of them; their NOTIFYs seen through db::Listener.
#include <doctest.h>

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/listener.hpp"
#include "db/migrate.hpp"
#include "db/producer_ops.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/notifications.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::DbError;
using inferq::db::EnqueueRequest;
using inferq::db::Listener;
using inferq::db::Session;
using inferq::test::count_of;
using inferq::test::drain;

constexpr std::size_t kMiB = std::size_t{1024} * 1024;

// A MigratedDb with a producer Session on it.
struct ProducerDb : inferq::test::MigratedDb {
  Session session{url, "test-producer"};

  // The primary message and SQLSTATE of a statement that must fail. (Read
  // through references, not a structured binding: doctest's macros capture
  // in lambdas, which clang 14 refuses for a binding.)
  std::pair<std::string, std::string> sql_error(const std::string &sql) {
    try {
      pqxx::work tx(conn);
      tx.exec(sql);
      tx.commit();
    } catch (const pqxx::sql_error &e) {
      std::string what = e.what();
      what = what.substr(0, what.find('\n'));
      return {what, e.sqlstate()};
    }
    return {"(no error)", ""};
  }
};

Listener listen_to(const ProducerDb &db) {
  return Listener(db.url, {"inferq_jobs", "inferq_done"}, "test-listener");
}

std::string object_of_size(std::size_t bytes) {
  // {"x":"aaa..."}: 8 bytes of syntax around the string.
  return "{\"x\":\"" + std::string(bytes - 8, 'a') + "\"}";
}

}  // namespace

TEST_CASE("inferq.enqueue inserts an available job and returns its id") {
  ProducerDb db;
  pqxx::nontransaction tx(db.conn);
  const auto id = tx.exec1(
                        "SELECT inferq.enqueue('resnet.v1', '{\"inputs\": "
                        "[]}', 'user-7', 5)")[0]
                      .as<std::int64_t>();
  const auto row = tx.exec_params1(
      "SELECT queue, work_unit_key, payload::text, "
      "state::text, priority, attempts, max_attempts IS NULL,"
      " run_at <= now(), lease_id IS NULL, errors::text FROM "
      "inferq.jobs WHERE id = $1",
      id);
  CHECK(row[0].as<std::string>() == "resnet.v1");
  CHECK(row[1].as<std::string>() == "user-7");
  CHECK(row[2].as<std::string>() == "{\"inputs\": []}");
  CHECK(row[3].as<std::string>() == "available");
  CHECK(row[4].as<int>() == 5);
  CHECK(row[5].as<int>() == 0);
  CHECK(row[6].as<bool>());  // fixed at first claim
  CHECK(row[7].as<bool>());
  CHECK(row[8].as<bool>());
  CHECK(row[9].as<std::string>() == "[]");
}

TEST_CASE(
    "inferq.enqueue rejects bad input with a clear message and inserts "
    "nothing") {
  ProducerDb db;
  struct Case {
    const char *what;
    std::string sql;
    std::string message;
    std::string sqlstate;
  };
  const std::string invalid_parameter = "22023";
  const std::vector<Case> cases = {
      {"NULL queue", "SELECT inferq.enqueue(NULL, '{}')", "inferq.enqueue: queue must be a non-empty name",
       invalid_parameter},
      {"empty queue", "SELECT inferq.enqueue('', '{}')", "inferq.enqueue: queue must be a non-empty name",
       invalid_parameter},
      {"queue with a space", "SELECT inferq.enqueue('bad queue', '{}')",
       "inferq.enqueue: queue name \"bad queue\" is invalid: use 1 to 200 of "
       "A-Z a-z 0-9 _ . -",
       invalid_parameter},
      {"queue with a quote", "SELECT inferq.enqueue('q\"x', '{}')",
       "inferq.enqueue: queue name \"q\"x\" is invalid: use 1 to 200 of A-Z "
       "a-z 0-9 _ . -",
       invalid_parameter},
      {"queue of 201 characters", "SELECT inferq.enqueue(repeat('q', 201), '{}')",
       "inferq.enqueue: queue name \"" + std::string(201, 'q') +
           "\" is invalid: use 1 to 200 of A-Z a-z 0-9 _ . -",
       invalid_parameter},
      {"array payload", "SELECT inferq.enqueue('q', '[1, 2]')",
       "inferq.enqueue: payload must be a JSON object, got array", invalid_parameter},
      {"string payload", "SELECT inferq.enqueue('q', '\"text\"')",
       "inferq.enqueue: payload must be a JSON object, got string", invalid_parameter},
      {"number payload", "SELECT inferq.enqueue('q', '42')",
       "inferq.enqueue: payload must be a JSON object, got number", invalid_parameter},
      {"JSON null payload", "SELECT inferq.enqueue('q', 'null')",
       "inferq.enqueue: payload must be a JSON object, got null", invalid_parameter},
      {"SQL NULL payload", "SELECT inferq.enqueue('q', NULL)",
       "inferq.enqueue: payload must be a JSON object, got NULL", invalid_parameter},
      {"payload over 16 MiB",
       "SELECT inferq.enqueue('q', jsonb_build_object('x', repeat('a', 17 * "
       "1024 * 1024)))",
       "over the limit of 16777216 bytes (16 MiB)", "54000"},
      {"empty work_unit_key", "SELECT inferq.enqueue('q', '{}', '')",
       "inferq.enqueue: work_unit_key must be NULL or a non-empty string", invalid_parameter},
      {"NULL priority", "SELECT inferq.enqueue('q', '{}', NULL, NULL)",
       "inferq.enqueue: priority must not be NULL", invalid_parameter},
      {"max_attempts 0", "SELECT inferq.enqueue('q', '{}', max_attempts => 0)",
       "inferq.enqueue: max_attempts must be at least 1, got 0", invalid_parameter},
      {"negative max_attempts", "SELECT inferq.enqueue('q', '{}', max_attempts => -3)",
       "inferq.enqueue: max_attempts must be at least 1, got -3", invalid_parameter},
  };
  Listener listener = listen_to(db);
  listener.connect();
  for (const auto &c : cases) {
    CAPTURE(c.what);
    const auto error = db.sql_error(c.sql);
    const std::string &message = error.first;
    const std::string &sqlstate = error.second;
    CHECK_MESSAGE(message.find(c.message) != std::string::npos, message);
    CHECK(sqlstate == c.sqlstate);
    CHECK(db.jobs() == 0);
  }
  CHECK(drain(db.url, listener).empty());  // no NOTIFY for a job that was not inserted
}

TEST_CASE("inferq.enqueue accepts the edge values next to each rejection") {
  ProducerDb db;
  pqxx::nontransaction tx(db.conn);
  tx.exec("SELECT inferq.enqueue(repeat('q', 200), '{}')");
  tx.exec("SELECT inferq.enqueue('A-z_0.9', '{}', 'k', -5, now(), 1)");
  tx.exec("SELECT inferq.enqueue('q', '{}', run_at => NULL)");  // NULL run_at
                                                                // means now
  tx.exec(
      "SELECT inferq.enqueue('q', jsonb_build_object('x', repeat('a', 16 * "
      "1024 * 1024 - 64)))");
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs")[0].as<int>() == 4);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE run_at IS NULL")[0].as<int>() == 0);
}

TEST_CASE("db::enqueue inserts through inferq.enqueue") {
  ProducerDb db;
  EnqueueRequest req;
  req.queue = "bert";
  req.payload_json = R"({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.5]}]})";
  req.work_unit_key = "doc-1";
  req.priority = 3;
  req.max_attempts = 4;

  const std::int64_t id = inferq::db::enqueue(db.session, req);

  const auto job = inferq::db::get_job(db.session, id);
  REQUIRE(job);
  CHECK(job->id == id);
  CHECK(job->queue == "bert");
  CHECK(job->state == "available");
  CHECK(job->attempts == 0);
  CHECK(job->max_attempts == std::optional<int>(4));
  CHECK_FALSE(job->result_json);
  CHECK_FALSE(job->last_error);
  pqxx::nontransaction tx(db.conn);
  const auto row = tx.exec_params1("SELECT work_unit_key, priority FROM inferq.jobs WHERE id = $1", id);
  CHECK(row[0].as<std::string>() == "doc-1");
  CHECK(row[1].as<int>() == 3);

  EnqueueRequest plain;
  plain.queue = "bert";
  plain.payload_json = "{}";
  const std::int64_t second = inferq::db::enqueue(db.session, plain);
  const auto row2 = tx.exec_params1(
      "SELECT work_unit_key IS NULL, max_attempts IS NULL FROM "
      "inferq.jobs WHERE id = $1",
      second);
  CHECK(row2[0].as<bool>());
  CHECK(row2[1].as<bool>());
  CHECK_FALSE(inferq::db::get_job(db.session, second + 1000));
}

TEST_CASE(
    "db::enqueue turns every rejection into a DbError with the "
    "function's message") {
  ProducerDb db;
  const auto request = [](std::string queue, std::string payload) {
    EnqueueRequest r;
    r.queue = std::move(queue);
    r.payload_json = std::move(payload);
    return r;
  };
  struct Case {
    const char *what;
    EnqueueRequest request;
    std::string message;
  };
  std::vector<Case> cases = {
      {"empty queue", request("", "{}"), "inferq.enqueue: queue must be a non-empty name"},
      {"invalid queue", request("no/slash", "{}"), "inferq.enqueue: queue name \"no/slash\" is invalid"},
      {"array payload", request("q", "[]"), "inferq.enqueue: payload must be a JSON object, got array"},
      {"string payload", request("q", "\"s\""), "inferq.enqueue: payload must be a JSON object, got string"},
      {"number payload", request("q", "1.5"), "inferq.enqueue: payload must be a JSON object, got number"},
      {"null payload", request("q", "null"), "inferq.enqueue: payload must be a JSON object, got null"},
      {"payload over 16 MiB", request("q", object_of_size(17 * kMiB)),
       "bytes, over the limit of 16777216 bytes (16 MiB)"},
      {"empty key", request("q", "{}"), "inferq.enqueue: work_unit_key must be NULL or a non-empty string"},
      {"max_attempts 0", request("q", "{}"), "inferq.enqueue: max_attempts must be at least 1, got 0"},
      {"payload that is not JSON", request("q", "{not json"), "invalid input syntax for type json"},
  };
  cases[7].request.work_unit_key = "";
  cases[8].request.max_attempts = 0;

  for (const auto &c : cases) {
    CAPTURE(c.what);
    try {
      inferq::db::enqueue(db.session, c.request);
      FAIL("accepted");
    } catch (const DbError &e) {
      const std::string what = e.what();
      CHECK_MESSAGE(what.find(c.message) != std::string::npos, what);
      CHECK(what.rfind("ERROR", 0) == std::string::npos);  // the primary message, not libpq's text
      CHECK_FALSE(e.connection_lost());
      CHECK_FALSE(e.sqlstate().empty());
    }
    CHECK(db.jobs() == 0);
  }
  // The session survives rejections.
  CHECK(inferq::db::enqueue(db.session, request("q", "{}")) > 0);
  CHECK(db.jobs() == 1);
}

TEST_CASE(
    "an enqueue inside a producer transaction that rolls back leaves "
    "nothing and notifies nobody") {
  ProducerDb db;
  Listener listener = listen_to(db);
  listener.connect();
  {
    pqxx::work tx(db.conn);
    tx.exec("SELECT inferq.enqueue('rolled-back', '{}')");
    tx.exec("SELECT inferq.enqueue('rolled-back', '{}', 'k')");
    CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs")[0].as<int>() == 2);  // visible inside only
    tx.abort();
  }
  CHECK(db.jobs() == 0);
  CHECK(count_of(drain(db.url, listener), "inferq_jobs", "rolled-back") == 0);
}

TEST_CASE(
    "NOTIFY inferq_jobs is delivered at commit, not before, with the "
    "queue name") {
  ProducerDb db;
  Listener listener = listen_to(db);
  listener.connect();
  pqxx::connection producer(db.url);
  pqxx::work tx(producer);
  tx.exec("SELECT inferq.enqueue('vision', '{}')");
  tx.exec("SELECT inferq.enqueue('vision', '{\"n\": 2}')");

  // A marker committed after the enqueue arrives, the enqueue's NOTIFY not yet.
  CHECK(count_of(drain(db.url, listener), "inferq_jobs", "vision") == 0);

  tx.commit();
  const auto got = drain(db.url, listener);
  // Identical payloads of one transaction fold into one notification.
  CHECK(count_of(got, "inferq_jobs", "vision") == 1);
  CHECK(db.jobs() == 2);

  // db::enqueue commits at once.
  EnqueueRequest req;
  req.queue = "audio";
  req.payload_json = "{}";
  inferq::db::enqueue(db.session, req);
  CHECK(count_of(drain(db.url, listener), "inferq_jobs", "audio") == 1);
}

TEST_CASE(
    "cancel of an available job makes it cancelled and notifies "
    "inferq_done with its id") {
  ProducerDb db;
  Listener listener = listen_to(db);
  listener.connect();
  EnqueueRequest req;
  req.queue = "q";
  req.payload_json = "{}";
  const std::int64_t id = inferq::db::enqueue(db.session, req);
  const std::int64_t other = inferq::db::enqueue(db.session, req);
  drain(db.url, listener);

  CHECK(inferq::db::cancel(db.session, id));

  CHECK(inferq::db::get_job(db.session, id)->state == "cancelled");
  CHECK(inferq::db::is_final_state("cancelled"));
  CHECK(inferq::db::get_job(db.session, other)->state == "available");
  {
    pqxx::nontransaction tx(db.conn);
    const auto row = tx.exec_params1(
        "SELECT cancel_requested, finished_at IS "
        "NOT NULL FROM inferq.jobs WHERE id = $1",
        id);
    CHECK(row[0].as<bool>());
    CHECK(row[1].as<bool>());
  }
  const auto got = drain(db.url, listener);
  CHECK(count_of(got, "inferq_done", std::to_string(id)) == 1);
  CHECK(count_of(got, "inferq_done", std::to_string(other)) == 0);

  // The SQL function directly, on the other job.
  {
    pqxx::nontransaction tx(db.conn);
    CHECK(tx.exec_params1("SELECT inferq.cancel($1)", other)[0].as<bool>());
  }
  CHECK(db.state(other) == "cancelled");
}

TEST_CASE(
    "cancel of a running job marks it; its completion then makes it "
    "cancelled without a result") {
  ProducerDb db;
  Listener listener = listen_to(db);
  listener.connect();
  EnqueueRequest req;
  req.queue = "q";
  req.payload_json = "{}";
  const std::int64_t id = inferq::db::enqueue(db.session, req);
  inferq::db::WorkerIdentity who;
  who.name = "host:1";
  who.host = "host";
  who.pid = 1;
  who.version = "test";
  Session daemon(db.url, "test-daemon");
  const std::int64_t worker = inferq::db::register_worker(daemon, who);
  const auto unit = inferq::db::claim(daemon, "q", worker, 1, 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 1);
  drain(db.url, listener);

  CHECK(inferq::db::cancel(db.session, id));

  CHECK(db.state(id) == "running");
  {
    pqxx::nontransaction tx(db.conn);
    const auto row = tx.exec_params1(
        "SELECT cancel_requested, finished_at IS "
        "NULL FROM inferq.jobs WHERE id = $1",
        id);
    CHECK(row[0].as<bool>());
    CHECK(row[1].as<bool>());
  }
  CHECK(count_of(drain(db.url, listener), "inferq_done", std::to_string(id)) == 0);
  CHECK(inferq::db::cancel(db.session, id));  // asking again is harmless

  inferq::db::UnitFinish finish;
  finish.lease_id = unit->lease_id;
  inferq::db::JobFinish ok;
  ok.job_id = id;
  ok.ok = true;
  ok.result_json = R"({"outputs": []})";
  finish.jobs.push_back(ok);
  CHECK(inferq::db::complete(daemon, {finish}, who.name) == 1);

  const auto job = inferq::db::get_job(db.session, id);
  CHECK(job->state == "cancelled");
  CHECK_FALSE(job->result_json);
  CHECK(count_of(drain(db.url, listener), "inferq_done", std::to_string(id)) == 1);
  pqxx::nontransaction tx(db.conn);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.active_sessions")[0].as<int>() == 0);
}

TEST_CASE(
    "cancel of a running job that then fails transiently ends cancelled, "
    "not retried") {
  ProducerDb db;
  EnqueueRequest req;
  req.queue = "q";
  req.payload_json = "{}";
  const std::int64_t id = inferq::db::enqueue(db.session, req);
  Session daemon(db.url, "test-daemon");
  const auto unit = inferq::db::claim(daemon, "q", 1, 1, 3);
  REQUIRE(unit);
  CHECK(inferq::db::cancel(db.session, id));

  inferq::db::JobFinish failed;
  failed.job_id = id;
  failed.error_class = inferq::db::ErrorClass::kTransient;
  failed.message = "CUDA busy";
  failed.retry_ms = 1000;
  CHECK(inferq::db::complete(daemon, {{unit->lease_id, {failed}}}, "host:1") == 1);

  CHECK(db.state(id) == "cancelled");
  CHECK_FALSE(inferq::db::claim(daemon, "q", 1, 1, 3));
}

TEST_CASE("cancel of a finished or unknown job returns false and changes nothing") {
  ProducerDb db;
  std::int64_t succeeded = 0;
  std::int64_t dead = 0;
  {
    pqxx::nontransaction tx(db.conn);
    succeeded = tx.exec1(
                      "INSERT INTO inferq.jobs (queue, payload, state, "
                      "result, finished_at)"
                      " VALUES ('q', '{}', 'succeeded', '{\"y\": 1}', "
                      "now()) RETURNING id")[0]
                    .as<std::int64_t>();
    dead = tx.exec1(
                 "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
                 " VALUES ('q', '{}', 'dead', now()) RETURNING id")[0]
               .as<std::int64_t>();
  }
  EnqueueRequest req;
  req.queue = "q";
  req.payload_json = "{}";
  const std::int64_t cancelled = inferq::db::enqueue(db.session, req);
  REQUIRE(inferq::db::cancel(db.session, cancelled));

  CHECK_FALSE(inferq::db::cancel(db.session, succeeded));
  CHECK_FALSE(inferq::db::cancel(db.session, dead));
  CHECK_FALSE(inferq::db::cancel(db.session, cancelled));
  CHECK_FALSE(inferq::db::cancel(db.session, cancelled + 1000));

  CHECK(db.state(succeeded) == "succeeded");
  CHECK(inferq::db::get_job(db.session, succeeded)->result_json == std::optional<std::string>("{\"y\": 1}"));
  CHECK(db.state(dead) == "dead");
  pqxx::nontransaction tx(db.conn);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE cancel_requested")[0].as<int>() == 1);
}

// Numerics amplify: 1e131071 is a few bytes of jsonb and 131,072 digits of
// text. The claims return payload::text, so the text is what must fit.
namespace {

// A payload of `n` copies of 1e131071: 2.3 KB stored, n * 131 KB of text.
std::string amplified_payload(int n) {
  return "jsonb_build_object('a', to_jsonb(array_fill(1e131071::numeric, ARRAY[" + std::to_string(n) + "])))";
}

}  // namespace

TEST_CASE("inferq.enqueue refuses a payload whose JSON text is over 16 MiB, naming its size") {
  ProducerDb db;
  const std::string payload = amplified_payload(130);
  {
    pqxx::nontransaction tx(db.conn);
    REQUIRE(tx.exec1("SELECT pg_column_size(" + payload + ") < 16384")[0].as<bool>());
  }
  const std::string text_bytes = [&] {
    pqxx::nontransaction tx(db.conn);
    return tx.exec1("SELECT octet_length((" + payload + ")::text)")[0].as<std::string>();
  }();
  CHECK(std::stoll(text_bytes) > 16777216);

  const auto error = db.sql_error("SELECT inferq.enqueue('q', " + payload + ")");
  const std::string &message = error.first;
  const std::string &sqlstate = error.second;
  CHECK(message == "ERROR:  inferq.enqueue: payload's JSON text is " + text_bytes +
                       " bytes, over the limit of 16777216 bytes (16 MiB)");
  CHECK(sqlstate == "54000");
  CHECK(db.jobs() == 0);
}

TEST_CASE("inferq.enqueue refuses a payload whose JSON text would be over 1 GB, and says so") {
  ProducerDb db;
  // Over 1 GB of text: making it fails (54000, "out of memory"), and so
  // would every claim of its queue.
  const auto error = db.sql_error("SELECT inferq.enqueue('q', " + amplified_payload(8300) + ")");
  const std::string &message = error.first;
  const std::string &sqlstate = error.second;
  CHECK(message ==
        "ERROR:  inferq.enqueue: payload's JSON text is over the limit of 16777216 bytes (16 MiB)");
  CHECK(sqlstate == "54000");
  CHECK(db.jobs() == 0);
}

TEST_CASE("inferq.enqueue refuses a run_at that is not finite; NULL and far-off times are accepted") {
  ProducerDb db;
  for (const std::string at : {"infinity", "-infinity"}) {
    CAPTURE(at);
    const auto error = db.sql_error("SELECT inferq.enqueue('q', '{}', run_at => '" + at + "'::timestamptz)");
    const std::string &message = error.first;
    const std::string &sqlstate = error.second;
    CHECK(message == "ERROR:  inferq.enqueue: run_at must be a finite time (or NULL for now), got " + at);
    CHECK(sqlstate == "22023");
    CHECK(db.jobs() == 0);
  }
  pqxx::nontransaction tx(db.conn);
  tx.exec("SELECT inferq.enqueue('q', '{}', run_at => NULL)");
  tx.exec("SELECT inferq.enqueue('q', '{}', run_at => '9999-12-31 00:00:00+00')");
  tx.exec("SELECT inferq.enqueue('q', '{}', run_at => '1970-01-01 00:00:00+00')");
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE isfinite(run_at)")[0].as<int>() == 3);
}

TEST_CASE("inferq.enqueue refuses max_attempts over 1000") {
  ProducerDb db;
  for (const std::string n : {"1001", "2147483647"}) {
    CAPTURE(n);
    const auto error = db.sql_error("SELECT inferq.enqueue('q', '{}', max_attempts => " + n + ")");
    const std::string &message = error.first;
    const std::string &sqlstate = error.second;
    CHECK(message == "ERROR:  inferq.enqueue: max_attempts must be at most 1000, got " + n);
    CHECK(sqlstate == "22023");
    CHECK(db.jobs() == 0);
  }
  pqxx::nontransaction tx(db.conn);
  tx.exec("SELECT inferq.enqueue('q', '{}', max_attempts => 1000)");
  CHECK(tx.exec1("SELECT max_attempts FROM inferq.jobs")[0].as<int>() == 1000);
}
