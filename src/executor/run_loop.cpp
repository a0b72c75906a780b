#include "executor/run_loop.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "config/settings.hpp"
#include "executor/model_plugin.hpp"
#include "protocol/channel.hpp"
#include "util/clock.hpp"
#include "util/duration.hpp"

#ifndef INFERQ_VERSION
#error "INFERQ_VERSION must be defined by the build"
#endif

namespace inferq::executor {
namespace {

using protocol::ProtocolError;

constexpr const char* kUsage =
    "usage: inferq-executor --fd N --queue NAME (--handler HANDLER | --config FILE) [--parent-pid PID]\n"
    "       inferq-executor make-models DIR\n"
    "\n"
    "Runs the jobs of one queue for an inferq supervisor, over the socket it\n"
    "passed as file descriptor N. Not meant to be started by hand.\n"
    "make-models writes the example models mlp.pt and encoder.pt into DIR, each\n"
    "with NAME.queue.yaml beside it: the queue entry that serves it.\n"
    "\n"
    "  --fd N            the supervisor's socket\n"
    "  --queue NAME      the queue this executor serves\n"
    "  --handler NAME    what to run: builtin:echo, builtin:sleep, builtin:fail, builtin:crash\n"
    "  --config FILE     serve queue NAME as FILE configures it (model queues)\n"
    "  --parent-pid PID  the supervisor's pid; exit at once if it is no longer our parent\n"
    "  --help            this text\n"
    "  --version         print the version\n";

// One write per line so lines from several executors do not interleave.
void log_error(const std::string& what) {
  const std::string line = "inferq-executor: " + what + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

int usage_error(const std::string& what) {
  log_error(what + " (see --help)");
  return kExitUsage;
}

std::optional<long> parse_int(std::string_view s) {
  long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

constexpr long kMaxFd = 1 << 20;

struct Options {
  int fd = -1;
  long parent_pid = 0;  // 0: not given
  std::string queue;
  std::string handler;
  std::string config;
};

// Parses argv into `o`. Returns an exit code to stop with, or nullopt to go on.
std::optional<int> parse_args(int argc, char** argv, Options& o) {
  bool have_fd = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (arg == "--version") {
      std::puts("inferq-executor " INFERQ_VERSION);
      return kExitOk;
    }
    std::string_view name = arg;
    std::string_view value;
    bool inline_value = false;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (name != "--fd" && name != "--queue" && name != "--handler" && name != "--parent-pid" &&
        name != "--config") {
      return usage_error("unknown argument \"" + std::string(arg) + "\"");
    }
    if (!inline_value) {
      if (i + 1 >= argc) return usage_error("option " + std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "--fd") {
      const auto fd = parse_int(value);
      if (!fd || *fd < 0 || *fd > kMaxFd) {
        return usage_error("--fd must be a file descriptor number, not \"" + std::string(value) + "\"");
      }
      o.fd = static_cast<int>(*fd);
      have_fd = true;
    } else if (name == "--parent-pid") {
      const auto pid = parse_int(value);
      if (!pid || *pid <= 0)
        return usage_error("--parent-pid must be a pid, not \"" + std::string(value) + "\"");
      o.parent_pid = *pid;
    } else if (name == "--queue") {
      o.queue = value;
    } else if (name == "--config") {
      o.config = value;
    } else {
      o.handler = value;
    }
  }
  if (!have_fd) return usage_error("missing --fd");
  if (o.queue.empty()) return usage_error("missing --queue");
  if (o.handler.empty() == o.config.empty()) return usage_error("give exactly one of --handler and --config");
  if (::fcntl(o.fd, F_GETFD) < 0) {
    return usage_error("--fd " + std::to_string(o.fd) + " is not an open file descriptor");
  }
  return std::nullopt;
}

}  // namespace

int serve(int fd, Handler& handler, std::string_view handler_name,
          std::chrono::milliseconds idle_exit_after) noexcept {
  try {
    protocol::write_message(
        fd, protocol::Ready{static_cast<std::uint32_t>(::getpid()), std::string(handler_name)});
    for (;;) {
      if (idle_exit_after.count() > 0) {
        pollfd pfd{fd, POLLIN, 0};
        const int timeout = static_cast<int>(std::min<std::int64_t>(idle_exit_after.count(), INT32_MAX));
        int n = 0;
        while ((n = ::poll(&pfd, 1, timeout)) < 0 && errno == EINTR) {
        }
        if (n == 0) {
          // Gives back all memory (and a GPU context); the supervisor starts
          // another executor when work arrives.
          log_error("idle for " + util::format_duration(idle_exit_after) + ": exiting");
          return kExitIdle;
        }
      }
      std::optional<protocol::Message> message = protocol::read_message(fd);
      if (!message) return kExitOk;
      auto* unit = std::get_if<protocol::RunUnit>(&*message);
      if (unit == nullptr) {
        log_error(std::string("malformed frame: unexpected ") + protocol::message_name(*message) +
                  " message from the supervisor");
        return kExitProtocol;
      }
      const std::uint64_t unit_id = unit->unit_id;
      const std::size_t jobs = unit->jobs.size();
      protocol::UnitResult result;
      std::string fatal;
      const auto started = std::chrono::steady_clock::now();
      try {
        result = handler.run_unit(std::move(*unit));
        const protocol::UnitTiming& t = result.timing;
        if (t.decode_ns == 0 && t.forward_ns == 0 && t.encode_ns == 0)  // a built-in: its whole run
          result.timing.forward_ns = static_cast<std::uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started)
                  .count());
        if (result.jobs.size() != jobs) {
          fatal = "handler " + std::string(handler_name) + " returned " + std::to_string(result.jobs.size()) +
                  " outputs for " + std::to_string(jobs) + " jobs";
        }
      } catch (const FatalError& e) {
        fatal = e.what();
      } catch (const std::exception& e) {
        // The handler's state is unknown after an escaped exception: replace the process.
        fatal = "handler " + std::string(handler_name) + " failed: " + e.what();
      }
      if (!fatal.empty()) {
        log_error("fatal: " + fatal);
        protocol::write_message(fd, protocol::Fatal{fatal});
        return kExitFatal;
      }
      result.unit_id = unit_id;
      result.timing.sent_ns = static_cast<std::uint64_t>(util::steady_ns(std::chrono::steady_clock::now()));
      try {
        protocol::write_message(fd, result);
      } catch (const std::length_error& e) {
        // Nothing was written; fail the jobs rather than the process.
        log_error(e.what());
        for (protocol::JobOutput& out : result.jobs) {
          out.outcome = protocol::Outcome::kPermanent;
          out.body = "unit result exceeds the protocol's frame limit";
        }
        protocol::write_message(fd, result);
      }
    }
  } catch (const ProtocolError& e) {
    if (e.kind() == ProtocolError::Kind::kIo) {
      log_error(std::string("socket error: ") + e.what());
      return kExitIo;
    }
    log_error(std::string("malformed frame: ") + e.what());
    return kExitProtocol;
  } catch (const std::exception& e) {
    log_error(std::string("error: ") + e.what());
    return kExitIo;
  }
}

namespace {

// Sets up queue `o.queue` of `o.config` and serves it; see executor_main.
int serve_configured(const Options& o) {
  std::unique_ptr<Handler> handler;
  std::string handler_name;
  std::chrono::milliseconds idle{0};
  try {
    const config::Settings settings = config::load_settings(o.config);
    const auto queue = std::find_if(settings.queues.begin(), settings.queues.end(),
                                    [&](const config::QueueSettings& q) { return q.name == o.queue; });
    if (queue == settings.queues.end())
      throw std::runtime_error("queue \"" + o.queue + "\" is not in " + o.config);
    if (queue->is_model()) {
      const ModelPlugin& plugin = model_plugin();
      plugin.set_torch_threads(config::executor_threads(settings, *queue));
      handler.reset(plugin.make_model_handler(*queue));
      handler_name = "model:" + queue->model;
      idle = queue->idle_exit_after;
    } else {
      handler = make_handler(queue->handler);
      handler_name = queue->handler;
      if (!handler)
        throw std::runtime_error("queue \"" + o.queue + "\": handler: unknown handler " + queue->handler);
    }
  } catch (const std::exception& e) {
    // StartupError, ConfigError (the file changed since the daemon read it).
    log_error(e.what());
    try {
      protocol::write_message(o.fd, protocol::Fatal{e.what()});
    } catch (const std::exception&) {
      // The supervisor is gone; the exit code says it all.
    }
    return kExitStartup;
  }
  return serve(o.fd, *handler, handler_name, idle);
}

}  // namespace

int executor_main(int argc, char** argv) noexcept {
  try {
    if (argc >= 2 && std::string_view(argv[1]) == "make-models") {
      if (argc != 3) return usage_error("usage: inferq-executor make-models DIR");
      model_plugin().make_example_models(argv[2]);
      std::printf("wrote %s/{mlp,encoder}.pt and {mlp,encoder}.queue.yaml\n", argv[2]);
      return kExitOk;
    }
    Options o;
    if (const auto code = parse_args(argc, argv, o)) return *code;

    // Die with the supervisor, and cover the race where it died before the
    // prctl: we were then reparented (to init or a subreaper).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const pid_t parent = ::getppid();
    if (o.parent_pid != 0 ? parent != o.parent_pid : parent == 1) {
      log_error("the supervisor is gone (parent pid " + std::to_string(parent) + ")");
      return kExitIo;
    }
    // A terminal's Ctrl-C reaches the whole process group; the supervisor
    // decides what it means. SIGTERM keeps its default: it ends us.
    std::signal(SIGINT, SIG_IGN);
    // Writes use MSG_NOSIGNAL on sockets; this covers an fd that is a pipe.
    std::signal(SIGPIPE, SIG_IGN);
    ::fcntl(o.fd, F_SETFD, FD_CLOEXEC);

    if (!o.config.empty()) return serve_configured(o);
    std::unique_ptr<Handler> handler = make_handler(o.handler);
    if (!handler) {
      std::string known;
      for (std::string_view name : handler_names()) known += (known.empty() ? "" : ", ") + std::string(name);
      log_error("unknown handler \"" + o.handler + "\" (known: " + known + ")");
      return kExitUsage;
    }
    return serve(o.fd, *handler, o.handler);
  } catch (const std::exception& e) {
    log_error(std::string("error: ") + e.what());
    return kExitIo;
  }
}

}  // namespace inferq::executor
