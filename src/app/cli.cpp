#include "app/cli.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "app/version.hpp"
#include "db/session.hpp"
#include "util/duration.hpp"

namespace inferq::app {
namespace {

constexpr const char* kDefaultConfig = "/etc/inferq/inferq.yaml";

constexpr const char* kMainHelp = R"(inferq - run inference jobs queued in PostgreSQL

Usage:
  inferq migrate [--config FILE]        apply missing database migrations
  inferq run     [--config FILE]        run the daemon until SIGTERM/SIGINT
  inferq enqueue QUEUE JSON [options]   enqueue one job, print its id
  inferq status  [--config FILE] [--json]   jobs per queue, leases, workers
  inferq cancel  JOB_ID [--config FILE] cancel a job
  inferq --version | --help | COMMAND --help

Configuration: --config FILE (default /etc/inferq/inferq.yaml; commands other
than run use built-in defaults when that file does not exist). The
environment variable INFERQ_DATABASE_URL overrides database.url.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 timeout.
)";

constexpr const char* kMigrateHelp = R"(Usage: inferq migrate [--config FILE]

Applies the database migrations this inferq has and the database lacks, in
order, then this inferq's SQL functions and the producers' privileges, all in
one transaction, under an advisory lock that the transaction holds (safe to
run from several hosts at once, and through PgBouncer in transaction mode).
Running it again is a no-op.
)";

constexpr const char* kRunHelp = R"(Usage: inferq run [--config FILE]

Runs the daemon: claims work units of the configured queues, runs them in
inferq-executor processes under each queue's deadline, and writes results
back. Waits (with backoff) for the database if it is unreachable at start-up.
The schema must be current (see inferq migrate).

SIGTERM or SIGINT: stop claiming, let running units finish for
worker.shutdown_grace, then kill the rest and give their jobs back; a second
signal stops at once. Exit code 0 after either.

SIGHUP (systemctl reload): re-read FILE and apply its queues without stopping
a running unit: new queues start, removed ones finish their units and stop,
a queue whose settings or model file changed gets new executors while the old
ones finish theirs. An invalid file is refused with its file:line error and
the running configuration stays. database, worker, metrics and logging
changes need a restart.
)";

constexpr const char* kEnqueueHelp = R"(Usage: inferq enqueue QUEUE JSON [options]

Enqueues one job through inferq.enqueue() and prints its id.
  --key K            work_unit_key: jobs with one key run one unit at a time, in id order
  --unique-key U     while a job of QUEUE with unique key U is available or running,
                     print its id and enqueue nothing (with --wait, wait for it)
  --priority N       higher runs first (default 0)
  --max-attempts N   attempts before the job is dead (default: the queue's retry.max_attempts)
  --wait             wait for the job to finish and print its result (or error)
  --timeout D        with --wait: give up after D (e.g. 30s, 5m); default: no limit
  --config FILE

With --wait the exit code is 0 when the job succeeded, 1 when it ended dead
or cancelled, 3 on timeout.
)";

constexpr const char* kStatusHelp = R"(Usage: inferq status [--config FILE] [--json]

Prints, per queue, the jobs in each state and the age of the oldest due
available job; the live leases with their worker and age; the live workers
(those seen within worker.stale_after of the configuration given, 15s by
default).
)";

constexpr const char* kCancelHelp = R"(Usage: inferq cancel JOB_ID [--config FILE]

Cancels a job: an available job at once, a running one when its unit ends
(its result is discarded). Exit code 1 when the job was already finished or
does not exist, or when a statement ran past its 30s bound (another
transaction holding the job's row, say).
)";

struct Args {
  std::vector<std::string> positional;
  std::optional<std::string> config;
  bool help = false;
  bool json = false;
  EnqueueOptions enqueue;
};

int usage_error(const std::string& message, const char* help) {
  std::cerr << "inferq: " << message << "\n\n" << help;
  return kExitUsage;
}

bool parse_int(const std::string& text, int& out) {
  try {
    std::size_t used = 0;
    const long v = std::stol(text, &used);
    if (used != text.size() || v < INT32_MIN || v > INT32_MAX) return false;
    out = static_cast<int>(v);
    return true;
  } catch (...) {
    return false;
  }
}

// Loads the configuration: the given file, else the default file if it
// exists, else (when allowed) the built-in defaults.
std::optional<config::Settings> load(const Args& args, bool require_file) {
  try {
    if (args.config) return config::load_settings(*args.config);
    if (::access(kDefaultConfig, F_OK) == 0) return config::load_settings(kDefaultConfig);
    if (require_file) {
      std::cerr << "inferq: no configuration: " << kDefaultConfig
                << " does not exist; pass --config FILE (see config/inferq.example.yaml)\n";
      return std::nullopt;
    }
    return config::default_settings();
  } catch (const config::ConfigError& e) {
    std::cerr << "inferq: " << e.what() << "\n";
    return std::nullopt;
  }
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::vector<std::string> argl(argv + 1, argv + argc);
  if (argl.empty()) return usage_error("a command is required", kMainHelp);
  const std::string command = argl[0];
  if (command == "--version" || command == "version") {
    std::cout << "inferq " << kVersion << "\n";
    return kExitOk;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainHelp;
    return kExitOk;
  }
  const char* help = command == "migrate"   ? kMigrateHelp
                     : command == "run"     ? kRunHelp
                     : command == "enqueue" ? kEnqueueHelp
                     : command == "status"  ? kStatusHelp
                     : command == "cancel"  ? kCancelHelp
                                            : nullptr;
  if (!help) return usage_error("unknown command \"" + command + "\"", kMainHelp);

  Args args;
  for (std::size_t i = 1; i < argl.size(); ++i) {
    const std::string& a = argl[i];
    const auto value = [&](std::string& out) {
      if (i + 1 >= argl.size()) return false;
      out = argl[++i];
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      args.help = true;
    } else if (a == "--config") {
      if (!value(v)) return usage_error("--config needs a file", help);
      args.config = v;
    } else if (a == "--json" && command == "status") {
      args.json = true;
    } else if (command == "enqueue" && a == "--key") {
      if (!value(v) || v.empty()) return usage_error("--key needs a non-empty value", help);
      args.enqueue.key = v;
    } else if (command == "enqueue" && a == "--unique-key") {
      if (!value(v) || v.empty()) return usage_error("--unique-key needs a non-empty value", help);
      args.enqueue.unique_key = v;
    } else if (command == "enqueue" && a == "--priority") {
      if (!value(v) || !parse_int(v, args.enqueue.priority))
        return usage_error("--priority needs a whole number", help);
    } else if (command == "enqueue" && a == "--max-attempts") {
      int n = 0;
      if (!value(v) || !parse_int(v, n) || n < 1)
        return usage_error("--max-attempts needs a whole number of at least 1", help);
      args.enqueue.max_attempts = n;
    } else if (command == "enqueue" && a == "--wait") {
      args.enqueue.wait = true;
    } else if (command == "enqueue" && a == "--timeout") {
      if (!value(v)) return usage_error("--timeout needs a duration like 30s", help);
      const auto d = util::parse_duration(v);
      if (!d || d->count() <= 0)
        return usage_error("--timeout: \"" + v + "\" is not a duration like 30s or 5m", help);
      args.enqueue.timeout = *d;
    } else if (a.size() > 1 && a[0] == '-' && a != "-") {
      return usage_error("unknown option " + a + " for " + command, help);
    } else {
      args.positional.push_back(a);
    }
  }
  if (args.help) {
    std::cout << help;
    return kExitOk;
  }

  if (command == "enqueue") {
    if (args.positional.size() != 2) return usage_error("enqueue takes QUEUE and JSON", help);
    if (args.enqueue.timeout && !args.enqueue.wait) return usage_error("--timeout goes with --wait", help);
    args.enqueue.queue = args.positional[0];
    args.enqueue.payload_json = args.positional[1];
  } else if (command == "cancel") {
    if (args.positional.size() != 1) return usage_error("cancel takes one JOB_ID", help);
  } else if (!args.positional.empty()) {
    return usage_error("unexpected argument \"" + args.positional[0] + "\"", help);
  }

  const auto settings = load(args, command == "run");
  if (!settings) return kExitUsage;
  setup_logging(settings->logging);
  db::set_transaction_pooling(settings->database.transaction_pooling);

  if (command == "migrate") return cmd_migrate(*settings);
  if (command == "run") return cmd_run(*settings);
  if (command == "enqueue") return cmd_enqueue(*settings, args.enqueue);
  if (command == "status") return cmd_status(*settings, args.json);
  std::int64_t id = 0;
  try {
    std::size_t used = 0;
    id = std::stoll(args.positional[0], &used);
    if (used != args.positional[0].size()) throw std::invalid_argument("trailing");
  } catch (...) {
    return usage_error("JOB_ID must be a number", help);
  }
  return cmd_cancel(*settings, id);
}

}  // namespace inferq::app
