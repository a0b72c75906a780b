#include "executor/handlers.hpp"

#include <chrono>
#include <string>

#include <doctest.h>

using namespace inferq::executor;
using inferq::protocol::JobInput;
using inferq::protocol::JobOutput;
using inferq::protocol::Outcome;
using inferq::protocol::RunUnit;
using inferq::protocol::UnitResult;

namespace {

std::unique_ptr<Handler> handler(std::string_view name) {
  auto h = make_handler(name);
  REQUIRE(h != nullptr);
  return h;
}

JobOutput run(std::string_view name, std::string payload, std::int64_t id = 1) {
  return handler(name)->run_job(JobInput{id, std::move(payload)});
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// Fails its second job with an exception, and can throw FatalError.
class Flaky final : public Handler {
 public:
  bool fatal = false;
  JobOutput run_job(const JobInput& job) override {
    if (fatal) throw FatalError("sticky CUDA error");
    if (job.job_id == 2) throw std::runtime_error("boom");
    return {job.job_id, Outcome::kSucceeded, "ok"};
  }
};

}  // namespace

TEST_CASE("make_handler knows the built-ins and nothing else") {
  for (std::string_view name : handler_names()) CHECK(make_handler(name) != nullptr);
  CHECK(handler_names().size() == 4);
  CHECK(make_handler("builtin:nope") == nullptr);
  CHECK(make_handler("") == nullptr);
  CHECK(make_handler("builtin:ECHO") == nullptr);
}

TEST_CASE("builtin:echo returns the payload byte for byte") {
  const std::string odd = std::string("{\"a\": \"\0\xff\"}  not even json", 26);
  const JobOutput out = run("builtin:echo", odd, 9);
  CHECK(out.job_id == 9);
  CHECK(out.outcome == Outcome::kSucceeded);
  CHECK(out.body == odd);

  const UnitResult r = handler("builtin:echo")->run_unit(RunUnit{77, {{1, "{}"}, {2, odd}, {3, ""}}});
  CHECK(r.unit_id == 77);
  REQUIRE(r.jobs.size() == 3);
  CHECK(r.jobs[0].body == "{}");
  CHECK(r.jobs[1].body == odd);
  CHECK(r.jobs[2].body.empty());
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(r.jobs[i].job_id == static_cast<std::int64_t>(i + 1));
    CHECK(r.jobs[i].outcome == Outcome::kSucceeded);
  }
}

TEST_CASE("builtin:sleep sleeps and reports it") {
  const auto start = std::chrono::steady_clock::now();
  const JobOutput out = run("builtin:sleep", R"({"seconds": 0.05})");
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(50));
  CHECK(out.outcome == Outcome::kSucceeded);
  CHECK(out.body == R"({"slept_seconds":0.05})");
  CHECK(run("builtin:sleep", R"({"seconds": 0, "extra": [1]})").body == R"({"slept_seconds":0})");
}

TEST_CASE("builtin:sleep refuses bad payloads as permanent errors naming the field") {
  for (const char* payload : {R"({})", R"({"seconds": "1"})", R"({"seconds": -1})", R"({"seconds": null})",
                              R"({"seconds": true})", R"({"second": 1})"}) {
    CAPTURE(payload);
    const JobOutput out = run("builtin:sleep", payload, 5);
    CHECK(out.job_id == 5);
    CHECK(out.outcome == Outcome::kPermanent);
    CHECK(out.body == R"(builtin:sleep: payload field "seconds" must be a number >= 0)");
  }
  const JobOutput too_long = run("builtin:sleep", R"({"seconds": 86401})");
  CHECK(too_long.outcome == Outcome::kPermanent);
  CHECK(contains(too_long.body, R"("seconds" must be <= 86400)"));

  const JobOutput not_json = run("builtin:sleep", R"({"seconds": )");
  CHECK(not_json.outcome == Outcome::kPermanent);
  CHECK(contains(not_json.body, "builtin:sleep: payload is not valid JSON: "));
  CHECK(!contains(not_json.body, "[json.exception"));

  const JobOutput not_object = run("builtin:sleep", "[1]");
  CHECK(not_object.outcome == Outcome::kPermanent);
  CHECK(not_object.body == "builtin:sleep: payload must be a JSON object");
}

TEST_CASE("builtin:fail fails as asked") {
  const JobOutput dflt = run("builtin:fail", "{}", 3);
  CHECK(dflt.job_id == 3);
  CHECK(dflt.outcome == Outcome::kTransient);
  CHECK(dflt.body == "builtin:fail");

  const JobOutput perm =
      run("builtin:fail", R"({"permanent": true, "message": "input tensor has the wrong shape"})");
  CHECK(perm.outcome == Outcome::kPermanent);
  CHECK(perm.body == "input tensor has the wrong shape");

  const JobOutput trans = run("builtin:fail", R"({"permanent": false, "message": "GPU busy"})");
  CHECK(trans.outcome == Outcome::kTransient);
  CHECK(trans.body == "GPU busy");
}

TEST_CASE("builtin:fail refuses bad payloads as permanent errors naming the field") {
  const JobOutput bad_perm = run("builtin:fail", R"({"permanent": "yes"})");
  CHECK(bad_perm.outcome == Outcome::kPermanent);
  CHECK(bad_perm.body == R"(builtin:fail: payload field "permanent" must be a boolean)");

  const JobOutput bad_msg = run("builtin:fail", R"({"message": 3})");
  CHECK(bad_msg.outcome == Outcome::kPermanent);
  CHECK(bad_msg.body == R"(builtin:fail: payload field "message" must be a string)");

  const JobOutput not_json = run("builtin:fail", "nope");
  CHECK(not_json.outcome == Outcome::kPermanent);
  CHECK(contains(not_json.body, "builtin:fail: payload is not valid JSON: "));
}

TEST_CASE("the default run_unit keeps order and turns a job's exception into a transient failure") {
  Flaky h;
  const UnitResult r = h.run_unit(RunUnit{5, {{1, "{}"}, {2, "{}"}, {3, "{}"}}});
  CHECK(r.unit_id == 5);
  REQUIRE(r.jobs.size() == 3);
  CHECK(r.jobs[0].outcome == Outcome::kSucceeded);
  CHECK(r.jobs[1].job_id == 2);
  CHECK(r.jobs[1].outcome == Outcome::kTransient);
  CHECK(contains(r.jobs[1].body, "boom"));
  CHECK(r.jobs[2].outcome == Outcome::kSucceeded);

  h.fatal = true;
  CHECK_THROWS_AS(h.run_unit(RunUnit{6, {{1, "{}"}}}), FatalError);
}

TEST_CASE("a unit for builtin:fail gives one output per job, in order") {
  const UnitResult r =
      handler("builtin:fail")
          ->run_unit(RunUnit{8, {{10, R"({"permanent": true})"}, {11, "{}"}, {12, "not json"}}});
  REQUIRE(r.jobs.size() == 3);
  CHECK(r.jobs[0].job_id == 10);
  CHECK(r.jobs[0].outcome == Outcome::kPermanent);
  CHECK(r.jobs[1].job_id == 11);
  CHECK(r.jobs[1].outcome == Outcome::kTransient);
  CHECK(r.jobs[2].job_id == 12);
  CHECK(r.jobs[2].outcome == Outcome::kPermanent);
}
