#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace inferq::util {

// A structured field for log lines: a key and its value already encoded as
// JSON (a string, a number or an array of numbers).
struct LogField {
  std::string key;
  std::string json;

  static LogField text(std::string key, const std::string& value);
  static LogField number(std::string key, std::int64_t value);
  static LogField numbers(std::string key, const std::vector<std::int64_t>& values);
};

// The fields a JSON log line carries besides time, level and message: the
// process-wide ones (set_process_log_field), then those of every LogScope
// open on the calling thread, innermost last. A text log line ignores them
// (its message says the same in words).
std::vector<LogField> current_log_fields();

// Sets (or replaces) a field every log line of the process carries, such as
// the worker name. Thread-safe.
void set_process_log_field(LogField field);

// Adds fields to the log lines the calling thread writes while it lives.
// Scopes nest; a scope must end on the thread that opened it.
class LogScope {
 public:
  explicit LogScope(std::vector<LogField> fields);
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  std::size_t count_;
};

}  // namespace inferq::util
