// A least-privilege producer (0010): inferq.grant_producer gives a login role
// inferq.enqueue, inferq.cancel of its own jobs and inferq.my_jobs, and
// nothing else; the two functions run as their owner with a search_path the
// caller cannot change.
#include <doctest.h>

#include <unistd.h>

#include <cstdint>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/producer_ops.hpp"
#include "db/session.hpp"
#include "support/worker_db.hpp"

namespace {

// Its connection is the owner's: the harness's superuser ran the migrations.
using OwnerDb = inferq::test::MigratedDb;

// A LOGIN role made for one test case (roles are cluster-wide, so the name is
// unique) and dropped with its grants at the end; connections made as it
// must be closed first.
class LoginRole {
 public:
  LoginRole(OwnerDb &db, const std::string &what) : db_(db) {
    static int made = 0;
    name_ = "inferq_test_" + what + "_" + std::to_string(::getpid()) + "_" + std::to_string(++made);
    db_.exec("CREATE ROLE " + name_ + " LOGIN");
  }
  ~LoginRole() {
    try {
      db_.exec("DROP OWNED BY " + name_);
      db_.exec("DROP ROLE " + name_);
    } catch (const std::exception &e) {
      MESSAGE("could not drop role " << name_ << ": " << e.what());
    }
  }
  LoginRole(const LoginRole &) = delete;
  LoginRole &operator=(const LoginRole &) = delete;

  const std::string &name() const { return name_; }

  // The database's URL with this role as the user.
  std::string url() const {
    std::string url = db_.url;
    const auto at = url.find("://") + 3;
    url.replace(at, url.find('@') - at, name_);
    return url;
  }

 private:
  OwnerDb &db_;
  std::string name_;
};

// libpqxx 6 throws pqxx::insufficient_privilege without its SQLSTATE.
std::string sqlstate_of(const pqxx::sql_error &e) {
  if (e.sqlstate().empty() && dynamic_cast<const pqxx::insufficient_privilege *>(&e) != nullptr)
    return "42501";
  return e.sqlstate();
}

// A connection as a role, with the helpers the tests need.
struct As {
  pqxx::connection conn;
  explicit As(const LoginRole &role) : conn(role.url()) {}

  std::int64_t enqueue(const std::string &args = "'q', '{}'") {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT inferq.enqueue(" + args + ")")[0].as<std::int64_t>();
  }
  bool cancel(std::int64_t id) {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT inferq.cancel(" + std::to_string(id) + ")")[0].as<bool>();
  }
  // The primary message and SQLSTATE of a statement that must fail. (Read
  // through references, not a structured binding: doctest's macros capture
  // in lambdas, which clang 14 refuses for a binding.)
  std::pair<std::string, std::string> sql_error(const std::string &sql) {
    try {
      pqxx::nontransaction tx(conn);
      tx.exec(sql);
    } catch (const pqxx::sql_error &e) {
      std::string what = e.what();
      what = what.substr(0, what.find('\n'));
      return {what, sqlstate_of(e)};
    }
    return {"(no error)", ""};
  }
};

const std::string kInsufficientPrivilege = "42501";

}  // namespace

TEST_CASE("a producer enqueues and reads its own jobs in inferq.my_jobs, not another producer's") {
  OwnerDb db;
  LoginRole alice(db, "alice");
  LoginRole bob(db, "bob");
  db.exec("SELECT inferq.grant_producer('" + alice.name() + "')");
  db.exec("SELECT inferq.grant_producer('" + bob.name() + "')");
  {
    As a(alice);
    As b(bob);
    const std::int64_t mine = a.enqueue("'q', '{\"n\": 1}', 'k', 3, now(), 2");
    const std::int64_t theirs = b.enqueue();
    const std::int64_t owners = db.value<std::int64_t>("SELECT inferq.enqueue('q', '{}')");
    CHECK(mine > 0);

    // enqueued_by is the caller's login role, though the function runs as its owner.
    CHECK(db.value<std::string>("SELECT enqueued_by FROM inferq.jobs WHERE id = " + std::to_string(mine)) ==
          alice.name());
    CHECK(db.value<std::string>("SELECT enqueued_by FROM inferq.jobs WHERE id = " + std::to_string(theirs)) ==
          bob.name());
    CHECK(db.value<std::string>("SELECT enqueued_by FROM inferq.jobs WHERE id = " + std::to_string(owners)) ==
          "inferq");
    // A row written directly records its writer too (the column's default).
    CHECK(db.value<std::string>(
              "INSERT INTO inferq.jobs (queue, payload) VALUES ('q', '{}') RETURNING enqueued_by") ==
          "inferq");

    pqxx::nontransaction tx(a.conn);
    const auto rows = tx.exec(
        "SELECT id, queue, work_unit_key, state::text, priority, attempts, max_attempts, run_at <= now(),"
        " created_at IS NOT NULL, started_at IS NULL, finished_at IS NULL, result IS NULL, last_error IS NULL"
        " FROM inferq.my_jobs");
    REQUIRE(rows.size() == 1);
    const auto row = rows[0];
    CHECK(row[0].as<std::int64_t>() == mine);
    CHECK(row[1].as<std::string>() == "q");
    CHECK(row[2].as<std::string>() == "k");
    CHECK(row[3].as<std::string>() == "available");
    CHECK(row[4].as<int>() == 3);
    CHECK(row[5].as<int>() == 0);
    CHECK(row[6].as<int>() == 2);
    for (int i = 7; i < 13; ++i) CHECK(row[i].as<bool>());
    // The id of another's job finds nothing.
    CHECK(tx.exec("SELECT 1 FROM inferq.my_jobs WHERE id = " + std::to_string(theirs)).empty());

    // The view shows exactly these columns (no payload, no lease, no enqueued_by).
    std::vector<std::string> columns;
    for (const auto &c :
         tx.exec("SELECT column_name FROM information_schema.columns"
                 " WHERE table_schema = 'inferq' AND table_name = 'my_jobs' ORDER BY ordinal_position"))
      columns.push_back(c[0].as<std::string>());
    CHECK(columns == std::vector<std::string>{"id", "queue", "work_unit_key", "state", "priority", "attempts",
                                              "max_attempts", "run_at", "created_at", "started_at",
                                              "finished_at", "result", "last_error", "result_binary",
                                              "unique_key"});
  }
}

TEST_CASE("a producer cancels its own jobs; another's job is refused with 42501 and left as it was") {
  OwnerDb db;
  LoginRole alice(db, "alice");
  LoginRole bob(db, "bob");
  LoginRole ops(db, "ops");
  db.exec("SELECT inferq.grant_producer('" + alice.name() + "')");
  db.exec("SELECT inferq.grant_producer('" + bob.name() + "')");
  // A member of the owner's role (an operator) may cancel any job.
  db.exec("GRANT inferq TO " + ops.name());
  {
    As a(alice);
    As b(bob);
    const std::int64_t keyed = a.enqueue("'q', '{}', 'k'");
    const std::int64_t plain = a.enqueue();
    const std::int64_t theirs = b.enqueue();
    const std::int64_t theirs_too = b.enqueue();

    // Its own keyed job: cancelled, and the key's head (written with the
    // owner's rights) moves on.
    CHECK(db.value<int>("SELECT count(*) FROM inferq.key_heads") == 1);
    CHECK(a.cancel(keyed));
    CHECK(db.state(keyed) == "cancelled");
    CHECK(db.value<int>("SELECT count(*) FROM inferq.key_heads") == 0);
    CHECK(a.cancel(plain));
    CHECK_FALSE(a.cancel(plain));          // already finished
    CHECK_FALSE(a.cancel(theirs + 1000));  // no such job
    {
      pqxx::nontransaction tx(a.conn);
      CHECK(tx.exec1("SELECT count(*) FROM inferq.my_jobs WHERE state = 'cancelled'")[0].as<int>() == 2);
    }

    const auto error = a.sql_error("SELECT inferq.cancel(" + std::to_string(theirs) + ")");
    const std::string &message = error.first;
    const std::string &sqlstate = error.second;
    CHECK(message == "ERROR:  inferq.cancel: job " + std::to_string(theirs) + " was not enqueued by role " +
                         alice.name());
    CHECK(sqlstate == kInsufficientPrivilege);
    CHECK(db.state(theirs) == "available");
    CHECK_FALSE(
        db.value<bool>("SELECT cancel_requested FROM inferq.jobs WHERE id = " + std::to_string(theirs)));

    // A job from before 0010 (no enqueued_by) is nobody's: refused too.
    const auto unknown = db.value<std::int64_t>(
        "INSERT INTO inferq.jobs (queue, payload, enqueued_by) VALUES ('q', '{}', NULL) RETURNING id");
    CHECK(a.sql_error("SELECT inferq.cancel(" + std::to_string(unknown) + ")").second ==
          kInsufficientPrivilege);

    // The owner (here a superuser) and members of its role cancel any job.
    As o(ops);
    CHECK(o.cancel(theirs));
    CHECK(db.state(theirs) == "cancelled");
    CHECK(db.value<bool>("SELECT inferq.cancel(" + std::to_string(theirs_too) + ")"));
    CHECK(db.value<bool>("SELECT inferq.cancel(" + std::to_string(unknown) + ")"));
  }
}

TEST_CASE("a producer is refused the tables, the daemon's functions and CREATE in schema inferq") {
  OwnerDb db;
  LoginRole alice(db, "alice");
  db.exec("SELECT inferq.grant_producer('" + alice.name() + "')");
  {
    As a(alice);
    const std::vector<std::string> refused = {
        "SELECT count(*) FROM inferq.jobs",
        "INSERT INTO inferq.jobs (queue, payload) VALUES ('q', '{}')",
        "UPDATE inferq.jobs SET priority = 1",
        "DELETE FROM inferq.jobs",
        "SELECT * FROM inferq.active_sessions",
        "SELECT * FROM inferq.workers",
        "SELECT * FROM inferq.key_heads",
        "SELECT * FROM inferq.claim('q', 1, 1, 1)",
        "SELECT * FROM inferq.claim_more(1, 'q', 1, 1)",
        "SELECT inferq.reap('1 second', '{}')",
        "SELECT inferq.complete('[]', 'w')",
        "SELECT * FROM inferq.complete_outcomes('[]', 'w')",
        "SELECT inferq.release('{}')",
        "SELECT inferq.heartbeat(1, '{}')",
        "SELECT inferq.fail_unclaimable('q', 1)",
        "SELECT inferq.rebuild_key_heads()",
        "SELECT inferq.refresh_key_head('q', 'k')",
        "SELECT inferq.grant_producer('" + alice.name() + "')",
        // No CREATE on the schema: nothing can be put in front of inferq's names.
        "CREATE TABLE inferq.shadow (x integer)",
        "CREATE FUNCTION inferq.shadow() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
        "CREATE VIEW inferq.shadow AS SELECT 1",
    };
    for (const auto &sql : refused) {
      CAPTURE(sql);
      const auto error = a.sql_error(sql);
      const std::string &message = error.first;
      const std::string &sqlstate = error.second;
      CHECK_MESSAGE(sqlstate == kInsufficientPrivilege, message);
    }
    CHECK(db.value<int>("SELECT count(*) FROM inferq.jobs") == 0);

    // What it may do, all of it: a later migration's function that is not
    // revoked from PUBLIC shows up here.
    pqxx::nontransaction tx(a.conn);
    std::set<std::string> functions;
    for (const auto &r : tx.exec(
             "SELECT p.oid::regprocedure::text FROM pg_proc p"
             " WHERE p.pronamespace = 'inferq'::regnamespace AND has_function_privilege(p.oid, 'EXECUTE')"))
      functions.insert(r[0].as<std::string>());
    CHECK(functions ==
          std::set<std::string>{
              "inferq.cancel(bigint)",
              "inferq.enqueue(text,jsonb,text,integer,timestamp with time zone,integer,bytea,text)",
              "inferq.tensor_bytes(real[])", "inferq.tensor_bytes(double precision[])",
              "inferq.tensor_bytes(bigint[])", "inferq.tensor_bytes(integer[])",
              "inferq.output_real(jsonb,bytea,text)", "inferq.output_double(jsonb,bytea,text)",
              "inferq.output_bigint(jsonb,bytea,text)"});
    std::set<std::string> relations;
    for (const auto &r :
         tx.exec("SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'inferq'::regnamespace"
                 " AND (has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, "
                 "TRIGGER')"
                 "      OR (c.relkind = 'S' AND has_sequence_privilege(c.oid, 'USAGE, SELECT, UPDATE')))"))
      relations.insert(r[0].as<std::string>());
    CHECK(relations == std::set<std::string>{"my_jobs"});
    CHECK_FALSE(
        tx.exec1("SELECT has_table_privilege('inferq.my_jobs', 'INSERT, UPDATE, DELETE')")[0].as<bool>());
  }
}

TEST_CASE("a role without grant_producer can neither enqueue nor cancel nor read my_jobs") {
  OwnerDb db;
  LoginRole stranger(db, "stranger");
  const std::int64_t id = db.value<std::int64_t>("SELECT inferq.enqueue('q', '{}')");
  {
    As s(stranger);
    const std::vector<std::string> statements = {"SELECT inferq.enqueue('q', '{}')",
                                                 "SELECT inferq.cancel(" + std::to_string(id) + ")",
                                                 "SELECT * FROM inferq.my_jobs"};
    for (const auto &sql : statements) {
      CAPTURE(sql);
      CHECK(s.sql_error(sql).second == kInsufficientPrivilege);
    }
    // Even with the schema's USAGE (as 0001-era setups granted it), the
    // functions are not PUBLIC any more.
    db.exec("GRANT USAGE ON SCHEMA inferq TO " + stranger.name());
    for (const auto &sql : statements) {
      CAPTURE(sql);
      const auto error = s.sql_error(sql);
      const std::string &message = error.first;
      const std::string &sqlstate = error.second;
      CHECK_MESSAGE(sqlstate == kInsufficientPrivilege, message);
    }
  }
  CHECK(db.value<int>("SELECT count(*) FROM inferq.jobs") == 1);
  CHECK(db.state(id) == "available");
}

TEST_CASE("the producer's search_path does not reach inside enqueue and cancel") {
  OwnerDb db;
  LoginRole alice(db, "alice");
  db.exec("SELECT inferq.grant_producer('" + alice.name() + "')");
  const std::int64_t owners = db.value<std::int64_t>("SELECT inferq.enqueue('q', '{}')");
  {
    As a(alice);
    {
      pqxx::nontransaction tx(a.conn);  // temporary tables and SET last as long as the session
      // A temporary pg_class that names alice the owner of inferq.jobs, put
      // first in the search_path: cancel's ownership check would read it if
      // the function ran under the caller's search_path.
      tx.exec("CREATE TEMP TABLE pg_class (oid oid, relowner oid)");
      tx.exec(
          "INSERT INTO pg_temp.pg_class SELECT 'inferq.jobs'::regclass, r.oid"
          " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user");
      // And a temporary jobs table, where an unqualified name would land.
      tx.exec(
          "CREATE TEMP TABLE jobs (id bigserial, queue text, work_unit_key text, payload jsonb,"
          " priority integer, run_at timestamptz, max_attempts integer, enqueued_by name)");
      tx.exec("SET search_path = pg_temp, pg_catalog");
    }
    CHECK(a.sql_error("SELECT inferq.cancel(" + std::to_string(owners) + ")").second ==
          kInsufficientPrivilege);
    pqxx::nontransaction tx(a.conn);
    const auto id = tx.exec1("SELECT inferq.enqueue('q', '{}')")[0].as<std::int64_t>();
    CHECK(tx.exec1("SELECT count(*) FROM pg_temp.jobs")[0].as<int>() == 0);
    CHECK(db.value<std::string>("SELECT enqueued_by FROM inferq.jobs WHERE id = " + std::to_string(id)) ==
          alice.name());
  }
  CHECK(db.state(owners) == "available");
  // Both functions pin their search_path and run as the owner.
  CHECK(
      db.value<int>("SELECT count(*) FROM pg_proc p WHERE p.oid IN ("
                    "'inferq.cancel(bigint)'::regprocedure,"
                    " 'inferq.enqueue(text,jsonb,text,integer,timestamptz,integer,bytea,text)'::regprocedure)"
                    " AND p.prosecdef AND p.proconfig = '{\"search_path=pg_catalog, pg_temp\"}'") == 2);
}

TEST_CASE("what inferq enqueue --wait does (db::enqueue, then db::get_job) works for a producer role") {
  OwnerDb db;
  LoginRole alice(db, "alice");
  LoginRole bob(db, "bob");
  db.exec("SELECT inferq.grant_producer('" + alice.name() + "')");
  db.exec("SELECT inferq.grant_producer('" + bob.name() + "')");
  inferq::db::Session session(alice.url(), "inferq enqueue");
  inferq::db::EnqueueRequest request;
  request.queue = "q";
  request.payload_json = R"({"x": 1})";
  const std::int64_t id = inferq::db::enqueue(session, request);
  const auto job = inferq::db::get_job(session, id);
  REQUIRE(job);
  CHECK(job->id == id);
  CHECK(job->queue == "q");
  CHECK(job->state == "available");
  // Another producer does not see it.
  inferq::db::Session other(bob.url(), "inferq enqueue");
  CHECK_FALSE(inferq::db::get_job(other, id).has_value());
}
