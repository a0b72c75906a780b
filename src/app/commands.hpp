#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "config/settings.hpp"

// The subcommands behind the CLI. Each returns the process exit code and
// reports its own errors on stderr.
namespace inferq::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTimeout = 3;

int cmd_migrate(const config::Settings& settings);

// The daemon: blocks until SIGTERM/SIGINT and a clean shutdown.
int cmd_run(const config::Settings& settings);

struct EnqueueOptions {
  std::string queue;
  std::string payload_json;
  std::optional<std::string> key;
  std::optional<std::string> unique_key;
  int priority = 0;
  std::optional<int> max_attempts;
  bool wait = false;
  std::optional<std::chrono::milliseconds> timeout;  // with wait; none = no limit
};
int cmd_enqueue(const config::Settings& settings, const EnqueueOptions& options);

int cmd_status(const config::Settings& settings, bool json);

int cmd_cancel(const config::Settings& settings, std::int64_t job_id);

// Sets up spdlog on stderr as the settings say (level, text or JSON lines).
void setup_logging(const config::LoggingSettings& logging);

}  // namespace inferq::app
