// The completion writer against a real PostgreSQL: a backlog of finished
// units is written in transactions of bounded size, so that none holds back
// VACUUM for long, and a unit is never split between two of them.
#include "supervisor/completion_writer.hpp"

#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "supervisor/lease_registry.hpp"
#include "support/worker_db.hpp"

TEST_CASE("a backlog of finished units is written in transactions of at most 4,096 jobs, units whole") {
  inferq::test::WorkerDb db;  // its daemon "h:1"
  db.exec("SELECT inferq.enqueue('q', '{}') FROM generate_series(1, 17000)");

  // Twelve units of 1,000 jobs and one of 5,000 (over the bound), all queued
  // before the writer starts, as a writer that fell behind would find them.
  inferq::supervisor::LeaseRegistry leases;
  inferq::supervisor::CompletionWriter writer(db.url, "h:1", leases, [] {});
  std::vector<std::int64_t> big_unit_jobs;
  for (int i = 0; i < 13; ++i) {
    const auto unit = inferq::db::claim(db.session, "q", db.worker, i == 6 ? 5000 : 1000, 3);
    REQUIRE(unit);
    leases.add(unit->lease_id);
    inferq::db::UnitFinish finish{unit->lease_id, {}};
    for (const auto& job : unit->jobs) {
      finish.jobs.push_back({job.id, true, "{}", {}, "", 0});
      if (i == 6) big_unit_jobs.push_back(job.id);
    }
    writer.submit(std::move(finish));
  }
  REQUIRE(big_unit_jobs.size() == 5000);
  writer.start();
  REQUIRE(writer.flush(std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  CHECK(writer.jobs_written() == 17000);

  // Each write's transaction is the xmin of the rows it updated.
  pqxx::nontransaction tx(db.conn);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded'")[0].as<int>() == 17000);
  const auto writes =
      tx.exec("SELECT count(*), min(id), max(id) FROM inferq.jobs GROUP BY xmin::text ORDER BY min(id)");
  CHECK(writes.size() >= 4);
  // By index, not front()/back(): GCC 12 warns of a bogus out-of-bounds read.
  const std::int64_t big_first = big_unit_jobs.at(0);
  const std::int64_t big_last = big_unit_jobs.at(4999);
  for (const auto& w : writes) {
    const auto jobs = w[0].as<long>();
    CAPTURE(jobs);
    const bool the_big_unit =
        w[1].as<std::int64_t>() == big_first && w[2].as<std::int64_t>() == big_last && jobs == 5000;
    CHECK((jobs <= 4096 || the_big_unit));
    // Whole units: a write holds a multiple of 1,000 jobs, or the big unit.
    CHECK((jobs % 1000 == 0 || the_big_unit));
  }
  writer.stop();
}

TEST_CASE("results past 256 MiB in one unit fail instead of making a write that can never succeed") {
  // Before the bound, a unit's document over PostgreSQL's 1 GiB message limit
  // reset the connection, which is retryable: that write was retried forever
  // and every completion behind it waited. 3 x 90 MiB shows the bound itself.
  inferq::test::WorkerDb db;  // its daemon "h:1"
  db.exec("SELECT inferq.enqueue('q', '{}') FROM generate_series(1, 4)");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 3, 3);
  const auto other = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  REQUIRE(unit);
  REQUIRE(other);
  REQUIRE(unit->jobs.size() == 3);
  inferq::supervisor::LeaseRegistry leases;
  inferq::supervisor::CompletionWriter writer(db.url, "h:1", leases, [] {});
  const std::string big = "\"" + std::string(90u << 20, 'x') + "\"";
  inferq::db::UnitFinish finish{unit->lease_id, {}};
  for (const auto& job : unit->jobs) finish.jobs.push_back({job.id, true, big, {}, "", 0});
  writer.submit(std::move(finish));
  writer.submit({other->lease_id, {{other->jobs[0].id, true, "{\"small\": 1}", {}, "", 0}}});
  writer.start();
  REQUIRE(writer.flush(std::chrono::steady_clock::now() + std::chrono::seconds(50)));
  CHECK(writer.jobs_written() == 4);
  pqxx::nontransaction tx(db.conn);
  const auto rows = tx.exec(
      "SELECT state, octet_length(result::text), last_error FROM inferq.jobs WHERE lease_id IS NULL ORDER BY "
      "id");
  REQUIRE(rows.size() == 4);
  int stored = 0;
  for (int i = 0; i < 3; ++i) {
    if (rows[i][0].as<std::string>() == "succeeded") {
      ++stored;
      CHECK(rows[i][1].as<long>() == static_cast<long>(big.size()));
    } else {
      CHECK(rows[i][0].as<std::string>() == "dead");
      CHECK(rows[i][2].as<std::string>().find(
                "could not be stored: a unit's results are written 256 MiB at most") != std::string::npos);
    }
  }
  CHECK(stored == 2);
  CHECK(rows[3][0].as<std::string>() == "succeeded");
  writer.stop();
}
