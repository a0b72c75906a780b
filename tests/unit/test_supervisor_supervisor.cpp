// supervisor/supervisor: the tick's logic without PostgreSQL, under a manual
// clock. The statements are an in-memory queue that records them, and the
// finished units are kept instead of written; the executors are the real
// inferq-executor with its builtin handlers. The test steps the loop itself
// (start, step, finish), so a deadline passes when it moves the clock.
#include <doctest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/settings.hpp"
#include "db/error.hpp"
#include "supervisor/supervisor.hpp"
#include "support/test_env.hpp"
#include "util/clock.hpp"

namespace {

using inferq::config::QueueSettings;
using inferq::config::Settings;
using inferq::db::ClaimedJob;
using inferq::db::ClaimedUnit;
using inferq::db::DbError;
using inferq::db::ErrorClass;
using inferq::db::UnitFinish;
using inferq::supervisor::SlotState;
using inferq::supervisor::Supervisor;
using namespace std::chrono_literals;

// PostgreSQL's part, in memory: each queue's available jobs, and every
// statement the tick made, by name, in order. Claims take jobs in id order
// under a new lease; reaping finds nothing stale (no other daemon).
class MemoryStatements final : public inferq::supervisor::TickStatements {
 public:
  std::vector<std::string> calls;
  std::vector<std::int64_t> last_keep;  // what the last reap spared
  std::vector<std::int64_t> released;   // leases given back at shutdown
  std::optional<DbError> fail_next;     // thrown by the next statement

  void add(const std::string& queue, std::int64_t id, const std::string& payload) {
    ClaimedJob job;
    job.id = id;
    job.payload = payload;
    job.attempts = 1;
    job.max_attempts = 3;
    available_[queue].push_back(job);
  }

  int socket() const override { return -1; }
  bool take_notifications() override { return false; }
  int reap(std::chrono::milliseconds, const std::vector<std::int64_t>& keep) override {
    made("reap");
    last_keep = keep;
    return 0;
  }
  inferq::db::ReapAndClaim reap_then_claim(std::chrono::milliseconds, const std::vector<std::int64_t>& keep,
                                           const std::string& queue, std::int64_t, int max_jobs,
                                           int) override {
    made("reap_then_claim");
    last_keep = keep;
    return {0, take(queue, max_jobs)};
  }
  std::optional<ClaimedUnit> claim(const std::string& queue, std::int64_t, int max_jobs, int) override {
    made("claim");
    return take(queue, max_jobs);
  }
  std::vector<ClaimedJob> claim_more(std::int64_t, const std::string&, int, int) override {
    made("claim_more");
    return {};
  }
  int fail_unclaimable(const std::string&, int) override {
    made("fail_unclaimable");
    return 0;
  }
  bool has_available_work(const std::string& queue) override {
    made("has_available_work");
    return !available_[queue].empty();
  }
  std::optional<std::string> missing_sink(const Settings&) override {
    made("missing_sink");
    return std::nullopt;
  }
  void set_worker_queues(std::int64_t, const std::vector<std::string>&) override {
    made("set_worker_queues");
  }
  int release(const std::vector<std::int64_t>& leases) override {
    made("release");
    released.insert(released.end(), leases.begin(), leases.end());
    return static_cast<int>(leases.size());
  }
  void deregister_worker(std::int64_t) override { made("deregister_worker"); }

 private:
  void made(const std::string& what) {
    if (fail_next) {
      const DbError e = *fail_next;
      fail_next.reset();
      throw e;
    }
    calls.push_back(what);
  }
  std::optional<ClaimedUnit> take(const std::string& queue, int max_jobs) {
    auto& jobs = available_[queue];
    if (jobs.empty()) return std::nullopt;
    ClaimedUnit unit;
    unit.lease_id = ++last_lease_;
    while (!jobs.empty() && static_cast<int>(unit.jobs.size()) < max_jobs) {
      unit.jobs.push_back(jobs.front());
      jobs.pop_front();
    }
    return unit;
  }

  std::map<std::string, std::deque<ClaimedJob>> available_;
  std::int64_t last_lease_ = 100;
};

// The completion writer's part: keeps each unit handed to it, on the tick's
// thread (the test's), instead of writing it.
class KeptUnits final : public inferq::supervisor::UnitWriter {
 public:
  std::vector<UnitFinish> units;

  void start() override {}
  void submit(UnitFinish unit) override { units.push_back(std::move(unit)); }
  bool flush(std::chrono::steady_clock::time_point) override { return true; }
  void stop() noexcept override {}
};

QueueSettings queue(const std::string& handler, int max_jobs, std::chrono::milliseconds deadline) {
  QueueSettings q;
  q.name = "q";
  q.handler = handler;
  q.batch.max_jobs = max_jobs;
  q.deadline = deadline;
  q.retry.backoff = 1000ms;
  return q;
}

// builtin:sleep, one job a unit, two slots, with prefetch.
QueueSettings two_prefetching_slots() {
  QueueSettings q = queue("builtin:sleep", 1, 60s);
  q.instances = 2;
  q.prefetch = true;
  return q;
}

// A supervisor of one queue on the memory database, under `clock`.
struct Harness {
  explicit Harness(const QueueSettings& q) {
    settings.source = "<test>";
    settings.worker.poll_interval = 60s;  // only the test's steps and the events tick
    settings.queues.push_back(q);
    inferq::supervisor::SupervisorOptions o;
    o.settings = &settings;
    o.executor_path = inferq::test::bin_path("inferq-executor");
    o.worker_id = 1;
    o.worker_name = "test:1";
    o.clock = &clock;
    o.statements = statements;
    o.writer = writer;
    sup = std::make_unique<Supervisor>(o);
    sup->start();
  }
  ~Harness() {
    if (sup && !finished) sup->finish();
  }

  // Steps (each wait at most 20 ms of real time) until `done`; false when
  // 20 s of real time pass first.
  bool step_until(const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      sup->step(20ms);
    }
    return true;
  }
  // Until every slot is in `state`.
  bool step_until_all(SlotState state) {
    return step_until([&] {
      const auto states = sup->slot_states();
      return std::all_of(states.begin(), states.end(), [&](SlotState s) { return s == state; });
    });
  }
  std::size_t count(const std::string& call) const {
    return static_cast<std::size_t>(std::count(statements->calls.begin(), statements->calls.end(), call));
  }

  inferq::util::ManualClock clock;
  Settings settings;
  std::shared_ptr<MemoryStatements> statements = std::make_shared<MemoryStatements>();
  std::shared_ptr<KeptUnits> writer = std::make_shared<KeptUnits>();
  std::unique_ptr<Supervisor> sup;
  bool finished = false;
};

}  // namespace

TEST_CASE("every tick reaps, also while every slot is busy, and claims only for a free slot") {
  Harness h(queue("builtin:sleep", 1, 60s));
  h.statements->add("q", 1, R"({"seconds": 30})");
  h.statements->add("q", 2, R"({"seconds": 30})");
  REQUIRE(h.step_until_all(SlotState::kBusy));
  // The idle slot's tick reaped and claimed in one statement.
  CHECK(h.count("reap_then_claim") >= 1);
  const auto claims = h.count("reap_then_claim") + h.count("claim");
  REQUIRE(h.writer->units.empty());

  // The only slot is busy (the semaphore is full) and job 2 is due: each
  // tick still reaps first, sparing the running unit's lease, and claims nothing.
  for (int i = 0; i < 5; ++i) {
    const auto reaps = h.count("reap");
    h.sup->step(1ms);
    CHECK(h.count("reap") == reaps + 1);
    CHECK(h.statements->last_keep == std::vector<std::int64_t>{101});
  }
  CHECK(h.count("reap_then_claim") + h.count("claim") == claims);

  // Shutting down gives the running unit back for other daemons.
  h.finished = true;
  CHECK(h.sup->finish() == 0);
  CHECK(h.statements->released == std::vector<std::int64_t>{101});
  CHECK(h.count("deregister_worker") == 1);
}

TEST_CASE(
    "a unit past its deadline fails as deadline, its executor is replaced, and its slot runs the next") {
  Harness h(queue("builtin:sleep", 1, 5s));
  h.statements->add("q", 1, R"({"seconds": 30})");
  REQUIRE(h.step_until_all(SlotState::kBusy));

  // Just before its deadline nothing happens; at it, the unit fails.
  h.clock.advance(5s - 1ms);
  h.sup->step(1ms);
  CHECK(h.sup->slot_states() == std::vector<SlotState>{SlotState::kBusy});
  CHECK(h.writer->units.empty());
  h.clock.advance(1ms);
  h.sup->step(1ms);
  REQUIRE(h.writer->units.size() == 1);
  const UnitFinish& failed = h.writer->units[0];
  CHECK(failed.lease_id == 101);
  REQUIRE(failed.jobs.size() == 1);
  CHECK(failed.jobs[0].job_id == 1);
  CHECK_FALSE(failed.jobs[0].ok);
  CHECK(failed.jobs[0].error_class == ErrorClass::kDeadline);
  CHECK(failed.jobs[0].message == "deadline exceeded after 5s");
  CHECK(failed.jobs[0].retry_ms >= 500);  // the queue's backoff, jittered

  // The killed executor is replaced at once (it had been ready), and the
  // slot takes the next job without the clock moving on.
  REQUIRE(h.step_until_all(SlotState::kIdle));
  h.statements->add("q", 2, R"({"seconds": 0})");
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 2; }));
  const UnitFinish& next = h.writer->units[1];
  CHECK(next.lease_id == 102);
  REQUIRE(next.jobs.size() == 1);
  CHECK(next.jobs[0].job_id == 2);
  CHECK_MESSAGE(next.jobs[0].ok, next.jobs[0].message);
}

TEST_CASE("a unit's answer is handed to the writer, and the slot claims again") {
  Harness h(queue("builtin:echo", 2, 30s));
  h.statements->add("q", 1, R"({"n": 1})");
  h.statements->add("q", 2, R"({"n": 2})");
  h.statements->add("q", 3, R"({"n": 3})");
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 2; }));
  // Two units of at most two jobs, in id order, each with its own lease.
  const auto& first = h.writer->units[0];
  const auto& second = h.writer->units[1];
  CHECK(first.lease_id == 101);
  CHECK(second.lease_id == 102);
  REQUIRE(first.jobs.size() == 2);
  REQUIRE(second.jobs.size() == 1);
  CHECK(first.jobs[0].job_id == 1);
  CHECK(first.jobs[1].job_id == 2);
  CHECK(second.jobs[0].job_id == 3);
  for (const auto* u : {&first, &second}) {
    CHECK(u->queue == "q");
    for (const auto& j : u->jobs) {
      CHECK(j.ok);
      CHECK(j.result_json == "{\"n\": " + std::to_string(j.job_id) + "}");
    }
  }
  CHECK(h.sup->slot_states() == std::vector<SlotState>{SlotState::kIdle});
}

TEST_CASE("a failed statement backs the tick off: no statement until the backoff has passed") {
  Harness h(queue("builtin:echo", 1, 30s));
  REQUIRE(h.step_until_all(SlotState::kIdle));
  h.statements->fail_next = DbError("server closed the connection unexpectedly", true);
  h.sup->step(1ms);  // its reap fails: an outage
  const auto made = h.statements->calls.size();
  h.statements->add("q", 1, R"({"n": 1})");
  for (int i = 0; i < 3; ++i) h.sup->step(1ms);
  CHECK(h.statements->calls.size() == made);
  CHECK(h.writer->units.empty());

  // The first backoff is at most a second; then the tick reaps and claims.
  h.clock.advance(1s);
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 1; }));
  CHECK(h.statements->calls.size() > made);
  CHECK(h.writer->units[0].jobs[0].ok);
}

TEST_CASE("an executor that dies on its unit fails it as a crash and is replaced") {
  Harness h(queue("builtin:crash", 1, 30s));
  h.statements->add("q", 1, R"({"boom": true})");
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 1; }));
  const auto& crashed = h.writer->units[0].jobs;
  REQUIRE(crashed.size() == 1);
  CHECK(crashed[0].error_class == ErrorClass::kCrash);
  CHECK_MESSAGE(crashed[0].message.find("SIGABRT") != std::string::npos, crashed[0].message);
  REQUIRE(h.step_until_all(SlotState::kIdle));
}

TEST_CASE("with prefetch, idle slots are claimed for before busy slots' next units") {
  Harness h(two_prefetching_slots());
  REQUIRE(h.step_until_all(SlotState::kIdle));
  h.statements->add("q", 1, R"({"seconds": 30})");
  h.statements->add("q", 2, R"({"seconds": 30})");
  h.statements->add("q", 3, R"({"seconds": 30})");
  REQUIRE(h.step_until_all(SlotState::kBusy));
  // Jobs 1 and 2 run, one per slot (leases 101 and 102); job 3 waits as
  // the first slot's next (103). A shutdown gives back each slot's unit,
  // then its next.
  h.finished = true;
  CHECK(h.sup->finish() == 0);
  CHECK(h.statements->released == std::vector<std::int64_t>{101, 103, 102});
}

TEST_CASE("a unit claimed ahead moves to a slot of its queue that is idle, not waiting behind a long unit") {
  Harness h(two_prefetching_slots());
  REQUIRE(h.step_until_all(SlotState::kIdle));
  // Slot 0 runs the long job 1, slot 1 the short job 2; job 3 is claimed
  // ahead as slot 0's next (slot 1 asks after it).
  h.statements->add("q", 1, R"({"seconds": 30})");
  h.statements->add("q", 2, R"({"seconds": 0.2})");
  h.statements->add("q", 3, R"({"seconds": 0})");
  REQUIRE(h.step_until_all(SlotState::kBusy));
  // Job 2 ends; slot 1 is idle, so job 3 runs there now, not in 30 s.
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 2; }));
  CHECK(h.writer->units[0].jobs[0].job_id == 2);
  CHECK(h.writer->units[1].jobs[0].job_id == 3);
  CHECK(h.writer->units[1].jobs[0].ok);
  CHECK(h.sup->slot_states() == std::vector<SlotState>{SlotState::kBusy, SlotState::kIdle});
}

TEST_CASE(
    "with a backlog, a unit claimed ahead behind a long unit runs on the next slot free, before later ones") {
  Harness h(two_prefetching_slots());
  REQUIRE(h.step_until_all(SlotState::kIdle));
  // Slot 0 runs the long job 1, slot 1 the short job 2; job 3 waits as slot
  // 0's next and job 4 as slot 1's. Job 5 is the backlog that the reap's
  // claim for a free slot would find.
  h.statements->add("q", 1, R"({"seconds": 30})");
  h.statements->add("q", 2, R"({"seconds": 0.2})");
  h.statements->add("q", 3, R"({"seconds": 0})");
  h.statements->add("q", 4, R"({"seconds": 0})");
  h.statements->add("q", 5, R"({"seconds": 0})");
  REQUIRE(h.step_until_all(SlotState::kBusy));
  // Job 2 ends: slot 1 takes job 3, claimed first, not its own job 4 nor
  // job 5 from the database; job 3 does not wait 30 s behind job 1.
  REQUIRE(h.step_until([&] { return h.writer->units.size() == 4; }));
  std::vector<std::int64_t> order;
  for (const auto& u : h.writer->units) order.push_back(u.jobs[0].job_id);
  CHECK(order == std::vector<std::int64_t>{2, 3, 4, 5});
  for (const auto& u : h.writer->units) CHECK(u.jobs[0].ok);
}
