#include "util/log_fields.hpp"

#include <cstdio>
#include <mutex>

#include "util/json_text.hpp"

namespace inferq::util {
namespace {

std::mutex process_mu;
std::vector<LogField>& process_fields() {  // guarded by process_mu
  static std::vector<LogField> fields;
  return fields;
}

thread_local std::vector<LogField> scope_fields;

}  // namespace

LogField LogField::text(std::string key, const std::string& value) {
  return {std::move(key), util::json_string(value)};
}

LogField LogField::number(std::string key, std::int64_t value) {
  return {std::move(key), std::to_string(value)};
}

LogField LogField::numbers(std::string key, const std::vector<std::int64_t>& values) {
  std::string json = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) json += ',';
    json += std::to_string(values[i]);
  }
  return {std::move(key), json + "]"};
}

std::vector<LogField> current_log_fields() {
  std::vector<LogField> out;
  {
    std::lock_guard<std::mutex> lock(process_mu);
    out = process_fields();
  }
  out.insert(out.end(), scope_fields.begin(), scope_fields.end());
  return out;
}

void set_process_log_field(LogField field) {
  std::lock_guard<std::mutex> lock(process_mu);
  for (auto& f : process_fields()) {
    if (f.key == field.key) {
      f = std::move(field);
      return;
    }
  }
  process_fields().push_back(std::move(field));
}

LogScope::LogScope(std::vector<LogField> fields) : count_(fields.size()) {
  for (auto& f : fields) scope_fields.push_back(std::move(f));
}

LogScope::~LogScope() { scope_fields.resize(scope_fields.size() - count_); }

}  // namespace inferq::util
