#include "db/outcome.hpp"

#include <array>
#include <utility>

namespace inferq::db {
namespace {

constexpr std::array<std::pair<JobOutcome, std::string_view>, 5> kOutcomes = {{
    {JobOutcome::kSucceeded, "succeeded"},
    {JobOutcome::kRetried, "retried"},
    {JobOutcome::kDead, "dead"},
    {JobOutcome::kCancelled, "cancelled"},
    {JobOutcome::kRequeued, "requeued"},
}};

}  // namespace

const char* to_string(ErrorClass c) noexcept {
  switch (c) {
    case ErrorClass::kPermanent:
      return "permanent";
    case ErrorClass::kTransient:
      return "transient";
    case ErrorClass::kFatal:
      return "fatal";
    case ErrorClass::kDeadline:
      return "deadline";
    case ErrorClass::kCrash:
      return "crash";
    case ErrorClass::kRequeue:
      return "requeue";
  }
  return "transient";
}

std::optional<JobOutcome> job_outcome_from(std::string_view text) noexcept {
  for (const auto& [outcome, name] : kOutcomes)
    if (name == text) return outcome;
  return std::nullopt;
}

const char* to_string(JobOutcome o) noexcept {
  for (const auto& [outcome, name] : kOutcomes)
    if (outcome == o) return name.data();
  return "?";
}

}  // namespace inferq::db
