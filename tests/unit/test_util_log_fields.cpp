// src/util/log_fields: process-wide fields, nested per-thread scopes, JSON
// encoding of the values.
#include "util/log_fields.hpp"

#include <doctest.h>

#include <thread>

namespace {

using inferq::util::current_log_fields;
using inferq::util::LogField;
using inferq::util::LogScope;

std::string render(const std::vector<LogField>& fields) {
  std::string out;
  for (const auto& f : fields) out += f.key + "=" + f.json + ";";
  return out;
}

}  // namespace

TEST_CASE("values are encoded as JSON") {
  CHECK(LogField::text("k", "a\"b\\c\nd").json == R"("a\"b\\c\nd")");
  CHECK(LogField::number("k", -42).json == "-42");
  CHECK(LogField::numbers("k", {1, 2, 3}).json == "[1,2,3]");
  CHECK(LogField::numbers("k", {}).json == "[]");
}

TEST_CASE("scopes nest on their thread, after the process fields, and end with their scope") {
  inferq::util::set_process_log_field(LogField::text("worker", "h:1"));
  inferq::util::set_process_log_field(LogField::text("worker", "h:2"));  // replaced, not repeated
  CHECK(render(current_log_fields()) == R"(worker="h:2";)");
  {
    LogScope outer({LogField::text("queue", "q"), LogField::number("slot", 0)});
    {
      LogScope inner({LogField::numbers("job_ids", {7, 8})});
      CHECK(render(current_log_fields()) == R"(worker="h:2";queue="q";slot=0;job_ids=[7,8];)");
      std::string other;
      std::thread([&] { other = render(current_log_fields()); }).join();
      CHECK(other == R"(worker="h:2";)");  // another thread sees only the process fields
    }
    CHECK(render(current_log_fields()) == R"(worker="h:2";queue="q";slot=0;)");
  }
  CHECK(render(current_log_fields()) == R"(worker="h:2";)");
}
