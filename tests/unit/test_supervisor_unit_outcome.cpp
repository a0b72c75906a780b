// supervisor/unit_outcome: what a unit's jobs are written as, from the
// executor's answer, a failure, a give-back, or batch.max_bytes. Pure: no
// database, clock or process.
#include <doctest.h>

#include <string>
#include <variant>
#include <vector>

#include "supervisor/unit_outcome.hpp"

namespace {

using inferq::db::ClaimedJob;
using inferq::db::ClaimedUnit;
using inferq::db::ErrorClass;
using inferq::db::UnitFinish;
using inferq::protocol::Outcome;
using inferq::protocol::UnitResult;
namespace sup = inferq::supervisor;

inferq::config::QueueSettings queue() {
  inferq::config::QueueSettings q;
  q.name = "q";
  q.sink = "public.sink";
  q.binary_data_output = true;
  return q;
}

ClaimedUnit unit(std::vector<std::int64_t> ids, bool keyed = false) {
  ClaimedUnit u;
  u.lease_id = 7;
  if (keyed) u.work_unit_key = "k";
  for (const auto id : ids) {
    ClaimedJob j;
    j.id = id;
    j.payload = "{\"i\":" + std::to_string(id) + "}";
    j.attempts = 1;
    j.max_attempts = 3;
    u.jobs.push_back(j);
  }
  return u;
}

UnitResult answer(std::vector<std::pair<std::int64_t, Outcome>> outs) {
  UnitResult r;
  r.unit_id = 7;
  for (const auto& [id, outcome] : outs) r.jobs.push_back({id, outcome, "body " + std::to_string(id), "bin"});
  return r;
}

// Each job's delay is 100 ms per attempt, so the test sees it is the job's.
const sup::RetryDelay kRetry = [](int attempts) { return std::int64_t{100} * attempts; };

}  // namespace

TEST_CASE("an answered unit: successes carry the result and its bytes, failures their class and message") {
  const auto q = queue();
  auto u = unit({1, 2, 3});
  u.jobs[2].attempts = 2;
  const auto answered = sup::answered_unit(
      q, u, answer({{1, Outcome::kSucceeded}, {2, Outcome::kPermanent}, {3, Outcome::kTransient}}), kRetry);
  REQUIRE(std::holds_alternative<UnitFinish>(answered));
  const auto& f = std::get<UnitFinish>(answered);
  CHECK(f.queue == "q");
  CHECK(f.lease_id == 7);
  CHECK(f.sink == "public.sink");
  CHECK(f.binary_outputs);
  CHECK_FALSE(f.keyed);
  REQUIRE(f.jobs.size() == 3);
  CHECK(f.jobs[0].ok);
  CHECK(f.jobs[0].result_json == "body 1");
  CHECK(f.jobs[0].result_binary == "bin");
  CHECK(f.jobs[0].retry_ms == 100);  // should its sink lose a race
  CHECK_FALSE(f.jobs[1].ok);
  CHECK(f.jobs[1].error_class == ErrorClass::kPermanent);
  CHECK(f.jobs[1].message == "body 2");
  CHECK(f.jobs[2].error_class == ErrorClass::kTransient);
  CHECK(f.jobs[2].retry_ms == 200);
}

TEST_CASE("in a keyed unit, the jobs after one that will be retried go back unrun, behind it") {
  const auto q = queue();
  const auto outs = answer({{1, Outcome::kSucceeded}, {2, Outcome::kTransient}, {3, Outcome::kSucceeded}});
  const auto keyed = std::get<UnitFinish>(sup::answered_unit(q, unit({1, 2, 3}, true), outs, kRetry));
  CHECK(keyed.keyed);
  CHECK(keyed.jobs[0].ok);
  CHECK(keyed.jobs[1].error_class == ErrorClass::kTransient);
  CHECK_FALSE(keyed.jobs[2].ok);
  CHECK(keyed.jobs[2].error_class == ErrorClass::kRequeue);
  CHECK(keyed.jobs[2].message == "requeued behind an earlier job of its key");

  // Unkeyed jobs are independent; and a keyed job out of attempts is not
  // retried, so nothing waits behind it.
  CHECK(std::get<UnitFinish>(sup::answered_unit(q, unit({1, 2, 3}), outs, kRetry)).jobs[2].ok);
  auto last_try = unit({1, 2, 3}, true);
  last_try.jobs[1].attempts = 3;
  CHECK(std::get<UnitFinish>(sup::answered_unit(q, last_try, outs, kRetry)).jobs[2].ok);
}

TEST_CASE("an answer with another job count or out of order is a protocol violation, not a finish") {
  const auto q = queue();
  const auto short_answer = sup::answered_unit(q, unit({1, 2}), answer({{1, Outcome::kSucceeded}}), kRetry);
  REQUIRE(std::holds_alternative<std::string>(short_answer));
  CHECK(std::get<std::string>(short_answer) == "executor returned 1 result(s) for 2 job(s)");
  const auto swapped = sup::answered_unit(
      q, unit({1, 2}), answer({{2, Outcome::kSucceeded}, {1, Outcome::kSucceeded}}), kRetry);
  REQUIRE(std::holds_alternative<std::string>(swapped));
  CHECK(std::get<std::string>(swapped) == "executor returned results out of order");
}

TEST_CASE("a failed unit writes every job with the class, message and its own retry delay") {
  auto u = unit({4, 5});
  u.jobs[1].attempts = 3;
  const auto f = sup::failed_unit(queue(), u, ErrorClass::kDeadline, "deadline exceeded after 1s", kRetry);
  REQUIRE(f.jobs.size() == 2);
  for (const auto& j : f.jobs) {
    CHECK_FALSE(j.ok);
    CHECK(j.error_class == ErrorClass::kDeadline);
    CHECK(j.message == "deadline exceeded after 1s");
  }
  CHECK(f.jobs[0].retry_ms == 100);
  CHECK(f.jobs[1].retry_ms == 300);
  CHECK(f.sink.empty());  // no success to sink
}

TEST_CASE("a unit claimed ahead and given back requeues every job, saying why") {
  const auto f = sup::given_back(queue(), unit({8, 9}, true), "the daemon is shutting down");
  CHECK(f.keyed);
  REQUIRE(f.jobs.size() == 2);
  for (const auto& j : f.jobs) {
    CHECK(j.error_class == ErrorClass::kRequeue);
    CHECK(j.message == "claimed ahead, not run: the daemon is shutting down");
  }
}

TEST_CASE("batch.max_bytes: a job over the bound fails alone, the rest go back once the bound is reached") {
  auto u = unit({1, 2, 3, 4, 5});
  u.jobs[0].payload = std::string(40, 'a');
  u.jobs[1].payload = std::string(200, 'b');  // over the bound on its own
  u.jobs[2].payload = std::string(40, 'c');
  u.jobs[2].payload_binary = std::string(10, 'x');  // binary bytes count too
  u.jobs[3].payload = std::string(20, 'd');         // 40 + 50 + 20 > 100
  u.jobs[4].payload = std::string(1, 'e');          // would fit, but comes after: key order
  const auto split = sup::split_by_max_bytes(u.jobs, 100);
  REQUIRE(split.sent.size() == 2);
  CHECK(split.sent[0].id == 1);
  CHECK(split.sent[1].id == 3);
  CHECK(split.sent[1].payload_binary.size() == 10);
  REQUIRE(split.unsent.size() == 3);
  CHECK(split.unsent[0].job_id == 2);
  CHECK(split.unsent[0].error_class == ErrorClass::kPermanent);
  CHECK(split.unsent[0].message == "payload of 200 bytes is over batch.max_bytes (100)");
  CHECK(split.unsent[1].job_id == 4);
  CHECK(split.unsent[1].error_class == ErrorClass::kRequeue);
  CHECK(split.unsent[2].job_id == 5);
  CHECK(split.unsent[2].message == "the unit reached batch.max_bytes");

  CHECK(sup::split_by_max_bytes(u.jobs, 1000).unsent.empty());
}
