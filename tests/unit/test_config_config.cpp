#include <doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "config/settings.hpp"
#include "util/scope_guard.hpp"

using inferq::config::ConfigError;
using inferq::config::default_settings;
using inferq::config::load_settings;
using inferq::config::parse_settings;
using inferq::config::QueueSettings;
using inferq::config::Settings;
using inferq::util::ScopeGuard;
using std::chrono::milliseconds;

namespace {

constexpr const char* kSource = "/etc/inferq/inferq.yaml";

// The message parse_settings throws for `yaml`, or "" when it parses.
std::string error_of(const std::string& yaml) {
  try {
    parse_settings(yaml, kSource);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string error_prefix(int line) {
  return std::string("config ") + kSource + ":" + std::to_string(line) + ": ";
}

// A valid queue, indented as an item of `queues:`, for tests that vary one key.
std::string queue_with(const std::string& extra_lines) {
  return "queues:\n"
         "  - name: q\n"
         "    handler: builtin:echo\n" +
         extra_lines;
}

// Sets an environment variable for one test and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    had_old_ = std::getenv(name) != nullptr;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (had_old_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_old_ = false;
};

// A file under the temporary directory holding `text`.
std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("inferq-test-config-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(path) << text;
  return path;
}

void check_defaults(const Settings& s) {
  const Settings d;
  CHECK(s.database.url == d.database.url);
  CHECK(s.worker.poll_interval == d.worker.poll_interval);
  CHECK(s.worker.heartbeat_interval == d.worker.heartbeat_interval);
  CHECK(s.worker.stale_after == d.worker.stale_after);
  CHECK(s.worker.shutdown_grace == d.worker.shutdown_grace);
  CHECK(s.worker.executor_path == d.worker.executor_path);
  CHECK(s.worker.vacuum_dead_rows == d.worker.vacuum_dead_rows);
  CHECK(s.metrics.listen == d.metrics.listen);
  CHECK(s.logging.level == d.logging.level);
  CHECK(s.logging.format == d.logging.format);
}

}  // namespace

TEST_CASE("the struct defaults are the documented ones") {
  const Settings s;
  CHECK(s.database.url == "postgresql:///inferq");
  CHECK(s.worker.poll_interval == milliseconds(1'000));
  CHECK(s.worker.heartbeat_interval == milliseconds(2'000));
  CHECK(s.worker.stale_after == milliseconds(15'000));
  CHECK(s.worker.shutdown_grace == milliseconds(30'000));
  CHECK(s.worker.vacuum_dead_rows == 50'000);
  CHECK(s.metrics.listen == "127.0.0.1:9847");
  CHECK(s.logging.level == "info");
  CHECK(s.logging.format == "text");
  CHECK(s.queues.empty());
}

TEST_CASE("an empty file gives every default") {
  for (const char* text : {"", "\n", "# only a comment\n", "---\n", "~\n"}) {
    CAPTURE(text);
    const Settings s = parse_settings(text, kSource);
    CHECK(s.source == kSource);
    check_defaults(s);
    CHECK(s.queues.empty());
  }
}

TEST_CASE("a section with every key commented out keeps its defaults") {
  const Settings s = parse_settings("worker:\n  # poll_interval: 5s\nmetrics:\nqueues:\n", kSource);
  check_defaults(s);
  CHECK(s.queues.empty());
}

TEST_CASE("every key is read") {
  const Settings s = parse_settings(R"(
database:
  url: postgresql://inferq@db/jobs
worker:
  poll_interval: 250ms
  heartbeat_interval: 1s
  stale_after: 1.5m
  shutdown_grace: 1h
  executor_path: /opt/inferq/bin/inferq-executor
  vacuum_dead_rows: 0
metrics:
  listen: "[::1]:9100"
logging:
  level: debug
  format: json
queues:
  - name: echo
    handler: builtin:echo
    instances: 2
    batch: {max_jobs: 64}
    deadline: 45s
    retry: {max_attempts: 7, backoff: 500ms, max_backoff: 10m}
  - name: slow.queue-2_b
    handler: builtin:sleep
)",
                                    kSource);
  CHECK(s.database.url == "postgresql://inferq@db/jobs");
  CHECK(s.worker.poll_interval == milliseconds(250));
  CHECK(s.worker.heartbeat_interval == milliseconds(1'000));
  CHECK(s.worker.stale_after == milliseconds(90'000));
  CHECK(s.worker.shutdown_grace == milliseconds(3'600'000));
  CHECK(s.worker.executor_path == "/opt/inferq/bin/inferq-executor");
  CHECK(s.worker.vacuum_dead_rows == 0);
  CHECK(s.metrics.listen == "[::1]:9100");
  CHECK(s.logging.level == "debug");
  CHECK(s.logging.format == "json");
  REQUIRE(s.queues.size() == 2);
  const QueueSettings& echo = s.queues[0];
  CHECK(echo.name == "echo");
  CHECK(echo.handler == "builtin:echo");
  CHECK(echo.instances == 2);
  CHECK(echo.batch.max_jobs == 64);
  CHECK(echo.deadline == milliseconds(45'000));
  CHECK(echo.retry.max_attempts == 7);
  CHECK(echo.retry.backoff == milliseconds(500));
  CHECK(echo.retry.max_backoff == milliseconds(600'000));
  const QueueSettings& slow = s.queues[1];
  const QueueSettings d;
  CHECK(slow.name == "slow.queue-2_b");
  CHECK(slow.handler == "builtin:sleep");
  CHECK(slow.instances == d.instances);
  CHECK(slow.batch.max_jobs == d.batch.max_jobs);
  CHECK(slow.deadline == d.deadline);
  CHECK(slow.retry.max_attempts == d.retry.max_attempts);
  CHECK(slow.retry.backoff == d.retry.backoff);
  CHECK(slow.retry.max_backoff == d.retry.max_backoff);
}

TEST_CASE("every builtin handler is accepted") {
  for (const char* handler : {"builtin:echo", "builtin:sleep", "builtin:fail", "builtin:crash"}) {
    CAPTURE(handler);
    const Settings s =
        parse_settings(std::string("queues:\n  - {name: q, handler: \"") + handler + "\"}\n", kSource);
    CHECK(s.queues.at(0).handler == handler);
  }
}

TEST_CASE("a bad duration names file, line and key") {
  // The exact example from the design of the error messages.
  CHECK(error_of(queue_with("    deadline: soon\n")) ==
        "config /etc/inferq/inferq.yaml:4: "
        "queues[0].deadline: expected a duration like 250ms, 30s or 5m, got \"soon\"");
  CHECK(error_of("worker:\n  poll_interval: 30\n") ==
        error_prefix(2) + "worker.poll_interval: expected a duration like 250ms, 30s or 5m, got \"30\"");
  CHECK(error_of("worker:\n  shutdown_grace: -5s\n") ==
        error_prefix(2) + "worker.shutdown_grace: expected a duration like 250ms, 30s or 5m, got \"-5s\"");
  CHECK(error_of("worker:\n  shutdown_grace: 0s\n") ==
        error_prefix(2) + "worker.shutdown_grace: must be greater than 0, got 0s");
  CHECK(error_of(queue_with("    retry:\n      backoff: 99999999999999999999h\n")) ==
        error_prefix(5) +
            "queues[0].retry.backoff: expected a duration like 250ms, 30s or 5m, got "
            "\"99999999999999999999h\"");
}

TEST_CASE("unknown keys are rejected at every level") {
  CHECK(error_of("databse:\n  url: x\n") ==
        error_prefix(1) +
            "databse: unknown key (expected one of database, worker, metrics, logging, retention, queues)");
  CHECK(
      error_of("\n\nworker:\n  pol_interval: 1s\n") ==
      error_prefix(4) +
          "worker.pol_interval: unknown key (expected one of poll_interval, heartbeat_interval, stale_after, "
          "shutdown_grace, executor_path, vacuum_dead_rows)");
  CHECK(error_of("metrics:\n  port: 1\n") ==
        error_prefix(2) + "metrics.port: unknown key (expected one of listen)");
  CHECK(error_of(queue_with("    gpu: 0\n")) ==
        error_prefix(4) +
            "queues[0].gpu: unknown key (expected one of name, handler, model, device, threads, inputs, "
            "outputs, binary_data_output, extra_libraries, idle_exit_after, instances, batch, deadline, "
            "prefetch, retry, retention, sink)");
  CHECK(error_of(queue_with("    batch:\n      max_job: 4\n")) ==
        error_prefix(5) +
            "queues[0].batch.max_job: unknown key (expected one of max_bytes, max_jobs, max_wait)");
  CHECK(error_of(queue_with("    retry: {attempts: 3}\n")) ==
        error_prefix(4) +
            "queues[0].retry.attempts: unknown key (expected one of max_attempts, backoff, max_backoff)");
}

TEST_CASE("a key given twice is rejected") {
  CHECK(error_of("logging:\n  level: info\n  level: debug\n") ==
        error_prefix(3) + "logging.level: key given twice");
}

TEST_CASE("wrong types are rejected") {
  CHECK(error_of("worker:\n  poll_interval: {a: 1}\n") ==
        error_prefix(2) + "worker.poll_interval: expected a duration like 250ms, 30s or 5m, got a map");
  CHECK(error_of("database:\n  url: [a, b]\n") ==
        error_prefix(2) + "database.url: expected a string, got a list");
  CHECK(
      error_of("worker: 5\n") ==
      error_prefix(1) +
          "worker: expected a map with keys poll_interval, heartbeat_interval, stale_after, shutdown_grace, "
          "executor_path, vacuum_dead_rows, got \"5\"");
  CHECK(error_of("queues:\n  name: q\n") == error_prefix(2) + "queues: expected a list of queues, got a map");
  CHECK(error_of("queues:\n  - builtin:echo\n") ==
        error_prefix(2) +
            "queues[0]: expected a map with keys name, handler, model, device, threads, inputs, outputs, "
            "binary_data_output, extra_libraries, idle_exit_after, instances, batch, deadline, prefetch, "
            "retry, retention, sink, got "
            "\"builtin:echo\"");
  CHECK(error_of(queue_with("    instances: abc\n")) ==
        error_prefix(4) + "queues[0].instances: expected an integer, got \"abc\"");
  CHECK(error_of(queue_with("    instances: 2.0\n")) ==
        error_prefix(4) + "queues[0].instances: expected an integer, got \"2.0\"");
  CHECK(error_of(queue_with("    batch: 16\n")) ==
        error_prefix(4) +
            "queues[0].batch: expected a map with keys max_bytes, max_jobs, max_wait, got \"16\"");
  CHECK(error_of(queue_with("    retry:\n      max_attempts: [1]\n")) ==
        error_prefix(5) + "queues[0].retry.max_attempts: expected an integer, got a list");
  CHECK(error_of("just text\n") == error_prefix(1) +
                                       "expected a map with keys database, worker, metrics, logging, "
                                       "retention, queues, got \"just text\"");
  CHECK(error_of("- a\n- b\n") ==
        error_prefix(1) +
            "expected a map with keys database, worker, metrics, logging, retention, queues, got a list");
}

TEST_CASE("YAML syntax errors give file and line") {
  const std::string message = error_of("worker:\n  poll_interval: 1s\n  stale_after: [1s\n");
  CAPTURE(message);
  CHECK(message.rfind(std::string("config ") + kSource + ":", 0) == 0);
  CHECK(message.find("invalid YAML") != std::string::npos);
  const std::string tabbed = error_of("logging:\n  level: info\n   format: \"json\n");
  CAPTURE(tabbed);
  CHECK(tabbed.rfind(error_prefix(3) + "invalid YAML: ", 0) == 0);
}

TEST_CASE("more than one YAML document is rejected") {
  CHECK(error_of("logging: {level: info}\n---\nlogging: {level: debug}\n") ==
        error_prefix(3) + "expected one YAML document, found 2");
}

TEST_CASE("stale_after must exceed heartbeat_interval") {
  CHECK(error_of("worker:\n  heartbeat_interval: 5s\n  stale_after: 5s\n") ==
        error_prefix(3) +
            "worker.stale_after: must be greater than heartbeat_interval (5s), got 5s (a lease is renewed "
            "every "
            "heartbeat_interval, so a shorter stale_after would reap live leases)");
  // Only heartbeat_interval set: the error points at it, since stale_after is the default.
  CHECK(
      error_of("worker:\n  heartbeat_interval: 20s\n") ==
      error_prefix(2) +
          "worker.heartbeat_interval: must be less than stale_after (15s), got 20s (a lease is renewed every "
          "heartbeat_interval, so a shorter stale_after would reap live leases)");
  CHECK(error_of("worker:\n  stale_after: 1s\n") ==
        error_prefix(2) +
            "worker.stale_after: must be greater than heartbeat_interval (2s), got 1s (a lease is renewed "
            "every "
            "heartbeat_interval, so a shorter stale_after would reap live leases)");
  CHECK(parse_settings("worker:\n  heartbeat_interval: 5s\n  stale_after: 5001ms\n", kSource)
            .worker.stale_after == milliseconds(5'001));
}

TEST_CASE("max_backoff must be at least backoff") {
  CHECK(error_of(queue_with("    retry:\n      backoff: 10s\n      max_backoff: 5s\n")) ==
        error_prefix(6) + "queues[0].retry.max_backoff: must be at least backoff (10s), got 5s");
  CHECK(error_of(queue_with("    retry:\n      backoff: 10m\n")) ==
        error_prefix(5) + "queues[0].retry.backoff: must be at most max_backoff (5m), got 10m");
  const Settings s = parse_settings(queue_with("    retry: {backoff: 5s, max_backoff: 5s}\n"), kSource);
  CHECK(s.queues.at(0).retry.max_backoff == milliseconds(5'000));
}

TEST_CASE("queue names are required, well formed and unique") {
  CHECK(error_of("queues:\n  - handler: builtin:echo\n") ==
        error_prefix(2) + "queues[0]: missing required key name");
  CHECK(error_of("queues:\n  - name:\n    handler: builtin:echo\n") ==
        error_prefix(2) + "queues[0]: missing required key name");
  CHECK(error_of("queues:\n  - name: \"\"\n    handler: builtin:echo\n") ==
        error_prefix(2) + "queues[0].name: expected a name of letters, digits, '_', '.' and '-', got \"\"");
  CHECK(error_of("queues:\n  - name: my queue\n    handler: builtin:echo\n") ==
        error_prefix(2) +
            "queues[0].name: expected a name of letters, digits, '_', '.' and '-', got \"my queue\"");
  CHECK(error_of("queues:\n  - name: a/b\n    handler: builtin:echo\n") ==
        error_prefix(2) +
            "queues[0].name: expected a name of letters, digits, '_', '.' and '-', got \"a/b\"");
  CHECK(error_of("queues:\n"
                 "  - name: echo\n"
                 "    handler: builtin:echo\n"
                 "  - name: other\n"
                 "    handler: builtin:echo\n"
                 "  - handler: builtin:fail\n"
                 "    name: echo\n") ==
        error_prefix(7) + "queues[2].name: duplicate queue name \"echo\" (also queues[0])");
  CHECK(error_of("queues:\n  - ~\n  - name: q\n") ==
        error_prefix(2) +
            "queues[0]: expected a map with keys name, handler, model, device, threads, inputs, outputs, "
            "binary_data_output, extra_libraries, idle_exit_after, instances, batch, deadline, prefetch, "
            "retry, retention, sink, got nothing");
}

TEST_CASE("handlers are required and must be known") {
  CHECK(error_of("queues:\n  - name: q\n") ==
        error_prefix(2) + "queues[0]: queue \"q\": missing required key handler or model (exactly one)");
  CHECK(error_of("queues:\n  - name: q\n    handler: builtin:nope\n") ==
        error_prefix(3) +
            "queues[0].handler: unknown builtin handler \"builtin:nope\" (expected one of builtin:echo, "
            "builtin:sleep, builtin:fail, builtin:crash)");
  CHECK(
      error_of("queues:\n  - name: q\n    handler: model:/m.pt\n") ==
      error_prefix(3) +
          "queues[0].handler: expected one of builtin:echo, builtin:sleep, builtin:fail, builtin:crash, got "
          "\"model:/m.pt\"");
}

TEST_CASE("integers are range checked") {
  struct Case {
    std::string lines;
    int line;
    std::string expected;
  };
  const Case cases[] = {
      {"    instances: 0\n", 4, "queues[0].instances: must be between 1 and 256, got 0"},
      {"    instances: 257\n", 4, "queues[0].instances: must be between 1 and 256, got 257"},
      {"    instances: -1\n", 4, "queues[0].instances: must be between 1 and 256, got -1"},
      {"    instances: 99999999999\n", 4, "queues[0].instances: must be between 1 and 256, got 99999999999"},
      {"    batch: {max_jobs: 0}\n", 4, "queues[0].batch.max_jobs: must be between 1 and 4096, got 0"},
      {"    batch:\n      max_jobs: 4097\n", 5,
       "queues[0].batch.max_jobs: must be between 1 and 4096, got 4097"},
      {"    retry: {max_attempts: 0}\n", 4,
       "queues[0].retry.max_attempts: must be between 1 and 1000, got 0"},
      {"    retry: {max_attempts: 1001}\n", 4,
       "queues[0].retry.max_attempts: must be between 1 and 1000, got 1001"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.lines);
    CHECK(error_of(queue_with(c.lines)) == error_prefix(c.line) + c.expected);
  }
  const Settings s = parse_settings(
      queue_with("    instances: 256\n    batch: {max_jobs: 4096}\n    retry: {max_attempts: 1000}\n"),
      kSource);
  CHECK(s.queues.at(0).instances == 256);
  CHECK(s.queues.at(0).batch.max_jobs == 4096);
  CHECK(s.queues.at(0).retry.max_attempts == 1000);
}

TEST_CASE("metrics.listen must be HOST:PORT") {
  for (const char* good : {"0.0.0.0:1", "localhost:65535", "[::]:9847", "[::1]:80", "127.0.0.1:0"}) {
    CAPTURE(good);
    CHECK(parse_settings(std::string("metrics:\n  listen: \"") + good + "\"\n", kSource).metrics.listen ==
          good);
  }
  for (const char* bad : {"9847", ":9847", "host:", "host:abc", "host:80x", "::1:80", "[]:80", "[::1:80"}) {
    CAPTURE(bad);
    CHECK(error_of(std::string("metrics:\n  listen: \"") + bad + "\"\n") ==
          error_prefix(2) + "metrics.listen: expected HOST:PORT like 127.0.0.1:9847, got \"" + bad + "\"");
  }
  for (const char* port : {"65536", "-1", "99999999999"}) {
    CAPTURE(port);
    CHECK(error_of(std::string("metrics:\n  listen: \"h:") + port + "\"\n") ==
          error_prefix(2) + "metrics.listen: port must be between 0 (any free port) and 65535, got " + port);
  }
}

TEST_CASE("logging level and format are checked") {
  CHECK(error_of("logging:\n  level: verbose\n") ==
        error_prefix(2) + "logging.level: expected one of trace, debug, info, warn, error, got \"verbose\"");
  CHECK(error_of("logging:\n  format: xml\n") ==
        error_prefix(2) + "logging.format: expected one of text, json, got \"xml\"");
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    CHECK(parse_settings(std::string("logging: {level: ") + level + "}\n", kSource).logging.level == level);
  }
}

TEST_CASE("database.url must not be empty") {
  CHECK(error_of("database:\n  url: \"\"\n") == error_prefix(2) + "database.url: must not be empty");
}

TEST_CASE("database.transaction_pooling is off by default and takes a boolean") {
  CHECK_FALSE(parse_settings("", kSource).database.transaction_pooling);
  CHECK(parse_settings("database: {transaction_pooling: true}\n", kSource).database.transaction_pooling);
  CHECK(error_of("database:\n  transaction_pooling: maybe\n") ==
        error_prefix(2) + "database.transaction_pooling: expected true or false, got \"maybe\"");
}

TEST_CASE("a queue's sink is a function name, optionally schema-qualified, that needs no quoting") {
  CHECK(parse_settings(queue_with(""), kSource).queues[0].sink.empty());
  CHECK(parse_settings(queue_with("    sink: app.store_embedding\n"), kSource).queues[0].sink ==
        "app.store_embedding");
  CHECK(parse_settings(queue_with("    sink: _store2\n"), kSource).queues[0].sink == "_store2");
  for (const char* bad : {"\"\"", "a.b.c", "1fn", "app.", "f(); DROP TABLE x", "app.store-x"}) {
    CAPTURE(std::string(bad));
    CHECK(error_of(queue_with(std::string("    sink: ") + bad + "\n"))
              .find("queues[0].sink: expected a function name, optionally schema-qualified") !=
          std::string::npos);
  }
}

TEST_CASE("a queue claims its next unit ahead only with prefetch: true") {
  CHECK_FALSE(parse_settings(queue_with(""), kSource).queues[0].prefetch);
  CHECK(parse_settings(queue_with("    prefetch: true\n"), kSource).queues[0].prefetch);
}

TEST_CASE("parse_settings ignores the environment") {
  const ScopedEnv env("INFERQ_DATABASE_URL", "postgresql://from-env/db");
  CHECK(parse_settings("", kSource).database.url == "postgresql:///inferq");
}

TEST_CASE("load_settings reads a file and applies INFERQ_DATABASE_URL") {
  const auto path =
      write_temp("load.yaml", "database:\n  url: postgresql://from-file/db\nlogging: {level: warn}\n");
  const ScopeGuard remove([&] { std::filesystem::remove(path); });

  SUBCASE("without the variable the file wins") {
    const ScopedEnv env("INFERQ_DATABASE_URL", nullptr);
    const Settings s = load_settings(path.string());
    CHECK(s.source == path.string());
    CHECK(s.database.url == "postgresql://from-file/db");
    CHECK(s.logging.level == "warn");
  }
  SUBCASE("an empty variable is ignored") {
    const ScopedEnv env("INFERQ_DATABASE_URL", "");
    CHECK(load_settings(path.string()).database.url == "postgresql://from-file/db");
  }
  SUBCASE("the variable overrides the file") {
    const ScopedEnv env("INFERQ_DATABASE_URL", "postgresql://from-env/db");
    const Settings s = load_settings(path.string());
    CHECK(s.database.url == "postgresql://from-env/db");
    CHECK(s.logging.level == "warn");
  }
}

TEST_CASE("load_settings errors name the file") {
  const auto load_error = [](const std::string& path) -> std::string {
    try {
      load_settings(path);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  CHECK(load_error("/nonexistent/inferq.yaml") ==
        "config /nonexistent/inferq.yaml: cannot read: No such file or directory");
  const std::string dir = std::filesystem::temp_directory_path().string();
  CHECK(load_error(dir) == "config " + dir + ": cannot read: Is a directory");

  const auto path = write_temp("bad.yaml", "# inferq\nworker:\n  deadline: 5s\n");
  const ScopeGuard remove([&] { std::filesystem::remove(path); });
  CHECK(
      load_error(path.string()) ==
      "config " + path.string() +
          ":3: worker.deadline: unknown key (expected one of poll_interval, heartbeat_interval, stale_after, "
          "shutdown_grace, executor_path, vacuum_dead_rows)");
}

TEST_CASE("default_settings applies INFERQ_DATABASE_URL") {
  {
    const ScopedEnv env("INFERQ_DATABASE_URL", nullptr);
    const Settings s = default_settings();
    CHECK(s.source == "<defaults>");
    check_defaults(s);
    CHECK(s.queues.empty());
  }
  {
    const ScopedEnv env("INFERQ_DATABASE_URL", "postgresql://from-env/db");
    const Settings s = default_settings();
    CHECK(s.source == "<defaults>");
    CHECK(s.database.url == "postgresql://from-env/db");
  }
}

TEST_CASE("the example configuration parses and documents the defaults") {
  const char* source_dir = std::getenv("INFERQ_SOURCE_DIR");
  REQUIRE_MESSAGE(source_dir != nullptr, "INFERQ_SOURCE_DIR is set by ctest");
  const ScopedEnv env("INFERQ_DATABASE_URL", nullptr);
  const std::string path = std::string(source_dir) + "/config/inferq.example.yaml";
  const Settings s = load_settings(path);
  CHECK(s.source == path);
  check_defaults(s);

  REQUIRE(s.queues.size() == 2);
  const QueueSettings& echo = s.queues[0];
  CHECK(echo.name == "echo");
  CHECK(echo.handler == "builtin:echo");
  CHECK(echo.instances == 2);
  CHECK(echo.batch.max_jobs == 16);
  CHECK(echo.deadline == milliseconds(30'000));
  CHECK(echo.retry.max_attempts == 5);
  CHECK(echo.retry.backoff == milliseconds(1'000));
  CHECK(echo.retry.max_backoff == milliseconds(300'000));
  // The example's queue values beside instances are the queue defaults too.
  const QueueSettings d;
  CHECK(echo.batch.max_jobs == d.batch.max_jobs);
  CHECK(echo.deadline == d.deadline);
  CHECK(echo.retry.max_attempts == d.retry.max_attempts);
  CHECK(echo.retry.backoff == d.retry.backoff);
  CHECK(echo.retry.max_backoff == d.retry.max_backoff);
  CHECK(echo.batch.max_wait == d.batch.max_wait);
  CHECK(echo.retention.succeeded == d.retention.succeeded);
  CHECK(echo.retention.cancelled == d.retention.cancelled);
  CHECK(echo.retention.dead == d.retention.dead);

  // The model queue shows every model key at its default.
  const QueueSettings& enc = s.queues[1];
  CHECK(enc.is_model());
  CHECK(enc.model == std::string(source_dir) + "/config/models/encoder.pt");
  CHECK(enc.device == d.device);
  CHECK(enc.threads == d.threads);
  CHECK(enc.batch.max_wait == d.batch.max_wait);
  CHECK(enc.extra_libraries == d.extra_libraries);
  CHECK(enc.idle_exit_after == d.idle_exit_after);
  REQUIRE(enc.inputs.size() == 1);
  CHECK(enc.inputs[0].pad == 0);
  CHECK(enc.inputs[0].allow_non_finite == false);
}

TEST_CASE(
    "retention: 1d, 1d and 7d by default; a queue's own keys over the top-level ones; 0 keeps for ever") {
  const Settings d = parse_settings("queues:\n  - {name: a, handler: builtin:echo}\n", kSource);
  CHECK(d.retention.succeeded == std::chrono::hours(24));
  CHECK(d.retention.cancelled == std::chrono::hours(24));
  CHECK(d.retention.dead == std::chrono::hours(24 * 7));
  REQUIRE(d.queues.size() == 1);
  CHECK(d.queues[0].retention.succeeded == std::chrono::hours(24));
  CHECK(d.queues[0].retention.dead == std::chrono::hours(24 * 7));

  // The top-level section after the queues applies to them all the same.
  const Settings s = parse_settings(
      "queues:\n"
      "  - {name: a, handler: builtin:echo}\n"
      "  - name: b\n"
      "    handler: builtin:echo\n"
      "    retention: {succeeded: 90s, dead: 0}\n"
      "retention:\n"
      "  succeeded: 2h\n"
      "  cancelled: 0\n",
      kSource);
  CHECK(s.retention.succeeded == std::chrono::hours(2));
  CHECK(s.retention.cancelled == milliseconds(0));
  CHECK(s.retention.dead == std::chrono::hours(24 * 7));
  REQUIRE(s.queues.size() == 2);
  CHECK(s.queues[0].retention.succeeded == std::chrono::hours(2));
  CHECK(s.queues[0].retention.cancelled == milliseconds(0));
  CHECK(s.queues[0].retention.dead == std::chrono::hours(24 * 7));
  CHECK(s.queues[1].retention.succeeded == milliseconds(90'000));
  CHECK(s.queues[1].retention.cancelled == milliseconds(0));
  CHECK(s.queues[1].retention.dead == milliseconds(0));
  CHECK_FALSE(s.queues[0].retention.keeps_all());
  CHECK_FALSE(s.queues[1].retention.keeps_all());

  CHECK(error_of("retention:\n  succeeded: soon\n") ==
        error_prefix(2) + "retention.succeeded: expected a duration like 250ms, 30s or 5m, got \"soon\"");
  CHECK(error_of("retention:\n  finished: 1h\n") ==
        error_prefix(2) + "retention.finished: unknown key (expected one of succeeded, cancelled, dead)");
  CHECK(error_of(queue_with("    retention: 1h\n")) ==
        error_prefix(4) +
            "queues[0].retention: expected a map with keys succeeded, cancelled, dead, got \"1h\"");
}

namespace {

std::string model_queue(const std::string& extra_lines) {
  return "queues:\n"
         "  - name: enc\n"
         "    model: models/enc.pt\n"
         "    inputs: [{name: ids, datatype: INT64, shape: [-1], pad: 0}]\n"
         "    outputs: [{name: emb}]\n" +
         extra_lines;
}

}  // namespace

TEST_CASE("a model queue reads every key, with defaults for those left out") {
  const Settings d = parse_settings(model_queue(""), kSource);
  REQUIRE(d.queues.size() == 1);
  const QueueSettings& q = d.queues[0];
  CHECK(q.is_model());
  CHECK(q.handler.empty());
  CHECK(q.model == "models/enc.pt");  // parse_settings does not resolve; load_settings does
  CHECK(q.device == "auto");
  CHECK(q.threads == 0);
  CHECK(q.batch.max_wait == milliseconds(0));
  CHECK(q.batch.max_bytes == 256 * 1024 * 1024);
  CHECK(q.idle_exit_after == milliseconds(600'000));
  CHECK(q.extra_libraries.empty());
  CHECK_FALSE(q.binary_data_output);
  REQUIRE(q.inputs.size() == 1);
  CHECK(q.inputs[0].name == "ids");
  CHECK(q.inputs[0].datatype == "INT64");
  CHECK(q.inputs[0].shape == std::vector<std::int64_t>{-1});
  CHECK(q.inputs[0].pad == 0);
  CHECK_FALSE(q.inputs[0].allow_non_finite);
  REQUIRE(q.outputs.size() == 1);
  CHECK(q.outputs[0].name == "emb");

  const Settings s = parse_settings(model_queue("    device: cuda:1\n"
                                                "    threads: 3\n"
                                                "    batch: {max_jobs: 8, max_wait: 2ms}\n"
                                                "    extra_libraries: [/opt/ops.so]\n"
                                                "    idle_exit_after: 0s\n"
                                                "    binary_data_output: true\n"),
                                    kSource);
  const QueueSettings& t = s.queues[0];
  CHECK(t.device == "cuda:1");
  CHECK(t.threads == 3);
  CHECK(t.batch.max_jobs == 8);
  CHECK(t.batch.max_wait == milliseconds(2));
  CHECK(t.extra_libraries == std::vector<std::string>{"/opt/ops.so"});
  CHECK(t.idle_exit_after == milliseconds(0));
  CHECK(t.binary_data_output);
  CHECK(inferq::config::executor_threads(s, t) == 3);
}

TEST_CASE("model queue errors name the line, the key and the queue") {
  CHECK(error_of(model_queue("    handler: builtin:echo\n")) ==
        error_prefix(6) + "queues[0].model: queue \"enc\": has both handler and model; give exactly one");
  CHECK(error_of(queue_with("    binary_data_output: true\n")) ==
        error_prefix(4) +
            "queues[0].binary_data_output: queue \"q\": only a model queue takes this key (this queue has "
            "handler \"builtin:echo\")");
  CHECK(error_of(queue_with("    device: cpu\n")) ==
        error_prefix(4) +
            "queues[0].device: queue \"q\": only a model queue takes this key (this queue has handler "
            "\"builtin:echo\")");
  CHECK(error_of("queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n") ==
        error_prefix(2) +
            "queues[0]: queue \"enc\": missing required key inputs (a model queue declares its inputs)");
  CHECK(
      error_of(
          "queues:\n  - name: enc\n    model: m.pt\n    inputs: [{name: x, datatype: FP32, shape: [4]}]\n") ==
      error_prefix(2) +
          "queues[0]: queue \"enc\": missing required key outputs (a model queue declares its outputs)");
  CHECK(error_of(model_queue("    device: gpu\n")) ==
        error_prefix(6) + "queues[0].device: expected auto, cpu or cuda:N, got \"gpu\"");
  CHECK(error_of(model_queue("    threads: -1\n")) ==
        error_prefix(6) + "queues[0].threads: must be between 0 and 1024, got -1");
  CHECK(error_of(model_queue("    idle_exit_after: soon\n")) ==
        error_prefix(6) +
            "queues[0].idle_exit_after: expected a duration like 250ms, 30s or 5m, got \"soon\"");
  CHECK(error_of("queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n"
                 "    inputs: [{name: x, datatype: FP8, shape: [4]}]\n") ==
        error_prefix(5) +
            "queues[0].inputs[0].datatype: expected one of FP32, FP16, FP64, INT64, INT32, INT8, UINT8, "
            "BOOL, got "
            "\"FP8\"");
  CHECK(error_of("queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n"
                 "    inputs: [{name: x, datatype: FP32, shape: [0]}]\n") ==
        error_prefix(5) +
            "queues[0].inputs[0].shape[0]: a dimension must be -1 (variable) or at least 1, got 0");
  CHECK(error_of("queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n"
                 "    inputs: [{name: x, datatype: FP32}]\n") ==
        error_prefix(5) +
            "queues[0].inputs[0]: missing required key shape (the dimensions after the batch one; -1 = "
            "variable)");
  CHECK(error_of("queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n"
                 "    inputs: [{name: x, datatype: FP32, shape: [1], pad: zero}]\n") ==
        error_prefix(5) + "queues[0].inputs[0].pad: expected a number, got \"zero\"");
  CHECK(error_of(
            "queues:\n  - name: enc\n    model: m.pt\n    outputs: [{name: y}]\n"
            "    inputs: [{name: x, datatype: FP32, shape: [1]}, {name: x, datatype: FP32, shape: [1]}]\n") ==
        error_prefix(5) + "queues[0].inputs[1]: duplicate input name \"x\"");
}

TEST_CASE("load_settings takes relative model and library paths from the config file's directory") {
  const auto path = write_temp("model.yaml", model_queue("    extra_libraries: [ops.so, /abs/ops.so]\n"));
  const ScopeGuard remove([&] { std::filesystem::remove(path); });
  const Settings s = load_settings(path.string());
  const std::string dir = path.parent_path().string();
  CHECK(s.queues[0].model == dir + "/models/enc.pt");
  CHECK(s.queues[0].extra_libraries == std::vector<std::string>{dir + "/ops.so", "/abs/ops.so"});
}

TEST_CASE("executor_threads divides the cores among all executors, at least one each") {
  Settings s = parse_settings(model_queue("    instances: 256\n"), kSource);
  CHECK(inferq::config::executor_threads(s, s.queues[0]) == 1);
  s.queues[0].instances = 1;
  CHECK(inferq::config::executor_threads(s, s.queues[0]) ==
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

TEST_CASE("batch.max_bytes is read and bounded below the protocol's 1 GiB frame") {
  CHECK(
      parse_settings(queue_with("    batch:\n      max_bytes: 4096\n"), kSource).queues[0].batch.max_bytes ==
      4096);
  CHECK(error_of(queue_with("    batch:\n      max_bytes: 1000\n")).find("queues[0].batch.max_bytes") !=
        std::string::npos);
  CHECK(error_of(queue_with("    batch:\n      max_bytes: 1073741824\n")).find("queues[0].batch.max_bytes") !=
        std::string::npos);
}

TEST_CASE("executor_document: the same settings without the database, with paths beside the file") {
  const auto path = write_temp("executor.yaml",
                               "database:\n  url: 'postgresql://u:S3cret@h/db'\n"
                               "worker: {poll_interval: 250ms}\n"
                               "queues:\n"
                               "  - name: enc\n    model: models/enc.pt\n    threads: 2\n"
                               "    extra_libraries: [ops/libx.so, /abs/liby.so]\n"
                               "    inputs: [{name: ids, datatype: INT64, shape: [-1], pad: 0}]\n"
                               "    outputs: [{name: e}]\n"
                               "  - name: echo\n    handler: builtin:echo\n    instances: 3\n");
  const inferq::util::ScopeGuard remove_file([&] { std::filesystem::remove(path); });
  const std::string doc = inferq::config::executor_document(path.string());
  CAPTURE(doc);
  CHECK(doc.find("S3cret") == std::string::npos);
  CHECK(doc.find("database") == std::string::npos);
  // Read back as the executor reads it, from a file elsewhere.
  const Settings got = inferq::config::parse_settings(doc, "/proc/1/fd/7");
  const Settings want = inferq::config::load_settings(path.string());
  REQUIRE(got.queues.size() == 2);
  const std::string dir = path.parent_path().string() + "/";
  CHECK(got.queues[0].model == dir + "models/enc.pt");
  CHECK(got.queues[0].extra_libraries == std::vector<std::string>{dir + "ops/libx.so", "/abs/liby.so"});
  CHECK(got.queues[0].model == want.queues[0].model);
  CHECK(got.queues[0].threads == 2);
  CHECK(got.queues[0].inputs.size() == 1);
  CHECK(got.queues[1].instances == 3);
  CHECK(got.worker.poll_interval == want.worker.poll_interval);
  CHECK(inferq::config::executor_threads(got, got.queues[0]) ==
        inferq::config::executor_threads(want, want.queues[0]));
  CHECK(got.database.url == Settings().database.url);
}

TEST_CASE("a relative config path still gives executors absolute model paths (the quick start's case)") {
  // The quick start runs `inferq run --config config/quickstart.yaml` with
  // `model: ../.inferq/models/mlp.pt`; executors read the copy from
  // /proc/PID/fd/N, where a path relative to the config's would be wrong.
  const auto path = write_temp("relative.yaml",
                               "queues:\n  - name: enc\n    model: ../models/enc.pt\n"
                               "    extra_libraries: [ops/libx.so]\n"
                               "    inputs: [{name: ids, datatype: INT64, shape: [-1]}]\n"
                               "    outputs: [{name: e}]\n");
  const inferq::util::ScopeGuard remove_file([&] { std::filesystem::remove(path); });
  const auto old_cwd = std::filesystem::current_path();
  const inferq::util::ScopeGuard restore_cwd([&] { std::filesystem::current_path(old_cwd); });
  const auto tmp = path.parent_path();
  std::filesystem::current_path(tmp.parent_path());
  const std::string relative = tmp.filename().string() + "/" + path.filename().string();
  const std::string want_model =
      tmp.parent_path().string() + "/" + tmp.filename().string() + "/../models/enc.pt";

  const Settings daemon = inferq::config::load_settings(relative);
  REQUIRE(daemon.queues.size() == 1);
  CHECK(daemon.queues[0].model == want_model);
  const Settings got =
      inferq::config::parse_settings(inferq::config::executor_document(relative), "/proc/1/fd/7");
  REQUIRE(got.queues.size() == 1);
  CHECK(got.queues[0].model == want_model);
  CHECK(got.queues[0].extra_libraries == std::vector<std::string>{tmp.parent_path().string() + "/" +
                                                                  tmp.filename().string() + "/ops/libx.so"});
  // The executor loads the copy from elsewhere (load_settings, as run_loop
  // does); the absolute paths stay as they are.
  const auto copy = write_temp("relative-copy.yaml", inferq::config::executor_document(relative));
  const inferq::util::ScopeGuard remove_copy([&] { std::filesystem::remove(copy); });
  CHECK(inferq::config::load_settings(copy.string()).queues[0].model == want_model);
}
