// inferq.complete through src/db/queue_ops: successes and their results,
// failures by class (retried, dead, requeued, cancelled), fencing by the
// lease, and the completion document's escaping of what executors write.
#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/queue_db.hpp"

namespace {

using inferq::db::Session;
using inferq::db::UnitFinish;
using inferq::test::failed;
using inferq::test::finish_all;
using inferq::test::ids_of;
using inferq::test::Job;
using inferq::test::kDefaultMaxAttempts;
using inferq::test::keyed;
using inferq::test::QueueDb;
using inferq::test::succeeded;
using std::chrono::seconds;

const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD in UTF-8

}  // namespace

TEST_CASE("complete writes a success with its result and releases the lease") {
  QueueDb db;
  const auto id = db.add();
  const auto other = db.add();
  const auto unit = db.claim(2);
  REQUIRE(unit);

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {succeeded(id, R"({"outputs": [{"name": "y", "data": [0.5, "x\"y"]}]})"),
                 succeeded(other, "")};
  CHECK(db.complete({finish}) == 2);

  CHECK(db.state(id) == "succeeded");
  CHECK(*db.field(id, "result") == R"({"outputs": [{"data": [0.5, "x\"y"], "name": "y"}]})");
  CHECK_FALSE(db.field(other, "result"));  // an empty result is JSON null
  CHECK(db.state(other) == "succeeded");
  CHECK(db.flag(id, "finished_at IS NOT NULL AND lease_id IS NULL AND last_error IS NULL"));
  CHECK(db.error_count(id) == 0);
  CHECK(db.attempts(id) == 1);
  CHECK(db.leases() == 0);
}

TEST_CASE("one completion statement gives every job it finishes the same finished_at and error time") {
  QueueDb db;
  for (int i = 0; i < 400; ++i) db.add();
  const auto a = db.claim(200);
  const auto b = db.claim(200);
  REQUIRE(a);
  REQUIRE(b);
  // One unit succeeds, the other fails for good: both kinds of row change.
  CHECK(db.complete(
            {finish_all(*a, [](std::int64_t j) { return succeeded(j); }), finish_all(*b, [](std::int64_t j) {
               return failed(j, inferq::db::ErrorClass::kPermanent, "bad input", 0);
             })}) == 400);
  // Per-row clock_timestamp() gave a unit's jobs 400 different times, so
  // ordering a key's jobs by finished_at showed inversions inside a unit.
  CHECK(db.scalar("SELECT count(DISTINCT finished_at) FROM inferq.jobs") == "1");
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE finished_at IS NULL") == "0");
  CHECK(db.scalar("SELECT count(DISTINCT errors->0->>'at') FROM inferq.jobs WHERE state = 'dead'") == "1");
  CHECK(db.scalar("SELECT bool_and((errors->0->>'at')::timestamptz = finished_at) FROM inferq.jobs "
                  "WHERE state = 'dead'") == "t");
}

TEST_CASE(
    "a transient failure makes the job available again after retry_ms, "
    "with the error in its history") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);

  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kTransient, "CUDA busy", 60000);
  })}) == 1);

  CHECK(db.state(id) == "available");
  CHECK(db.flag(id,
                "run_at BETWEEN clock_timestamp() + interval '55 seconds'"
                " AND clock_timestamp() + interval '61 seconds'"));
  CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL AND result IS NULL"));
  CHECK(db.attempts(id) == 1);
  CHECK(*db.field(id, "last_error") == "CUDA busy");
  REQUIRE(db.error_count(id) == 1);
  CHECK(*db.field(id, "errors->0->>'attempt'") == "1");
  CHECK(*db.field(id, "errors->0->>'class'") == "transient");
  CHECK(*db.field(id, "errors->0->>'message'") == "CUDA busy");
  CHECK(*db.field(id, "errors->0->>'worker'") == "host-a:101");
  CHECK(db.flag(id,
                "(errors->0->>'at')::timestamptz BETWEEN now() - interval "
                "'1 minute' AND clock_timestamp()"));
  CHECK(db.leases() == 0);
  CHECK_FALSE(db.claim());  // not due yet

  // With no backoff it is due at once; the second failure is appended.
  db.make_due(id);
  const auto again = db.claim();
  REQUIRE(again);
  CHECK(again->jobs[0].attempts == 2);
  CHECK(db.complete({finish_all(*again, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kDeadline, "took 31 s", 0);
  })}) == 1);
  CHECK(db.state(id) == "available");
  REQUIRE(db.error_count(id) == 2);
  CHECK(*db.field(id, "errors->1->>'attempt'") == "2");
  CHECK(*db.field(id, "errors->1->>'class'") == "deadline");
  CHECK(*db.field(id, "errors->0->>'class'") == "transient");
  CHECK(*db.field(id, "last_error") == "took 31 s");
  CHECK(db.claim());  // retry_ms 0: due at once
}

TEST_CASE("a permanent failure makes the job dead at once, attempts left or not") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim(1, "q", 10);
  REQUIRE(unit);

  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kPermanent, "input 'x': expected shape [3], got [4]", 5000);
  })}) == 1);

  CHECK(db.state(id) == "dead");
  CHECK(db.flag(id, "finished_at IS NOT NULL AND lease_id IS NULL AND result IS NULL"));
  CHECK(*db.field(id, "last_error") == "input 'x': expected shape [3], got [4]");
  CHECK(*db.field(id, "errors->0->>'class'") == "permanent");
  CHECK_FALSE(db.claim());
}

TEST_CASE("a job out of attempts is dead after its last failure") {
  QueueDb db;
  Job once;
  once.max_attempts = 1;
  const auto id = db.add(once);
  const auto unit = db.claim();
  REQUIRE(unit);
  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kCrash, "executor died", 100);
  })}) == 1);
  CHECK(db.state(id) == "dead");
  CHECK(db.flag(id, "finished_at IS NOT NULL"));
  CHECK(*db.field(id, "errors->0->>'class'") == "crash");

  // The same with the default of 2, over two claims.
  const auto twice = db.add();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    const auto u = db.claim(1, "q", 2);
    REQUIRE(u);
    CHECK(u->jobs[0].attempts == attempt);
    CHECK(db.complete({finish_all(*u, [](std::int64_t j) {
      return failed(j, inferq::db::ErrorClass::kTransient, "again");
    })}) == 1);
  }
  CHECK(db.state(twice) == "dead");
  CHECK(db.error_count(twice) == 2);
}

TEST_CASE(
    "class requeue puts a keyed job back behind its retried predecessor: "
    "attempt refunded, no error") {
  // The supervisor sends "requeue" for the jobs of a keyed unit after one
  // that will be retried, so the key's jobs still run in id order.
  QueueDb db;
  Job once = keyed("k");
  once.max_attempts = 1;  // requeue must not kill a job that never ran
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));
  const auto third = db.add(once);
  const auto unit = db.claim(3);
  REQUIRE(unit);
  REQUIRE(ids_of(*unit) == std::vector<std::int64_t>{first, second, third});

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {
      failed(first, inferq::db::ErrorClass::kTransient, "CUDA busy", 60000),
      failed(second, inferq::db::ErrorClass::kRequeue, "requeued behind an earlier job of its key"),
      failed(third, inferq::db::ErrorClass::kRequeue, "requeued behind an earlier job of its key")};
  CHECK(db.complete({finish}) == 3);

  CHECK(db.state(first) == "available");
  CHECK(db.attempts(first) == 1);
  CHECK(db.error_count(first) == 1);
  for (const auto id : {second, third}) {
    CAPTURE(id);
    CHECK(db.state(id) == "available");
    CHECK(db.attempts(id) == 0);
    CHECK(db.error_count(id) == 0);
    CHECK_FALSE(db.field(id, "last_error"));
    CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL AND run_at <= now()"));
  }
  // The key waits for its first job's retry; nothing jumps ahead of it.
  CHECK_FALSE(db.claim(3));

  db.make_due(first);
  const auto retry = db.claim(3);
  REQUIRE(retry);
  REQUIRE(ids_of(*retry) == std::vector<std::int64_t>{first, second, third});
  CHECK(retry->jobs[0].attempts == 2);
  CHECK(retry->jobs[1].attempts == 1);
  CHECK(retry->jobs[2].attempts == 1);
}

TEST_CASE("a requeued job whose cancel was requested ends cancelled") {
  QueueDb db;
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));
  const auto unit = db.claim(2);
  REQUIRE(unit);
  CHECK(db.cancel(second));

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {failed(first, inferq::db::ErrorClass::kTransient, "busy", 0),
                 failed(second, inferq::db::ErrorClass::kRequeue, "requeued")};
  CHECK(db.complete({finish}) == 2);
  CHECK(db.state(first) == "available");
  CHECK(db.state(second) == "cancelled");
  CHECK(db.flag(second, "finished_at IS NOT NULL"));
}

TEST_CASE(
    "complete is fenced by the lease: a wrong or reaped lease writes "
    "nothing, a repeat is a no-op") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);

  SUBCASE("a lease that is not the job's") {
    UnitFinish wrong = finish_all(*unit, [](std::int64_t j) { return succeeded(j); });
    wrong.lease_id = unit->lease_id + 1000;
    CHECK(db.complete({wrong}) == 0);
    CHECK(db.state(id) == "running");
    CHECK(*db.field(id, "lease_id") == std::to_string(unit->lease_id));
    CHECK_FALSE(db.field(id, "result"));
    CHECK(db.leases() == 1);
  }
  SUBCASE("a job the lease does not hold") {
    const auto stranger = db.add();
    UnitFinish wrong;
    wrong.lease_id = unit->lease_id;
    wrong.jobs = {failed(stranger, inferq::db::ErrorClass::kPermanent, "not mine")};
    CHECK(db.complete({wrong}) == 0);
    CHECK(db.state(stranger) == "available");
    CHECK(db.error_count(stranger) == 0);
  }
  SUBCASE("a repeated complete") {
    const UnitFinish ok = finish_all(*unit, [](std::int64_t j) { return succeeded(j, R"({"v": 1})"); });
    CHECK(db.complete({ok}) == 1);
    CHECK(db.complete({ok}) == 0);
    CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
      return failed(j, inferq::db::ErrorClass::kPermanent, "late");
    })}) == 0);
    CHECK(db.state(id) == "succeeded");
    CHECK(*db.field(id, "result") == R"({"v": 1})");
    CHECK(db.error_count(id) == 0);
  }
  SUBCASE("a lease reaped and the job claimed by another daemon") {
    db.age_lease(unit->lease_id);
    Session other(db.url, "test-other-daemon");
    CHECK(inferq::db::reap(other, seconds(30), {}) == 1);
    const auto taken = inferq::db::claim(other, "q", db.worker + 1, 1, kDefaultMaxAttempts);
    REQUIRE(taken);
    REQUIRE(taken->jobs[0].id == id);

    CHECK(db.complete({finish_all(*unit, [](std::int64_t j) { return succeeded(j); })}) == 0);
    CHECK(db.state(id) == "running");
    CHECK(*db.field(id, "lease_id") == std::to_string(taken->lease_id));
    CHECK_FALSE(db.field(id, "result"));
    CHECK(db.leases() == 1);  // the new owner's lease is untouched

    CHECK(inferq::db::complete(other, {finish_all(*taken, [](std::int64_t j) { return succeeded(j); })},
                               "b:2") == 1);
    CHECK(db.state(id) == "succeeded");
  }
  CHECK(db.complete({}) == 0);
}

TEST_CASE("completion_document escapes messages into valid JSON") {
  UnitFinish u;
  u.lease_id = 7;
  u.jobs = {succeeded(1, R"({"y":1})"), failed(2, inferq::db::ErrorClass::kTransient, "m", 250),
            succeeded(3, "")};
  UnitFinish v;
  v.lease_id = 8;
  v.jobs = {failed(4, inferq::db::ErrorClass::kPermanent,
                   std::string("a\"b\\c\nd\te\rf") + '\x01' + '\0' + "g\x7f", 0)};
  CHECK(inferq::db::completion_document({u, v}) ==
        R"([{"lease":7,"id":1,"ok":true,"result":{"y":1}},)"
        R"({"lease":7,"id":2,"ok":false,"class":"transient","message":"m","retry_ms":250},)"
        R"({"lease":7,"id":3,"ok":true,"result":null},)"
        R"({"lease":8,"id":4,"ok":false,"class":"permanent","message":"a\"b\\c\nd\te\rf\u0001\ufffdg)"
        "\x7f"
        R"(","retry_ms":0}])");
  CHECK(inferq::db::completion_document({}) == "[]");
}

TEST_CASE(
    "messages with quotes, newlines, NUL and invalid UTF-8 round-trip "
    "through complete into last_error") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);
  const std::string message = std::string("say \"hi\" \\ back\nline 2\ttab\r\x01 nul:") + '\0' +
                              " bad:\xff\xfe cut:\xe2\x82 overlong2:\xc0\xaf euro:\xe2\x82\xac "
                              "smile:\xf0\x9f\x98\x80";

  CHECK(db.complete({finish_all(*unit, [&](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kTransient, message);
  })}) == 1);

  const std::string stored = *db.field(id, "last_error");
  CHECK(*db.field(id, "errors->0->>'message'") == stored);
  CHECK(stored.rfind("say \"hi\" \\ back\nline 2\ttab\r\x01 nul:" + kReplacement + " bad:" + kReplacement,
                     0) == 0);
  CHECK(stored.find("euro:\xe2\x82\xac smile:\xf0\x9f\x98\x80") != std::string::npos);
  // Every invalid byte became U+FFFD; the valid text around them is intact.
  std::string without_replacements = stored;
  for (std::size_t p; (p = without_replacements.find(kReplacement)) != std::string::npos;)
    without_replacements.erase(p, kReplacement.size());
  CHECK(without_replacements ==
        "say \"hi\" \\ back\nline 2\ttab\r\x01 nul: "
        "bad: cut: overlong2: euro:\xe2\x82\xac"
        " smile:\xf0\x9f\x98\x80");
}

TEST_CASE(
    "well-formed-looking but invalid UTF-8 (overlong, surrogate, beyond "
    "U+10FFFF) does not make complete fail") {
  // PostgreSQL rejects these sequences in text; append_json_string must
  // replace them like any other invalid byte, or the unit cannot be written.
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);
  // The valid neighbours of each rejected range must pass through as they are:
  // U+0800, U+D7FF, U+E000, U+10000, U+10FFFF.
  const std::string valid_edges =
      "edges:"
      "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
  const std::string message =
      "overlong3:\xe0\x80\xaf surrogate:\xed\xa0\x80 "
      "overlong4:\xf0\x80\x80\xaf too-big:\xf4\x90\x80\x80 " +
      valid_edges;

  int written = -1;
  try {
    written = db.complete({finish_all(
        *unit, [&](std::int64_t j) { return failed(j, inferq::db::ErrorClass::kPermanent, message); })});
  } catch (const inferq::db::DbError &e) {
    FAIL("complete() was rejected: " << std::string(e.what()));
  }
  CHECK(written == 1);
  const auto stored = db.field(id, "last_error");
  REQUIRE(stored);
  std::string without_replacements = *stored;
  for (std::size_t p; (p = without_replacements.find(kReplacement)) != std::string::npos;)
    without_replacements.erase(p, kReplacement.size());
  CHECK(without_replacements == "overlong3: surrogate: overlong4: too-big: " + valid_edges);
  CHECK(stored->find(valid_edges) != std::string::npos);
}
TEST_CASE("a result that is not one JSON value cannot add keys to the completion: its job fails alone") {
  QueueDb db;
  const auto a = db.add();
  const auto b = db.add();
  const auto c = db.add();
  const auto unit = db.claim(3);
  REQUIRE(unit);
  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  // Each would otherwise rewrite its own element: a second "id" (jsonb keeps
  // the last) that completes job c with a's result, and a fake success flag.
  finish.jobs = {succeeded(a, "{}, \"id\": " + std::to_string(c)), succeeded(b, R"(1,"ok":false)"),
                 succeeded(c, R"({"fine": true})")};
  CHECK(db.complete({finish}) == 3);
  for (const auto id : {a, b}) {
    CHECK(db.state(id) == "dead");
    CHECK(db.field(id, "last_error")->find("the executor's result is not one JSON value") !=
          std::string::npos);
    CHECK_FALSE(db.field(id, "result"));
  }
  CHECK(db.state(c) == "succeeded");
  CHECK(*db.field(c, "result") == R"({"fine": true})");
}
