// The `inferq` command line as a user runs it: --version, --help, and the
// short commands (enqueue --wait, status, cancel) against a running daemon.
#include <doctest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

struct CliRun {
  int status = -1;  // raw wait status
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `inferq ARGS...` to completion with INFERQ_DATABASE_URL=url (when not
// empty), stdout and stderr kept apart.
CliRun run_cli(const std::vector<std::string>& args, const std::string& url = {},
               std::chrono::milliseconds timeout = 20s) {
  TempDir dir("inferq-cli");
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$@\" 2>\"$INFERQ_TEST_STDERR\"", "sh",
                                bin_path("inferq")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::map<std::string, std::string> env{{"INFERQ_TEST_STDERR", dir.file("stderr")}};
  if (!url.empty()) env["INFERQ_DATABASE_URL"] = url;
  ChildProcess p(argv, env, dir.file("stdout"));
  const auto status = p.wait_exit(timeout);
  REQUIRE_MESSAGE(status, "inferq did not exit within the timeout");
  CliRun r;
  r.status = *status;
  r.out = read_file(dir.file("stdout"));
  r.err = read_file(dir.file("stderr"));
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("--version and --help") {
  const auto version = run_cli({"--version"});
  CHECK(exited_with(version.status, 0));
  CHECK(version.out.rfind("inferq ", 0) == 0);
  CHECK(version.out.find_first_of("0123456789") != std::string::npos);

  const auto help = run_cli({"--help"});
  CHECK(exited_with(help.status, 0));
  for (const char* command : {"migrate", "run", "enqueue", "status", "cancel"}) {
    CHECK_MESSAGE(contains(help.out, std::string("inferq ") + command), command);
  }

  struct CommandHelp {
    std::string command;
    std::vector<std::string> mentions;
  };
  const std::vector<CommandHelp> commands{
      {"migrate", {"Usage: inferq migrate", "--config"}},
      {"run", {"Usage: inferq run", "--config", "SIGTERM"}},
      {"enqueue",
       {"Usage: inferq enqueue QUEUE JSON", "--key", "--unique-key", "--priority", "--max-attempts", "--wait",
        "--timeout", "--config"}},
      {"status", {"Usage: inferq status", "--json", "--config"}},
      {"cancel", {"Usage: inferq cancel JOB_ID", "--config"}},
  };
  for (const auto& c : commands) {
    CAPTURE(c.command);
    const auto r = run_cli({c.command, "--help"});
    CHECK(exited_with(r.status, 0));
    CHECK(r.err.empty());
    for (const auto& m : c.mentions) CHECK_MESSAGE(contains(r.out, m), m);
  }

  // A wrong option is a usage error (exit 2) that names it.
  const auto bad = run_cli({"enqueue", "--bogus"});
  CHECK(exited_with(bad.status, 2));
  CHECK(contains(bad.err, "--bogus"));
}

TEST_CASE("enqueue --wait, status and cancel against a running daemon") {
  const std::string url = fresh_inferq_database();
  DaemonConfig config;
  config.database_url = url;
  config.queues = {TestQueue{}};  // echo, one slot
  Daemon d(config, "cli");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto name = worker_name(url, d.pid());
  REQUIRE(name);

  // The id, then the result.
  const auto waited = run_cli({"enqueue", "echo", R"({"a":1})", "--wait", "--timeout", "15s"}, url);
  CAPTURE(waited.out);
  CAPTURE(waited.err);
  CHECK(exited_with(waited.status, 0));
  const auto lines = lines_of(waited.out);
  REQUIRE(lines.size() == 2);
  const std::int64_t id = std::stoll(lines[0]);
  CHECK(std::to_string(id) == lines[0]);
  CHECK(lines[1] == R"({"a": 1})");
  const auto j = job(url, id);
  REQUIRE(j);
  CHECK(j->state == "succeeded");
  CHECK(j->queue == "echo");
  CHECK(j->result.value_or("<null>") == lines[1]);

  // A job nobody serves: --wait gives up with exit code 3.
  const auto timed_out = run_cli({"enqueue", "nobody", R"({"b":2})", "--wait", "--timeout", "1s"}, url);
  CHECK(exited_with(timed_out.status, 3));
  const auto waiting_lines = lines_of(timed_out.out);
  REQUIRE(waiting_lines.size() == 1);
  const std::int64_t waiting_id = std::stoll(waiting_lines[0]);
  CHECK(contains(timed_out.err, "timed out"));

  // status: the queues with their counts, and the live worker.
  const auto status = run_cli({"status"}, url);
  CAPTURE(status.out);
  CHECK(exited_with(status.status, 0));
  bool echo_row = false;
  bool nobody_row = false;
  for (const auto& line : lines_of(status.out)) {
    std::istringstream cols(line);
    std::string queue;
    long long available = -1, running = -1, succeeded = -1;
    cols >> queue >> available >> running >> succeeded;
    if (queue == "echo") echo_row = available == 0 && running == 0 && succeeded == 1;
    if (queue == "nobody") nobody_row = available == 1 && running == 0 && succeeded == 0;
  }
  CHECK(echo_row);
  CHECK(nobody_row);
  CHECK(contains(status.out, "LIVE WORKERS: 1"));
  CHECK(contains(status.out, "  " + *name + "  version "));

  const auto json = run_cli({"status", "--json"}, url);
  CHECK(exited_with(json.status, 0));
  CHECK(contains(json.out, R"({"queue":"echo","jobs":{)"));
  CHECK(contains(json.out, R"("name":")" + *name + "\""));

  // cancel: the available job at once; a second cancel finds nothing to do.
  const auto cancelled = run_cli({"cancel", std::to_string(waiting_id)}, url);
  CHECK(exited_with(cancelled.status, 0));
  CHECK(cancelled.out == "job " + std::to_string(waiting_id) + " cancelled\n");
  const auto c = job(url, waiting_id);
  REQUIRE(c);
  CHECK(c->state == "cancelled");
  CHECK(c->finished_epoch.has_value());
  const auto again = run_cli({"cancel", std::to_string(waiting_id)}, url);
  CHECK(exited_with(again.status, 1));
  CHECK(contains(again.err, "does not exist or has already finished"));
  const auto finished = run_cli({"cancel", std::to_string(id)}, url);
  CHECK(exited_with(finished.status, 1));
  CHECK(job(url, id)->state == "succeeded");

  // --unique-key: a retried request gets the live job's id, and nothing new;
  // once that job is finished the key may be used again.
  const auto first = run_cli({"enqueue", "nobody", R"({"c":3})", "--unique-key", "req-7"}, url);
  const auto retried = run_cli({"enqueue", "nobody", R"({"c":4})", "--unique-key", "req-7"}, url);
  CHECK(exited_with(first.status, 0));
  CHECK(exited_with(retried.status, 0));
  CHECK(retried.out == first.out);
  const std::int64_t unique_id = std::stoll(first.out);
  CHECK(exited_with(run_cli({"cancel", std::to_string(unique_id)}, url).status, 0));
  const auto after = run_cli({"enqueue", "nobody", R"({"c":5})", "--unique-key", "req-7"}, url);
  CHECK(exited_with(after.status, 0));
  CHECK(std::stoll(after.out) > unique_id);
  CHECK(exited_with(run_cli({"enqueue", "nobody", "{}", "--unique-key", ""}, url).status, 2));

  // A daemon that stopped heartbeating is no longer listed as live once the
  // configuration's stale_after (2 s; the built-in default is 15 s) has passed.
  TempDir dir("inferq-cli-config");
  const std::string config_file = dir.file("inferq.yaml");
  {
    std::ofstream out(config_file);
    out << config.yaml();
  }
  const auto live = run_cli({"status", "--config", config_file}, url);
  CHECK(contains(live.out, "LIVE WORKERS: 1"));
  d.process().send_signal(SIGKILL);
  REQUIRE(d.process().wait_exit(5s));
  const auto killed_at = std::chrono::steady_clock::now();
  CHECK(wait_until(
      [&] {
        return contains(run_cli({"status", "--config", config_file}, url).out, "LIVE WORKERS: 0");
      },
      10s, 100ms));
  CHECK(std::chrono::steady_clock::now() - killed_at < 5s);
}

TEST_CASE("cancel blocked by a row lock gives up at its statement bound with the server's reason") {
  const std::string url = fresh_inferq_database();
  const std::int64_t id = enqueue(url, "nobody", R"({"c":3})");
  // Another transaction holds the job's row, as a producer's long
  // transaction may: an unbounded cancel would wait for it forever.
  pqxx::connection holder(url);
  pqxx::work tx(holder);
  tx.exec("SELECT 1 FROM inferq.jobs WHERE id = " + std::to_string(id) + " FOR UPDATE");
  const auto started = std::chrono::steady_clock::now();
  const auto blocked = run_cli({"cancel", std::to_string(id)}, url, 60s);
  const auto waited = std::chrono::steady_clock::now() - started;
  CAPTURE(blocked.err);
  CHECK(exited_with(blocked.status, 1));
  CHECK(contains(blocked.err, "statement timeout"));
  CHECK(waited >= 29s);
  tx.abort();
  CHECK(job(url, id)->state == "available");
  CHECK(exited_with(run_cli({"cancel", std::to_string(id)}, url).status, 0));
}
