#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include "app/commands.hpp"
#include "util/log_fields.hpp"

namespace inferq::app {
namespace {

// One JSON object per line: {"time", "level", "message", fields...}.
class JsonStderrSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string line = "{\"time\":\"";
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    line += buf;
    line += "\",\"level\":\"";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"message\":\"";
    for (const char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      if (c == '"' || c == '\\') {
        line += '\\';
        line += c;
      } else if (c == '\n') {
        line += "\\n";
      } else if (static_cast<unsigned char>(c) < 0x20) {
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        line += buf;
      } else {
        line += c;
      }
    }
    line += '"';
    // Fields of the thread's log scopes (queue, slot, lease, job_ids, ...)
    // and of the process (worker); the sink runs on the logging thread.
    for (const auto& field : util::current_log_fields()) {
      line += ",\"";
      line += field.key;
      line += "\":";
      line += field.json;
    }
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

}  // namespace

void setup_logging(const config::LoggingSettings& logging) {
  std::shared_ptr<spdlog::logger> logger;
  if (logging.format == "json") {
    logger = std::make_shared<spdlog::logger>("inferq", std::make_shared<JsonStderrSink>());
  } else {
    logger = std::make_shared<spdlog::logger>("inferq", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(logging.level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace inferq::app
