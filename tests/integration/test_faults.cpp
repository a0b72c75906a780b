// GPU fault handling end to end on a CPU-only machine: the fault-injection
// model (tests/faultlib, loaded through extra_libraries) makes one job of a
// unit raise a sticky CUDA error, run out of memory, hang or abort, and the
// real `inferq run` must replace the poisoned executor, split the batch
// around the job that does not fit, kill the hung one at its deadline, and
// keep serving every other queue meanwhile (issue 3, parts 5 and 6).
#include <doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "faultlib/faultlib.hpp"
#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using nlohmann::json;
namespace faults = inferq::test::faults;

// faults.pt, made once per test binary by inferq-make-fault-models.
const TempDir& fault_models() {
  static TempDir dir("inferq-fault-models");
  static const bool made = [] {
    ChildProcess make({INFERQ_MAKE_FAULT_MODELS, dir.path()});
    const auto status = make.wait_exit(120s);
    if (!status || !exited_with(*status, 0))
      throw std::runtime_error("inferq-make-fault-models failed:\n" + make.log());
    return true;
  }();
  (void)made;
  return dir;
}

// A queue serving faults.pt: x FP32 [4] -> y = 2x, or the fault its trigger names.
TestQueue fault_queue(const std::string& name, int instances, int max_jobs,
                      const std::string& deadline = "30s") {
  TestQueue q;
  q.name = name;
  q.model = fault_models().file("faults.pt");
  q.instances = instances;
  q.max_jobs = max_jobs;
  q.deadline = deadline;
  q.max_attempts = 2;
  q.backoff = "100ms";
  q.max_backoff = "200ms";
  q.extra_yaml = std::string("device: cpu\n") +
                 "threads: 1\n"
                 "inputs: [{name: x, datatype: FP32, shape: [4]}]\n"
                 "outputs: [{name: y}]\n"
                 "extra_libraries: [" INFERQ_FAULTLIB_PATH "]\n";
  return q;
}

std::string x_payload(float v) {
  return json{{"inputs", {{{"name", "x"}, {"datatype", "FP32"}, {"shape", {4}}, {"data", {v, v, v, v}}}}}}
      .dump();
}

void check_doubled(const JobRow& row, float v) {
  CAPTURE(row.id);
  CAPTURE(row.errors);
  REQUIRE(row.state == "succeeded");
  CHECK(row.attempts == 1);
  REQUIRE(row.result);
  const json out = json::parse(*row.result).at("outputs").at(0);
  CHECK(out.at("name") == "y");
  CHECK(out.at("data") == json::array({2 * v, 2 * v, 2 * v, 2 * v}));
}

// The error history of a job as (class, message) pairs.
std::vector<std::pair<std::string, std::string>> errors_of(const JobRow& row) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const json& e : json::parse(row.errors)) out.emplace_back(e.at("class"), e.at("message"));
  return out;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// `inferq status` against `url`: its exit status and stdout.
std::pair<int, std::string> inferq_status(const std::string& url) {
  TempDir dir("inferq-status");
  ChildProcess p({bin_path("inferq"), "status"}, {{"INFERQ_DATABASE_URL", url}}, dir.file("out"));
  const auto status = p.wait_exit(20s);
  REQUIRE_MESSAGE(status, "inferq status did not exit");
  std::ifstream in(dir.file("out"));
  std::stringstream s;
  s << in.rdbuf();
  return {*status, s.str()};
}

// The row of `queue` in `inferq status` output: available, running, succeeded.
std::vector<long long> status_row(const std::string& out, const std::string& queue) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream cols(line);
    std::string name;
    long long available = -1, running = -1, succeeded = -1;
    cols >> name >> available >> running >> succeeded;
    if (name == queue) return {available, running, succeeded};
  }
  return {};
}

// Four echo jobs enqueued now all succeed, and `busy` still holds after.
void echo_flows_while(const std::string& url, const std::function<bool()>& busy) {
  const auto ids = enqueue_many(url, "echo", {R"({"n": 1})", R"({"n": 2})", R"({"n": 3})", R"({"n": 4})"});
  REQUIRE(wait_until(
      [&] {
        return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' AND id IN (" +
                               id_list(ids) + ")") == 4;
      },
      15s, 20ms));
  CHECK(busy());
}

}  // namespace

TEST_CASE(
    "a sticky CUDA error replaces the executor; the job retries with its attempts counted; others "
    "unaffected") {
  const std::string url = fresh_inferq_database();
  TestQueue sticky = fault_queue("sticky", 1, 1);
  TestQueue good = fault_queue("good", 1, 8);
  TestQueue echo;
  const DaemonConfig config = daemon_config(url, {sticky, good, echo});

  Daemon d(config, "faults-sticky");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const std::vector<pid_t> first = d.executor_pids();
  REQUIRE(first.size() == 3);

  const auto bad_id = enqueue(url, "sticky", x_payload(faults::kIllegalAddress));
  const auto assert_id = enqueue(url, "sticky", x_payload(faults::kDeviceAssert), std::nullopt, 0, 1);
  std::vector<std::int64_t> good_ids;
  for (int i = 0; i < 6; ++i) good_ids.push_back(enqueue(url, "good", x_payload(static_cast<float>(i))));
  const auto echo_ids = enqueue_many(url, "echo", {R"({"a": 1})", R"({"a": 2})"});
  const auto sticky_ok = enqueue(url, "sticky", x_payload(0.5f));

  REQUIRE(wait_all_final(url, 60s));

  const auto bad = job(url, bad_id);
  REQUIRE(bad);
  CAPTURE(bad->errors);
  CHECK(bad->state == "dead");
  CHECK(bad->attempts == 2);
  const auto errors = errors_of(*bad);
  REQUIRE(errors.size() == 2);
  for (const auto& [cls, message] : errors) {
    CHECK(cls == "fatal");
    CHECK(message ==
          "sticky CUDA error, the executor must be replaced: CUDA error: an illegal memory access was "
          "encountered "
          "(executor exited with code 4)");
  }
  CHECK(contains(bad->last_error.value_or(""), "an illegal memory access was encountered"));

  const auto assert_job = job(url, assert_id);
  REQUIRE(assert_job);
  CAPTURE(assert_job->errors);
  CHECK(assert_job->state == "dead");
  CHECK(assert_job->attempts == 1);
  CHECK(contains(assert_job->last_error.value_or(""), "CUDA error: device-side assert triggered"));

  // The replacement serves its queue; the other queues never noticed.
  check_doubled(*job(url, sticky_ok), 0.5f);
  for (std::size_t i = 0; i < good_ids.size(); ++i)
    check_doubled(*job(url, good_ids[i]), static_cast<float>(i));
  for (const auto id : echo_ids) {
    const auto e = job(url, id);
    CHECK(e->state == "succeeded");
    CHECK(e->attempts == 1);
  }

  // Three fatal errors, three replacements, each a new process; the other
  // queues' executors were the first ones all along (no other restarts).
  CHECK(d.count_log("reports a fatal error: sticky CUDA error") == 3);
  REQUIRE(wait_until([&] { return d.executor_pids().size() == first.size() + 3; }, 20s, 20ms));
  const auto pids = d.executor_pids();
  CHECK(std::set<pid_t>(pids.begin(), pids.end()).size() == pids.size());
  CHECK(d.count_log("while running a unit") == 3);
}

TEST_CASE("out of memory on one job of a batch of 16: the 15 others succeed, that one fails alone") {
  const std::string url = fresh_inferq_database();
  TestQueue q = fault_queue("oom", 1, 16);
  q.max_wait = "500ms";  // the 16 jobs make one unit
  const DaemonConfig config = daemon_config(url, {q});

  Daemon d(config, "faults-oom");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const auto first = d.executor_pids();

  for (const int trigger : {faults::kOutOfMemory, faults::kOutOfMemoryType, faults::kCublasAlloc}) {
    CAPTURE(trigger);
    std::vector<std::string> payloads;
    for (int i = 0; i < 16; ++i)
      payloads.push_back(x_payload(i == 6 ? static_cast<float>(trigger) : 100.0f + i));
    const auto ids = enqueue_many(url, "oom", payloads);
    REQUIRE(wait_all_final(url, 30s));
    for (int i = 0; i < 16; ++i) {
      const auto row = job(url, ids[static_cast<std::size_t>(i)]);
      REQUIRE(row);
      if (i != 6) {
        // Had the unit failed as a whole these would show a second attempt.
        check_doubled(*row, 100.0f + static_cast<float>(i));
        continue;
      }
      CAPTURE(row->errors);
      CHECK(row->state == "dead");
      CHECK(row->attempts == 2);
      const auto errors = errors_of(*row);
      REQUIRE(errors.size() == 2);
      for (const auto& [cls, message] : errors) {
        CHECK(cls == "transient");
        CHECK(message.rfind("out of memory running this job alone: ", 0) == 0);
      }
    }
  }
  // Out of memory never costs the executor.
  CHECK(d.executor_pids() == first);
  CHECK(d.count_log("reports a fatal error") == 0);
}

TEST_CASE("a hang in a model op is killed at the deadline and replaced while the supervisor keeps serving") {
  const std::string url = fresh_inferq_database();
  TestQueue hang = fault_queue("hang", 1, 4, "3s");
  hang.max_attempts = 1;
  TestQueue echo;
  const DaemonConfig config = daemon_config(url, {hang, echo});

  Daemon d(config, "faults-hang");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const auto first = d.executor_pids();

  const auto hang_id = enqueue(url, "hang", x_payload(faults::kHang));
  REQUIRE(wait_until([&] { return job(url, hang_id)->state == "running"; }, 10s, 10ms));
  const auto hang_running = [&] { return job(url, hang_id)->state == "running"; };

  // While the executor hangs: other queues' jobs complete, and `inferq
  // status` shows the daemon live (its tick loop heartbeats) with one job
  // running.
  echo_flows_while(url, hang_running);
  const auto [status, out] = inferq_status(url);
  CAPTURE(out);
  CHECK(exited_with(status, 0));
  CHECK(contains(out, "LIVE WORKERS: 1"));
  if (hang_running()) CHECK(status_row(out, "hang") == std::vector<long long>{0, 1, 0});

  REQUIRE(wait_until([&] { return !hang_running(); }, 15s, 20ms));
  const auto h = job(url, hang_id);
  CAPTURE(h->errors);
  CHECK(h->state == "dead");
  CHECK(h->attempts == 1);
  CHECK(h->last_error.value_or("") == "deadline exceeded after 3s");

  // A replacement serves the queue.
  const auto ok_id = enqueue(url, "hang", x_payload(2.5f));
  REQUIRE(wait_all_final(url, 30s));
  check_doubled(*job(url, ok_id), 2.5f);
  const auto pids = d.executor_pids();
  CHECK(pids.size() == first.size() + 1);
  // The hung executor was killed; the echo executor is the first one still.
  CHECK(std::count_if(first.begin(), first.end(), [](pid_t p) { return process_gone(p); }) == 1);
}

TEST_CASE("an abort in a model op ends the executor; the job retries, a replacement serves the queue") {
  const std::string url = fresh_inferq_database();
  TestQueue abort_q = fault_queue("abort", 1, 4);
  abort_q.backoff = "500ms";  // the crash loop lasts a moment, so echo work overlaps it
  abort_q.max_backoff = "1s";
  TestQueue echo;
  const DaemonConfig config = daemon_config(url, {abort_q, echo});

  Daemon d(config, "faults-abort");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const auto first = d.executor_pids();

  const auto abort_id = enqueue(url, "abort", x_payload(faults::kAbort));
  REQUIRE(wait_until([&] { return !json::parse(job(url, abort_id)->errors).empty(); }, 15s, 10ms));
  // Right after the abort, as the replacement starts: the others are served.
  echo_flows_while(url, [] { return true; });
  const auto [status, out] = inferq_status(url);
  CAPTURE(out);
  CHECK(exited_with(status, 0));
  CHECK(contains(out, "LIVE WORKERS: 1"));

  REQUIRE(wait_until([&] { return job(url, abort_id)->state == "dead"; }, 20s, 20ms));
  const auto a = job(url, abort_id);
  CAPTURE(a->errors);
  CHECK(a->attempts == 2);
  for (const auto& [cls, message] : errors_of(*a)) {
    CHECK(cls == "crash");
    CHECK(message == "executor killed by signal 6 (SIGABRT)");
  }

  const auto ok_id = enqueue(url, "abort", x_payload(3.0f));
  REQUIRE(wait_all_final(url, 30s));
  check_doubled(*job(url, ok_id), 3.0f);
  REQUIRE(wait_until([&] { return d.executor_pids().size() == first.size() + 2; }, 20s, 20ms));
  const auto pids = d.executor_pids();
  CHECK(std::set<pid_t>(pids.begin(), pids.end()).size() == pids.size());
}
