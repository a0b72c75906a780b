// `inferq run`: signals, start-up against the database, then the supervisor.
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "app/sd_notify.hpp"
#include "app/version.hpp"
#include "db/error.hpp"
#include "db/maintenance_ops.hpp"
#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "metrics/gpu_sampler.hpp"
#include "metrics/http_server.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/queue_sampler.hpp"
#include "supervisor/supervisor.hpp"
#include "util/backoff.hpp"
#include "util/duration.hpp"
#include "util/fd.hpp"
#include "util/log_fields.hpp"

namespace inferq::app {
namespace {

std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<std::size_t>(n));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// Signals arrive through a signalfd the tick loop polls, so no handler runs
// on an arbitrary thread. They are blocked before any thread starts, and every
// thread inherits the mask.
util::UniqueFd block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return util::UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

// Waits `delay` unless a shutdown signal comes first; returns true on one.
// A SIGHUP here is taken and let go: start-up reads the file only once, and
// it has not finished.
bool sleep_or_signal(int signal_fd, std::chrono::milliseconds delay) {
  const auto until = std::chrono::steady_clock::now() + delay;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd pfd{signal_fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
    signalfd_siginfo info{};
    if (::read(signal_fd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) continue;
    if (info.ssi_signo != SIGHUP) return true;
    spdlog::info("SIGHUP before start-up completed: not reloading (the file is read as start-up connects)");
  }
}

}  // namespace

int cmd_run(const config::Settings& settings) {
  if (settings.queues.empty()) {
    std::cerr << "inferq: " << settings.source << ": no queues configured (see config/inferq.example.yaml)\n";
    return kExitUsage;
  }
  const std::string executor = settings.worker.executor_path.empty() ? executable_dir() + "/inferq-executor"
                                                                     : settings.worker.executor_path;
  if (::access(executor.c_str(), X_OK) != 0) {
    std::cerr << "inferq: " << settings.source << ": worker.executor_path: " << executor
              << " is not an executable file\n";
    return kExitUsage;
  }
  // Before any thread starts: it edits the environment.
  SystemdNotifier notifier = SystemdNotifier::from_environment();
  if (const auto wd = notifier.watchdog_timeout(); wd && *wd < 2 * settings.worker.poll_interval) {
    // Ticks can be poll_interval apart, so pings could come too late.
    spdlog::warn(
        "the systemd watchdog timeout ({}) is shorter than twice worker.poll_interval ({}); "
        "raise WatchdogSec=",
        util::format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(*wd)),
        util::format_duration(settings.worker.poll_interval));
  }
  auto signal_fd = block_signals();

  // Metrics and health answer from here on, also while the database is
  // still unreachable (inferq_db_up 0, /readyz 503).
  const std::vector<std::string> queue_names = config::queue_names(settings);
  metrics::Metrics metrics(queue_names, settings.worker.poll_interval,
                           metrics::BuildInfo{kVersion, INFERQ_TORCH_VERSION, INFERQ_CUDA_VERSION});
  std::unique_ptr<metrics::HttpServer> http;
  try {
    http = std::make_unique<metrics::HttpServer>(settings.metrics.listen, metrics);
  } catch (const metrics::ListenError& e) {
    spdlog::critical("{}: {}", settings.source, e.what());
    return kExitUsage;
  }
  // Tests and scripts that ask for port 0 read the real address here.
  spdlog::info("metrics listening on http://{} (/metrics, /healthz, /readyz)", http->address());
  metrics::GpuSampler gpus(metrics, std::chrono::seconds(5));
  if (gpus.available()) {
    spdlog::info("GPU metrics through NVML");
  } else {
    spdlog::info("no GPU metrics: {}", gpus.unavailable_reason());
  }

  notifier.status("connecting to the database");
  db::Session session(settings.database.url, "inferq start-up");
  util::Backoff backoff(std::chrono::milliseconds(500), std::chrono::seconds(30));
  for (;;) {
    try {
      session.connect();
      if (const auto problem = db::schema_problem(session)) {
        spdlog::critical("inferq {}: {}", kVersion, *problem);
        notifier.status("the database schema is not current: run `inferq migrate`");
        return kExitFailure;
      }
      if (const auto missing = supervisor::missing_sink(session, settings)) {
        spdlog::critical("{}", *missing);
        return kExitUsage;
      }
      if (!settings.database.transaction_pooling) {
        // Named statements and LISTEN would half-work through such a pooler:
        // jobs stall while statements vanish between transactions.
        if (const auto moved = db::detect_transaction_pooling(settings.database.url)) {
          spdlog::critical(
              "{}: database.url goes through a pooler in transaction mode (PgBouncer pool_mode = "
              "transaction): one connection's transactions ran on backends {} and {}. Set "
              "database.transaction_pooling: true, or use session pooling or PostgreSQL itself",
              settings.source, moved->first, moved->second);
          notifier.status("database.url goes through a transaction pooler: set database.transaction_pooling");
          return kExitUsage;
        }
      }
      break;
    } catch (const db::DbError& e) {
      if (!e.connection_lost()) {
        spdlog::critical("{}", e.what());
        return kExitFailure;
      }
      const auto delay = backoff.next();
      spdlog::error("database unreachable ({}); retrying in {} (attempt {})", e.what(),
                    util::format_duration(delay), backoff.attempts());
      // Not READY: systemd keeps the unit "activating" while we wait.
      notifier.status("waiting for the database (attempt " + std::to_string(backoff.attempts()) + ")");
      if (sleep_or_signal(signal_fd.get(), delay)) {
        notifier.stopping("stopping before start-up completed");
        spdlog::info("signal received while waiting for the database; exiting");
        return kExitOk;
      }
    }
  }

  db::WorkerIdentity who;
  who.host = host_name();
  who.pid = static_cast<int>(::getpid());
  who.name = who.host + ":" + std::to_string(who.pid);
  who.version = kVersion;
  for (const auto& q : settings.queues) who.queues.push_back(q.name);
  std::int64_t worker_id = 0;
  try {
    worker_id = db::register_worker(session, who);
  } catch (const db::DbError& e) {
    spdlog::critical("cannot register this worker: {}", e.what());
    return kExitFailure;
  }
  session.disconnect();
  if (settings.database.transaction_pooling) {
    spdlog::info(
        "database.transaction_pooling: no LISTEN through the pooler, so jobs are found by polling every {}; "
        "no session statement_timeout (give the role one); no janitor VACUUM (autovacuum only)",
        util::format_duration(settings.worker.poll_interval));
  }
  util::set_process_log_field(util::LogField::text("worker", who.name));
  spdlog::info("inferq {} started as worker {} (id {}), database {}", kVersion, who.name, worker_id,
               db::redact_url(settings.database.url));

  supervisor::SupervisorOptions options;
  options.settings = &settings;
  options.executor_path = executor;
  options.worker_id = worker_id;
  options.worker_name = who.name;
  options.signal_fd = signal_fd.get();
  const auto running_text = [&who](const config::Settings& s) {
    return "running " + std::to_string(s.queues.size()) + " queue(s) with " +
           std::to_string(config::executor_count(s)) + " executor(s) as worker " + who.name;
  };
  const std::string running = running_text(settings);
  options.on_ready = [&notifier, &running] {
    // READY only now: the database answered this tick, the schema was
    // checked above and every executor has said Ready.
    const bool sent = notifier.ready(running);
    spdlog::info("ready: {}{}", running, sent ? " (READY=1 sent to systemd)" : "");
    if (notifier.enabled() && !sent) spdlog::warn("could not send READY=1 to $NOTIFY_SOCKET");
  };
  options.on_tick = [&notifier] { notifier.watchdog_tick(std::chrono::steady_clock::now()); };
  options.on_draining = [&notifier, &settings] {
    notifier.stopping("stopping: running units have " +
                      util::format_duration(settings.worker.shutdown_grace) + " to finish");
  };
  // SIGHUP re-reads the file it started from, with the same environment.
  options.reload = [&settings] { return config::load_settings(settings.source); };
  notifier.status("starting " + std::to_string(config::executor_count(settings)) + " executor(s)");
  options.metrics = &metrics;
  // Every few seconds; with a short poll interval (tests), every second.
  const auto sample_every = std::clamp<std::chrono::milliseconds>(
      5 * settings.worker.poll_interval, std::chrono::seconds(1), std::chrono::seconds(5));
  supervisor::QueueSampler sampler(settings.database.url, queue_names, sample_every,
                                   settings.worker.stale_after, metrics);
  sampler.start();
  options.on_reloaded = [&sampler, &notifier, &running_text](const config::Settings& now_served) {
    sampler.set_queues(config::queue_names(now_served));
    notifier.status(running_text(now_served) + " (reloaded)");
  };
  supervisor::Supervisor sup(options);
  return sup.run();
}

}  // namespace inferq::app
