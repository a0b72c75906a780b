#include "executor/handlers.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

namespace inferq::executor {

using protocol::JobInput;
using protocol::JobOutput;
using protocol::Outcome;
using protocol::RunUnit;
using protocol::UnitResult;

// By value although this default only reads it: the overrides move payloads
// out of `unit` (see handlers.hpp).
// NOLINTNEXTLINE(performance-unnecessary-value-param)
UnitResult Handler::run_unit(RunUnit unit) {
  UnitResult result;
  result.unit_id = unit.unit_id;
  result.jobs.reserve(unit.jobs.size());
  for (const JobInput& job : unit.jobs) {
    try {
      result.jobs.push_back(run_job(job));
    } catch (const FatalError&) {
      throw;
    } catch (const std::exception& e) {
      result.jobs.push_back({job.job_id, Outcome::kTransient, std::string("handler error: ") + e.what()});
    }
  }
  return result;
}

namespace {

constexpr std::string_view kEcho = "builtin:echo";
constexpr std::string_view kSleep = "builtin:sleep";
constexpr std::string_view kFail = "builtin:fail";
constexpr std::string_view kCrash = "builtin:crash";
constexpr double kMaxSleepSeconds = 86400;

JobOutput permanent(std::int64_t job_id, std::string_view handler, const std::string& message) {
  return {job_id, Outcome::kPermanent, std::string(handler) + ": " + message};
}

// Parses a payload that must be a JSON object. On failure returns false and
// sets `error` to the permanent failure to report.
bool parse_object(const JobInput& job, std::string_view handler, nlohmann::json& out, JobOutput& error) {
  try {
    out = nlohmann::json::parse(job.payload);
  } catch (const nlohmann::json::parse_error& e) {
    // Drop the "[json.exception.parse_error.101] " prefix: noise for a producer.
    std::string why = e.what();
    if (const auto pos = why.find("] "); why.rfind("[json.exception.", 0) == 0 && pos != std::string::npos) {
      why.erase(0, pos + 2);
    }
    error = permanent(job.job_id, handler, "payload is not valid JSON: " + why);
    return false;
  }
  if (!out.is_object()) {
    error = permanent(job.job_id, handler, "payload must be a JSON object");
    return false;
  }
  return true;
}

// Returns each payload unchanged: the fast path for measuring the pipeline.
class EchoHandler final : public Handler {
 public:
  JobOutput run_job(const JobInput& job) override { return {job.job_id, Outcome::kSucceeded, job.payload}; }

  UnitResult run_unit(RunUnit unit) override {
    UnitResult result;
    result.unit_id = unit.unit_id;
    result.jobs.reserve(unit.jobs.size());
    for (JobInput& job : unit.jobs) {
      result.jobs.push_back({job.job_id, Outcome::kSucceeded, std::move(job.payload)});
    }
    return result;
  }
};

// {"seconds": N} -> sleeps N seconds: a job that outlives its deadline.
class SleepHandler final : public Handler {
 public:
  JobOutput run_job(const JobInput& job) override {
    nlohmann::json payload;
    JobOutput error;
    if (!parse_object(job, kSleep, payload, error)) return error;
    const auto it = payload.find("seconds");
    // `!(x >= 0)` rather than `x < 0`, so a NaN would be refused too.
    if (it == payload.end() || !it->is_number() || !(it->get<double>() >= 0)) {
      return permanent(job.job_id, kSleep, R"(payload field "seconds" must be a number >= 0)");
    }
    const double seconds = it->get<double>();
    if (seconds > kMaxSleepSeconds) {
      return permanent(job.job_id, kSleep, R"(payload field "seconds" must be <= 86400)");
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return {job.job_id, Outcome::kSucceeded, nlohmann::json{{"slept_seconds", *it}}.dump()};
  }
};

// {"permanent": bool, "message": string} -> that failure: retry and dead-job paths.
class FailHandler final : public Handler {
 public:
  JobOutput run_job(const JobInput& job) override {
    nlohmann::json payload;
    JobOutput error;
    if (!parse_object(job, kFail, payload, error)) return error;
    bool is_permanent = false;
    std::string message(kFail);
    if (const auto it = payload.find("permanent"); it != payload.end()) {
      if (!it->is_boolean())
        return permanent(job.job_id, kFail, R"(payload field "permanent" must be a boolean)");
      is_permanent = it->get<bool>();
    }
    if (const auto it = payload.find("message"); it != payload.end()) {
      if (!it->is_string())
        return permanent(job.job_id, kFail, R"(payload field "message" must be a string)");
      message = it->get<std::string>();
    }
    return {job.job_id, is_permanent ? Outcome::kPermanent : Outcome::kTransient, std::move(message)};
  }
};

// Aborts on any unit: an executor that dies in the middle of a unit.
class CrashHandler final : public Handler {
 public:
  JobOutput run_job(const JobInput&) override { crash(); }
  UnitResult run_unit(RunUnit) override { crash(); }

 private:
  [[noreturn]] static void crash() {
    // A deliberate crash needs no core dump (tests would write one per run).
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
  }
};

}  // namespace

std::unique_ptr<Handler> make_handler(std::string_view name) {
  if (name == kEcho) return std::make_unique<EchoHandler>();
  if (name == kSleep) return std::make_unique<SleepHandler>();
  if (name == kFail) return std::make_unique<FailHandler>();
  if (name == kCrash) return std::make_unique<CrashHandler>();
  return nullptr;
}

const std::vector<std::string_view>& handler_names() {
  static const std::vector<std::string_view> names{kEcho, kSleep, kFail, kCrash};
  return names;
}

}  // namespace inferq::executor
