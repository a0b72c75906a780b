// Binary tensors in the database (migration 0012): inferq.enqueue stores a
// job's payload_binary, the claims return it, the completion writes a binary
// queue's result_binary (and calls its sink with the bytes), and the SQL
// helpers turn arrays into bytes and outputs back into arrays. Producers of
// a database migrated before 0012 keep their rights.
#include <doctest.h>

#include <pqxx/pqxx>

#include <string>
#include <vector>

#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::JobFinish;
using inferq::db::Session;
using inferq::db::UnitFinish;

using Db = inferq::test::WorkerDb;

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (const int v : values) s += static_cast<char>(v);
  return s;
}

JobFinish ok(std::int64_t id, const std::string& result_binary) {
  JobFinish f;
  f.job_id = id;
  f.ok = true;
  f.result_json = R"({"outputs": [{"name": "y", "datatype": "UINT8", "shape": [)" +
                  std::to_string(result_binary.size()) + R"(], "parameters": {"binary_data_size": )" +
                  std::to_string(result_binary.size()) + "}}]}";
  f.result_binary = result_binary;
  return f;
}

}  // namespace

TEST_CASE("enqueue stores payload_binary, bounded at 16 MiB; without it the column is NULL") {
  Db db;
  const auto with = db.scalar("SELECT inferq.enqueue('q', '{}', payload_binary => '\\x00ff10'::bytea)");
  const auto without = db.scalar("SELECT inferq.enqueue('q', '{}')");
  CHECK(db.scalar("SELECT payload_binary FROM inferq.jobs WHERE id = " + with) == "\\x00ff10");
  CHECK(db.scalar("SELECT payload_binary IS NULL FROM inferq.jobs WHERE id = " + without) == "t");

  CHECK(
      db.error("SELECT inferq.enqueue('q', '{}', payload_binary => decode(repeat('00', 16777217), 'hex'))") ==
      "ERROR:  inferq.enqueue: payload_binary is 16777217 bytes, over the limit of 16777216 bytes (16 MiB)");
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs") == "2");
  CHECK(db.scalar(
            "SELECT inferq.enqueue('q', '{}', payload_binary => decode(repeat('00', 16777216), 'hex'))") !=
        "NULL");
}

TEST_CASE("claim and claim_more return each job's payload_binary; a job without one has none") {
  Db db;
  db.exec("SELECT inferq.enqueue('q', '{\"n\": 1}', payload_binary => '\\x0102'::bytea)");
  db.exec("SELECT inferq.enqueue('q', '{\"n\": 2}')");
  db.exec("SELECT inferq.enqueue('q', '{\"n\": 3}', payload_binary => '\\x000300'::bytea)");
  db.exec("SELECT inferq.enqueue('q', '{\"n\": 4}', payload_binary => ''::bytea)");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 2, 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 2);
  CHECK(unit->jobs[0].payload == R"({"n": 1})");
  CHECK(unit->jobs[0].payload_binary == bytes({1, 2}));
  CHECK(unit->jobs[1].payload_binary.empty());
  const auto more = inferq::db::claim_more(db.session, unit->lease_id, "q", 5, 3);
  REQUIRE(more.size() == 2);
  CHECK(more[0].payload_binary == bytes({0, 3, 0}));  // embedded NUL bytes survive
  CHECK(more[1].payload_binary.empty());

  // A keyed unit goes through the claim's other path.
  db.exec("SELECT inferq.enqueue('q', '{}', work_unit_key => 'k', payload_binary => '\\xfe'::bytea)");
  const auto keyed = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(keyed);
  REQUIRE(keyed->jobs.size() == 1);
  CHECK(keyed->jobs[0].payload_binary == bytes({0xfe}));
}

TEST_CASE("a binary unit's completion writes result_binary; a JSON unit's and a failure's stay NULL") {
  Db db;
  for (int i = 0; i < 4; ++i) db.exec("SELECT inferq.enqueue('q', '{}')");
  const auto a = inferq::db::claim(db.session, "q", db.worker, 3, 1);
  const auto b = inferq::db::claim(db.session, "q", db.worker, 1, 1);
  REQUIRE(a);
  REQUIRE(a->jobs.size() == 3);
  REQUIRE(b);

  UnitFinish binary;
  binary.lease_id = a->lease_id;
  binary.binary_outputs = true;
  binary.jobs.push_back(ok(a->jobs[0].id, bytes({0, 1, 0xff, 0})));
  binary.jobs.push_back(ok(a->jobs[1].id, ""));
  JobFinish failed;
  failed.job_id = a->jobs[2].id;
  failed.error_class = inferq::db::ErrorClass::kPermanent;
  failed.message = "bad input";
  binary.jobs.push_back(failed);
  UnitFinish json;
  json.lease_id = b->lease_id;
  JobFinish plain;
  plain.job_id = b->jobs[0].id;
  plain.ok = true;
  plain.result_json = R"({"outputs": []})";
  json.jobs.push_back(plain);
  CHECK(inferq::db::complete(db.session, {binary, json}, "h:1") == 4);

  const auto column = [&](std::int64_t id) {
    return db.scalar("SELECT result_binary FROM inferq.jobs WHERE id = " + std::to_string(id));
  };
  CHECK(column(a->jobs[0].id) == "\\x0001ff00");
  CHECK(column(a->jobs[1].id) == "\\x");  // empty bytes, not NULL
  CHECK(column(a->jobs[2].id) == "NULL");
  CHECK(db.scalar("SELECT state FROM inferq.jobs WHERE id = " + std::to_string(a->jobs[2].id)) == "dead");
  CHECK(column(b->jobs[0].id) == "NULL");
  CHECK(db.scalar("SELECT inferq.output_bigint(result, result_binary, 'y') FROM inferq.jobs WHERE id = " +
                  std::to_string(a->jobs[0].id)) == "{0,1,255,0}");
}

TEST_CASE(
    "a binary queue's sink takes the bytes as its fourth argument; a three-argument one fails the job") {
  Db db;
  db.exec(R"(
CREATE SCHEMA app;
CREATE TABLE app.store (job_id bigint, payload jsonb, n integer, bytes bytea);
CREATE FUNCTION app.keep(job_id bigint, payload jsonb, result jsonb, result_binary bytea) RETURNS void
LANGUAGE sql AS $$ INSERT INTO app.store VALUES (job_id, payload, jsonb_array_length(result->'outputs'),
                                                 result_binary) $$;
CREATE FUNCTION app.json_only(job_id bigint, payload jsonb, result jsonb) RETURNS void
LANGUAGE sql AS $$ SELECT 1 $$;
)");
  CHECK(inferq::db::sink_function_exists(db.session, "app.keep", true));
  CHECK_FALSE(inferq::db::sink_function_exists(db.session, "app.keep", false));
  CHECK(inferq::db::sink_function_exists(db.session, "app.json_only", false));
  CHECK_FALSE(inferq::db::sink_function_exists(db.session, "app.json_only", true));

  db.exec("SELECT inferq.enqueue('q', '{\"doc\": 7}')");
  db.exec("SELECT inferq.enqueue('q', '{\"doc\": 8}')");
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  const auto other = inferq::db::claim(db.session, "q", db.worker, 1, 3);
  REQUIRE(unit);
  REQUIRE(other);
  UnitFinish u;
  u.lease_id = unit->lease_id;
  u.binary_outputs = true;
  u.sink = "app.keep";
  u.jobs.push_back(ok(unit->jobs[0].id, bytes({9, 0, 8})));
  UnitFinish wrong = u;
  wrong.lease_id = other->lease_id;
  wrong.sink = "app.json_only";
  wrong.jobs[0].job_id = other->jobs[0].id;
  CHECK(inferq::db::complete(db.session, {u, wrong}, "h:1") == 2);

  CHECK(db.scalar("SELECT format('%s %s %s %s', job_id = " + std::to_string(unit->jobs[0].id) +
                  ", payload->>'doc', n, bytes) FROM app.store") == "t 7 1 \\x090008");
  const std::string id = std::to_string(other->jobs[0].id);
  CHECK(db.scalar("SELECT state FROM inferq.jobs WHERE id = " + id) == "dead");
  CHECK(db.scalar("SELECT last_error FROM inferq.jobs WHERE id = " + id) ==
        "sink app.json_only failed: no function app.json_only(bigint, jsonb, jsonb, bytea) (SQLSTATE 42883)");
  CHECK(db.scalar("SELECT result IS NULL AND result_binary IS NULL FROM inferq.jobs WHERE id = " + id) ==
        "t");
}

TEST_CASE("tensor_bytes writes little-endian elements; the output helpers read them back exactly") {
  Db db;
  CHECK(db.scalar("SELECT inferq.tensor_bytes('{1.5, -2, 0}'::real[])") == "\\x0000c03f000000c000000000");
  CHECK(db.scalar("SELECT inferq.tensor_bytes('{1.5}'::double precision[])") == "\\x000000000000f83f");
  CHECK(db.scalar("SELECT inferq.tensor_bytes('{1, -1}'::bigint[])") ==
        "\\x0100000000000000ffffffffffffffff");
  CHECK(db.scalar("SELECT inferq.tensor_bytes('{{1, 2}, {3, -2}}'::integer[])") ==
        "\\x0100000002000000"
        "03000000feffffff");  // row-major
  CHECK(db.scalar("SELECT inferq.tensor_bytes('{}'::real[])") == "\\x");
  CHECK(db.scalar("SELECT inferq.tensor_bytes(NULL::real[]) IS NULL") == "t");
  CHECK(db.error("SELECT inferq.tensor_bytes('{1, NULL}'::bigint[])") ==
        "ERROR:  inferq.tensor_bytes: element 2 of the array is NULL; tensor data has no NULL");

  // One result of every kind, binary outputs back to back in output order,
  // a JSON output between them.
  db.exec(R"(CREATE TABLE r AS SELECT
  '{"outputs": [
     {"name": "f32", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}},
     {"name": "json", "datatype": "FP32", "shape": [3], "data": [1.5, "NaN", "-Infinity"]},
     {"name": "i64", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
     {"name": "f16", "datatype": "FP16", "shape": [4], "parameters": {"binary_data_size": 8}},
     {"name": "i8", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}},
     {"name": "f64", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}},
     {"name": "i32", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}},
     {"name": "flags", "datatype": "BOOL", "shape": [2], "data": [true, false]}]}'::jsonb AS result,
  inferq.tensor_bytes('{1.5, -2e-40, 3.4028235e38, -0.0}'::real[])
    || inferq.tensor_bytes('{-9223372036854775808, 9223372036854775807}'::bigint[])
    || '\x003c00fc007e0100'::bytea || '\xff7f'::bytea
    || inferq.tensor_bytes('{-1.5e-310, 1.7976931348623157e308}'::double precision[])
    || inferq.tensor_bytes('{-2147483648, 7}'::integer[]) AS rb)");
  const auto out = [&](const std::string& fn, const std::string& name) {
    return db.scalar("SELECT inferq." + fn + "(result, rb, '" + name + "') FROM r");
  };
  CHECK(out("output_real", "f32") == "{1.5,-2e-40,3.4028235e+38,-0}");
  CHECK(out("output_real", "json") == "{1.5,NaN,-Infinity}");
  CHECK(out("output_bigint", "i64") == "{-9223372036854775808,9223372036854775807}");
  CHECK(out("output_real", "f16") ==
        "{1,-Infinity,NaN,5.9604645e-08}");  // the last is FP16's least subnormal
  CHECK(out("output_bigint", "i8") == "{-1,127}");
  CHECK(out("output_double", "f64") == "{-1.5e-310,1.7976931348623157e+308}");
  CHECK(out("output_double", "f32") ==
        "{1.5,-2.000003233207595e-40,3.4028234663852886e+38,-0}");  // the FP32 values, exactly
  CHECK(out("output_bigint", "i32") == "{-2147483648,7}");
  CHECK(out("output_bigint", "flags") == "{1,0}");
  CHECK(db.scalar("SELECT inferq.output_real(NULL, NULL, 'y') IS NULL") == "t");  // a job with no result

  CHECK(db.error("SELECT inferq.output_real(result, rb, 'nope') FROM r") ==
        "ERROR:  inferq: the result has no output \"nope\"");
  CHECK(db.error("SELECT inferq.output_real(result, rb, 'i64') FROM r") ==
        "ERROR:  inferq: output \"i64\" is INT64, not one of FP32, FP16");
  CHECK(
      db.error("SELECT inferq.output_bigint(result, substr(rb, 1, 20), 'i64') FROM r") ==
      "ERROR:  inferq: output \"i64\": binary_data_size 16 at byte 16 runs past the end of result_binary (20 "
      "bytes)");
  CHECK(db.error("SELECT inferq.output_real('{\"outputs\": [{\"name\": \"y\", \"datatype\": \"FP32\","
                 " \"parameters\": {\"binary_data_size\": 6}}]}', '\\x000000000000', 'y')") ==
        "ERROR:  inferq: output \"y\": 6 bytes is not a whole number of FP32 elements (4 bytes each)");
  CHECK(db.error("SELECT inferq.output_real('{\"result\": 1}', NULL, 'y')") ==
        "ERROR:  inferq: the result has no \"outputs\" array");
}

TEST_CASE("the helpers run as their owner with a pinned search_path; their internals are not executable") {
  Db db;
  CHECK(db.scalar("SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'inferq'::regnamespace"
                  " AND p.proname IN ('tensor_bytes', 'output_real', 'output_double', 'output_bigint')"
                  " AND p.prosecdef AND p.proconfig = '{\"search_path=pg_catalog, pg_temp\"}'") == "7");
  CHECK(db.scalar("SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'inferq'::regnamespace"
                  " AND has_function_privilege('public', p.oid, 'EXECUTE')") == "0");
}

TEST_CASE("a producer granted before 0012 may execute the new enqueue and the helpers after it") {
  // A database `inferq migrate` of 0011 made (a frozen pg_dump), with a producer.
  const std::string url = inferq::test::database_from_dump("tests/pg/fixtures/schema_v11.sql");
  pqxx::connection owner(url);
  {
    pqxx::nontransaction tx(owner);
    tx.exec("DROP ROLE IF EXISTS inferq_test_early_producer");
    tx.exec("CREATE ROLE inferq_test_early_producer LOGIN");
    tx.exec("SELECT inferq.grant_producer('inferq_test_early_producer')");
  }
  Session s(url, "test-setup");
  const auto report = inferq::db::migrate(s);
  CHECK(report.from_version == 11);

  std::string as_producer = url;
  const auto at = as_producer.find("://") + 3;
  as_producer.replace(at, as_producer.find('@') - at, "inferq_test_early_producer");
  {
    pqxx::connection producer(as_producer);
    pqxx::nontransaction tx(producer);
    const auto id =
        tx.exec1(
              "SELECT inferq.enqueue('q', '{}', payload_binary => inferq.tensor_bytes('{7}'::integer[]))")[0]
            .as<std::int64_t>();
    CHECK(tx.exec1("SELECT count(*) FROM inferq.my_jobs WHERE id = " + std::to_string(id) +
                   " AND result_binary IS NULL")[0]
              .as<int>() == 1);
    CHECK(tx.exec1("SELECT inferq.output_bigint('{\"outputs\": [{\"name\": \"y\", \"datatype\": \"INT64\","
                   " \"data\": [3]}]}', NULL, 'y')")[0]
              .c_str() == std::string("{3}"));
  }
  pqxx::nontransaction tx(owner);
  CHECK(tx.exec1("SELECT payload_binary FROM inferq.jobs")[0].c_str() == std::string("\\x07000000"));
  tx.exec("DROP OWNED BY inferq_test_early_producer");
  tx.exec("DROP ROLE inferq_test_early_producer");
}
