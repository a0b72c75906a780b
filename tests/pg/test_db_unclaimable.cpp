// inferq.fail_unclaimable (0010): a job whose payload's JSON text cannot be
// made fails every claim of its queue; the function makes such jobs dead so
// the claims get past them.
#include <doctest.h>

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "db/listener.hpp"
#include "support/notifications.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::Listener;

// A payload of `n` copies of 1e131071: 2.3 KB stored, n * 131 KB of text;
// past 8,192 copies the text is over 1 GB and cannot be made at all.
std::string amplified_payload(int n) {
  return "jsonb_build_object('a', to_jsonb(array_fill(1e131071::numeric, ARRAY[" + std::to_string(n) + "])))";
}
constexpr int kUnservable = 8300;  // over 1 GB of text
constexpr int kOverLimit = 130;    // 17 MB of text: servable, but over enqueue's 16 MiB

struct Db : inferq::test::MigratedDb {
  // Writes a job straight into inferq.jobs, as one enqueued before 0010's
  // bounds would be; keyed ones get their key's head. Returns its id.
  std::int64_t insert(const std::string &queue, const std::string &payload, const std::string &key = "",
                      int priority = 0, const std::string &run_at = "now()") {
    pqxx::nontransaction tx(conn);
    const auto id =
        tx.exec1("INSERT INTO inferq.jobs (queue, work_unit_key, payload, priority, run_at) VALUES (" +
                 tx.quote(queue) + ", " + (key.empty() ? "NULL" : tx.quote(key)) + ", " + payload + ", " +
                 std::to_string(priority) + ", " + run_at + ") RETURNING id")[0]
            .as<std::int64_t>();
    if (!key.empty())
      tx.exec("SELECT inferq.refresh_key_head(" + tx.quote(queue) + ", " + tx.quote(key) + ")");
    return id;
  }
  int fail_unclaimable(const std::string &queue, int limit) {
    return value<int>("SELECT inferq.fail_unclaimable('" + queue + "', " + std::to_string(limit) + ")");
  }
  // The job ids of one claim (its unit), in id order; empty when nothing is claimable.
  std::vector<std::int64_t> claim(const std::string &queue, int max_jobs) {
    pqxx::nontransaction tx(conn);
    std::vector<std::int64_t> ids;
    for (const auto &r : tx.exec("SELECT job_id FROM inferq.claim('" + queue + "', 1, " +
                                 std::to_string(max_jobs) + ", 3) ORDER BY 1"))
      ids.push_back(r[0].as<std::int64_t>());
    return ids;
  }
  // The SQLSTATE of a claim that must fail.
  std::string failed_claim(const std::string &queue, int max_jobs) {
    try {
      claim(queue, max_jobs);
    } catch (const pqxx::sql_error &e) {
      return e.sqlstate();
    }
    return "(no error)";
  }
};

}  // namespace

TEST_CASE("a claim that fails on a payload whose text cannot be made succeeds after fail_unclaimable") {
  Db db;
  // Queue q: key k's head cannot be served (and ranks first), an unkeyed job
  // is over 16 MiB of text, and each has a good job behind it.
  const std::int64_t bad_keyed = db.insert("q", amplified_payload(kUnservable), "k", 10);
  const std::int64_t good_keyed = db.insert("q", "'{\"good\": \"k\"}'", "k");
  const std::int64_t over_limit = db.insert("q", amplified_payload(kOverLimit), "", 5);
  const std::int64_t good = db.insert("q", "'{\"good\": 1}'", "", 5);
  // Another queue's job is not looked at.
  const std::int64_t elsewhere = db.insert("other", amplified_payload(kOverLimit));

  const std::string sqlstate = db.failed_claim("q", 10);
  CHECK_MESSAGE((sqlstate == "54000" || sqlstate == "53200"), sqlstate);
  CHECK(db.value<int>("SELECT count(*) FROM inferq.active_sessions") == 0);  // the claim left nothing

  Listener listener(db.url, {"inferq_jobs", "inferq_done"}, "test-listener");
  listener.connect();
  CHECK(db.fail_unclaimable("q", 10) == 2);

  // The bad jobs are dead, permanently, with the reason.
  for (const auto id : {bad_keyed, over_limit}) {
    CAPTURE(id);
    const auto row = [&] {
      pqxx::nontransaction tx(db.conn);
      return tx.exec1(
          "SELECT state::text, last_error, finished_at IS NOT NULL, attempts, jsonb_array_length(errors),"
          " errors->0->>'class', errors->0->>'message' = last_error, lease_id IS NULL"
          " FROM inferq.jobs WHERE id = " +
          std::to_string(id));
    }();
    CHECK(row[0].as<std::string>() == "dead");
    CHECK(row[2].as<bool>());
    CHECK(row[3].as<int>() == 0);  // it never ran
    CHECK(row[4].as<int>() == 1);
    CHECK(row[5].as<std::string>() == "permanent");
    CHECK(row[6].as<bool>());
    CHECK(row[7].as<bool>());
    const std::string error = row[1].as<std::string>();
    if (id == bad_keyed) {
      // 54000 from the string buffer's 1 GB limit (53200 if memory ran out first).
      CHECK_MESSAGE(error.rfind("payload cannot be served: its JSON text could not be made: ", 0) == 0,
                    error);
      CHECK_MESSAGE(error.find("(SQLSTATE 5") != std::string::npos, error);
    } else {
      const auto bytes = db.value<std::string>(
          "SELECT octet_length(payload::text) FROM inferq.jobs WHERE id = " + std::to_string(id));
      CHECK(error == "payload cannot be served: its JSON text is " + bytes +
                         " bytes, over the limit of 16777216 bytes (16 MiB) (SQLSTATE 54000)");
    }
  }
  int done = 0;
  for (const auto &n : inferq::test::drain(db.url, listener))
    done += n.channel == "inferq_done" &&
            (n.payload == std::to_string(bad_keyed) || n.payload == std::to_string(over_limit));
  CHECK(done == 2);

  // The claims get past them: the unkeyed job (priority 5), then key k's next job.
  CHECK(db.claim("q", 10) == std::vector<std::int64_t>{good});
  CHECK(db.claim("q", 10) == std::vector<std::int64_t>{good_keyed});
  CHECK(db.claim("q", 10).empty());
  CHECK(db.state(elsewhere) == "available");
}

TEST_CASE("fail_unclaimable leaves servable jobs alone and returns 0") {
  Db db;
  const std::int64_t unkeyed = db.insert("q", "'{\"x\": 1}'");
  const std::int64_t keyed = db.insert("q", "'{\"x\": 2}'", "k", 3);
  const std::int64_t big = db.insert("q", "jsonb_build_object('x', repeat('a', 16 * 1024 * 1024 - 64))");
  // Over the limit but not yet due: no claim would take it now.
  const std::int64_t later =
      db.insert("q", amplified_payload(kOverLimit), "", 9, "now() + interval '1 hour'");
  const auto before =
      db.value<std::string>("SELECT md5(string_agg(j::text, ',' ORDER BY id)) FROM inferq.jobs j");

  CHECK(db.fail_unclaimable("q", 10) == 0);
  CHECK(db.fail_unclaimable("q", 0) == 0);
  CHECK(db.value<int>("SELECT inferq.fail_unclaimable('q', NULL)") == 0);
  CHECK(db.fail_unclaimable("no-such-queue", 10) == 0);

  CHECK(db.value<std::string>("SELECT md5(string_agg(j::text, ',' ORDER BY id)) FROM inferq.jobs j") ==
        before);
  CHECK(db.state(later) == "available");
  CHECK(db.claim("q", 10) == std::vector<std::int64_t>{keyed});
  CHECK(db.claim("q", 10) == std::vector<std::int64_t>{unkeyed, big});
}

TEST_CASE("fail_unclaimable looks at what the next claims would take, p_limit of each kind") {
  Db db;
  // Unkeyed, in claim order: two good jobs, then one over the limit.
  const std::int64_t first = db.insert("q", "'{}'", "", 2);
  const std::int64_t second = db.insert("q", "'{}'", "", 1);
  const std::int64_t third = db.insert("q", amplified_payload(kOverLimit), "", 0);
  // Key k: a good head, then a job over the limit.
  const std::int64_t head = db.insert("q", "'{}'", "k");
  const std::int64_t behind = db.insert("q", amplified_payload(kOverLimit), "k");

  // A claim of 2 takes first and second, or k's head and the job behind it.
  CHECK(db.fail_unclaimable("q", 2) == 1);
  CHECK(db.state(behind) == "dead");
  CHECK(db.state(third) == "available");
  CHECK(db.fail_unclaimable("q", 3) == 1);
  CHECK(db.state(third) == "dead");
  for (const auto id : {first, second, head}) CHECK(db.state(id) == "available");
  // The key's head stays its head.
  CHECK(db.value<std::int64_t>("SELECT head_id FROM inferq.key_heads WHERE work_unit_key = 'k'") == head);
}
