// logging.format json: every line the daemon writes is one JSON object with
// time, level and message, and lines about a unit carry its fields (queue,
// slot, lease, job ids) and the worker name.
#include <doctest.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("JSON log lines are objects with time, level, message and the unit's fields") {
  const std::string url = fresh_inferq_database();
  auto config = daemon_config(url, {test_queue("sleep", "builtin:sleep", 1, 1, "1s")});
  config.log_format = "json";
  Daemon d(config);
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto id = enqueue(url, "sleep", R"({"seconds": 30})", std::nullopt, 0, 1);
  // The deadline line names the unit.
  REQUIRE(d.process().wait_log("deadline exceeded after 1s", 20s));
  REQUIRE(wait_all_final(url, 20s));
  const auto worker = worker_name(url, d.pid());
  REQUIRE(worker);

  std::istringstream in(d.log());
  int lines = 0;
  bool saw_deadline = false;
  for (std::string line; std::getline(in, line);) {
    CAPTURE(line);
    ++lines;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    REQUIRE(j.is_object());
    CHECK(j.contains("time"));
    CHECK(j.contains("level"));
    CHECK(j.contains("message"));
    if (j["message"].get<std::string>().find("deadline exceeded after 1s") != std::string::npos) {
      saw_deadline = true;
      CHECK(j["level"] == "warning");
      CHECK(j["queue"] == "sleep");
      CHECK(j["slot"] == 0);
      CHECK(j["job_ids"] == nlohmann::json::array({id}));
      CHECK(j["lease"].is_number_integer());
      CHECK(j["executor_pid"].is_number_integer());
      CHECK(j["worker"] == *worker);
    }
  }
  CHECK(lines > 3);
  CHECK(saw_deadline);
}
