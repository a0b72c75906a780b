// SIGHUP through the real daemon (issue 22 item 4): a reload starts the
// queues added, lets a removed queue's running units finish and stops its
// executors, gives a changed queue new executors while the old ones finish
// their units, and keeps an unchanged queue's executors; an invalid file is
// refused with its file:line error and the old configuration keeps running.
// Jobs flow throughout; an audit trigger counts every claim and completion.
#include <doctest.h>

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/audit.hpp"
#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

// The pids of the executors the log says became ready, per queue, in order.
std::map<std::string, std::vector<pid_t>> ready_executors(const std::string& log) {
  static const std::regex ready(R"(([A-Za-z_]+)#\d+ \(pid (\d+)\) ready \()");
  std::map<std::string, std::vector<pid_t>> out;
  for (std::sregex_iterator it(log.begin(), log.end(), ready), end; it != end; ++it)
    out[(*it)[1].str()].push_back(static_cast<pid_t>(std::stoi((*it)[2].str())));
  return out;
}

std::int64_t jobs_in(const std::string& url, const std::string& queue, const std::string& state) {
  return scalar(url,
                "SELECT count(*) FROM inferq.jobs WHERE queue = '" + queue + "' AND state = '" + state + "'");
}

std::vector<std::int64_t> ids_of(const std::string& url, const std::string& where) {
  std::vector<std::int64_t> ids;
  for (const auto& j : jobs(url, where)) ids.push_back(j.id);
  return ids;
}

}  // namespace

TEST_CASE(
    "SIGHUP: queues added start, removed drain and stop, changed get new executors; no job lost or run "
    "twice") {
  const std::string url = fresh_audited_database();
  DaemonConfig before = daemon_config(
      url, {test_queue("keep", "builtin:echo", 1, 16), test_queue("change", "builtin:sleep", 2, 1, "30s"),
            test_queue("drop", "builtin:sleep", 1, 1, "30s")});
  Daemon d(before, "reload");
  REQUIRE_MESSAGE(d.wait_ready(), d.log());

  // Units that are running when the reload comes: 1.5 s each.
  enqueue_many(url, "change", std::vector<std::string>(4, R"({"seconds": 1.5})"));
  enqueue_many(url, "drop", std::vector<std::string>(3, R"({"seconds": 1.5})"));
  REQUIRE(wait_until(
      [&] { return jobs_in(url, "change", "running") == 2 && jobs_in(url, "drop", "running") == 1; }, 10s));

  // Jobs keep coming, before, during and after the reload; "add" is not
  // served until the reload adds it.
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    for (int n = 0; !stop; ++n) {
      enqueue(url, "keep", "{\"i\": " + std::to_string(n) + "}");
      if (n % 2 == 0) enqueue(url, "add", "{\"i\": " + std::to_string(n) + "}");
      std::this_thread::sleep_for(20ms);
    }
  });
  // Jobs flowed before the reload: some of them ran.
  REQUIRE_MESSAGE(wait_until([&] { return jobs_in(url, "keep", "succeeded") >= 5; }, 10s), d.log());

  DaemonConfig after = daemon_config(
      url, {test_queue("keep", "builtin:echo", 1, 16), test_queue("change", "builtin:sleep", 1, 1, "20s"),
            test_queue("add", "builtin:echo", 1, 8)});
  d.reload_with(after.yaml());
  REQUIRE_MESSAGE(wait_until([&] { return d.count_log("reloaded ") == 1; }, 10s), d.log());
  // From here on nothing of "drop" may be claimed.
  const auto reloaded_at = scalar_text(url, "SELECT clock_timestamp()::text");
  // And after it: jobs enqueued since ran, on the kept queue and the added one.
  const auto ran_since = [&](const char* queue) {
    return scalar(url, std::string("SELECT count(*) FROM inferq.jobs WHERE queue = '") + queue +
                           "' AND state = 'succeeded' AND created_at > '" + *reloaded_at + "'::timestamptz");
  };
  REQUIRE_MESSAGE(wait_until([&] { return ran_since("keep") >= 5 && ran_since("add") >= 3; }, 20s), d.log());
  stop = true;
  producer.join();

  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return scalar(url,
                                      "SELECT count(*) FROM inferq.jobs WHERE queue <> 'drop'"
                                      " AND state IN ('available', 'running')") == 0 &&
                               jobs_in(url, "drop", "running") == 0;
                      },
                      20s),
                  d.log());

  const std::string log = d.log();
  CHECK_MESSAGE(log.find("queue(s) kept [keep], changed [change]") != std::string::npos, log);
  CHECK(log.find("added [add], removed [drop]") != std::string::npos);
  CHECK(log.find("deadline exceeded") == std::string::npos);

  // Every job of a served queue ran once and succeeded; the units running
  // at the reload among them.
  const auto audit = read_job_audit(url);
  const auto served = ids_of(url, "queue <> 'drop'");
  // Jobs flowed before and after it.
  for (const char* when : {"<", ">"}) {
    CAPTURE(when);
    CHECK(scalar(url, std::string("SELECT count(*) FROM inferq.jobs WHERE queue = 'keep' AND created_at ") +
                          when + " '" + *reloaded_at + "'::timestamptz") > 0);
  }
  for (const auto id : served) {
    CAPTURE(id);
    const auto row = job(url, id);
    REQUIRE(row);
    CHECK(row->state == "succeeded");
    CHECK(row->attempts == 1);
    CHECK(audit.claims.count(id) == 1);
    CHECK(audit.claims.at(id) == 1);
    CHECK(audit.finals.at(id) == 1);
  }
  // "drop": what ran finished (the unit running at the reload among them);
  // the rest wait, unclaimed, for a daemon that serves the queue.
  const auto drop_done = jobs_in(url, "drop", "succeeded");
  CHECK(drop_done >= 1);
  CHECK(drop_done + jobs_in(url, "drop", "available") == 3);
  CHECK(scalar(url,
               "SELECT count(*) FROM inferq.jobs WHERE queue = 'drop' AND state = 'available'"
               " AND attempts > 0") == 0);
  CHECK(scalar(url,
               "SELECT count(*) FROM public.job_audit a JOIN inferq.jobs j ON j.id = a.job_id"
               " WHERE j.queue = 'drop' AND a.new_state = 'running' AND a.at > '" +
                   *reloaded_at + "'::timestamptz") == 0);

  // "keep" kept its executor; "change" has one new one and its two old ones
  // are gone; "add" started one; "drop"'s is gone.
  const auto ready = ready_executors(log);
  CHECK(ready.count("keep") == 1);
  CHECK(ready.at("keep").size() == 1);
  REQUIRE(ready.count("change") == 1);
  REQUIRE(ready.at("change").size() == 3);
  CHECK(processes_gone({ready.at("change")[0], ready.at("change")[1]}));
  CHECK_FALSE(process_gone(ready.at("change")[2]));
  REQUIRE(ready.count("add") == 1);
  CHECK(ready.at("add").size() == 1);
  REQUIRE(ready.count("drop") == 1);
  CHECK(process_gone(ready.at("drop")[0]));
  CHECK(scalar_text(url, "SELECT array_to_string(queues, ',') FROM inferq.workers WHERE pid = " +
                             std::to_string(d.pid())) == std::optional<std::string>("keep,change,add"));

  const auto status = d.terminate(15s);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("SIGHUP with an invalid file: refused with file:line, the running configuration stays") {
  const std::string url = fresh_inferq_database();
  const DaemonConfig cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 16)});
  Daemon d(cfg, "reload-bad");
  REQUIRE_MESSAGE(d.wait_ready(), d.log());

  std::string bad = cfg.yaml();
  const auto at = bad.find("max_jobs: 16");
  REQUIRE(at != std::string::npos);
  bad.replace(at, 12, "max_jobs: lots");
  // The 1-based line of the bad key.
  const int line = 1 + static_cast<int>(std::count(bad.begin(), bad.begin() + static_cast<long>(at), '\n'));
  d.reload_with(bad);
  REQUIRE_MESSAGE(wait_until([&] { return d.count_log("reload refused") == 1; }, 10s), d.log());
  const std::string log = d.log();
  CHECK_MESSAGE(log.find(d.config_path() + ":" + std::to_string(line) + ": ") != std::string::npos, log);
  CHECK(log.find("max_jobs") != std::string::npos);

  // Still serving, with the same executor.
  const auto ids = enqueue_many(url, "echo", std::vector<std::string>(20, R"({"x": 1})"));
  REQUIRE(wait_all_final(url, 10s));
  for (const auto id : ids) CHECK(job(url, id)->state == "succeeded");
  CHECK(ready_executors(d.log())["echo"].size() == 1);

  // A queue whose sink the database lacks is refused too.
  DaemonConfig no_sink = cfg;
  no_sink.queues[0].extra_yaml = "sink: public.no_such_sink";
  d.reload_with(no_sink.yaml());
  REQUIRE_MESSAGE(wait_until([&] { return d.count_log("reload refused") == 2; }, 10s), d.log());
  CHECK(d.log().find("no function public.no_such_sink(bigint, jsonb, jsonb)") != std::string::npos);
  CHECK(d.count_log("reloaded ") == 0);

  const auto status = d.terminate(15s);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}
